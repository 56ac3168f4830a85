"""Custom runtimes and layers at the node level: what the function zygote does (and skips) for them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.sandbox_helpers import body, write_tree

BOOTSTRAP = """#!/bin/sh
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/invocation"
while true; do
  curl -sS -D /tmp/h "$api/next" > /tmp/event
  rid=$(grep -i '^Lambda-Runtime-Aws-Request-Id:' /tmp/h | cut -d' ' -f2 | tr -d '\\r')
  curl -sS -o /dev/null -X POST "$api/$rid/response" -d "{\\"pid\\": $$, \\"exec_env\\": \\"${AWS_EXECUTION_ENV:-}\\"}"
done
"""


def test_provided_runtime_skips_probe_and_preimport(node: Any) -> None:
    code = node.write_function({"bootstrap": BOOTSTRAP})
    os.chmod(code / "bootstrap", 0o755)
    fn = node.load({}, code_dir=code, runtime="provided.al2023", handler="function.handler")
    assert fn.report.get("probe") is None and "probe_error" not in fn.report  # no import probe ran
    assert fn.preloaded == [] and not fn.snapshot
    inst = node.start(fn)
    try:
        first = body(node.invoke(inst, {"a": 1}))
        second = body(node.invoke(inst, {"a": 2}))
        assert first["pid"] == second["pid"]  # the same bootstrap serves both
        assert first["exec_env"] == ""  # AWS_EXECUTION_ENV names managed runtimes only
    finally:
        node.stop(inst)


def test_layers_given_as_directories_are_merged(node: Any, tmp_path: Path) -> None:
    a = write_tree(node.data_dir / "layer-a", {"python/mod.py": "WHO = 'a'\n", "python/a.py": "A = 1\n"})
    b = write_tree(node.data_dir / "layer-b", {"python/mod.py": "WHO = 'b'\n"})
    fn = node.load_learned(
        {
            "app.py": "import os, mod, a\ndef handler(e, c):\n    return [mod.WHO, a.A, mod.__file__, os.environ['PATH']]\n"
        },
        layers=(a, b),
    )
    assert "mod" in fn.preloaded and "a" in fn.preloaded  # the probe saw the layers' modules
    who, a_value, path, env_path = body(node.call(fn))
    assert (who, a_value, path) == ("b", 1, "/opt/python/mod.py") and env_path.endswith(":/opt/bin")
