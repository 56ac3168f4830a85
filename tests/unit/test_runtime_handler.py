"""squall.sandbox.runtime.handler and squall.sandbox.runtime.errors: handler names and Lambda's init-error documents."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from squall.sandbox.runtime.errors import InitError, error_document, exception_document, format_for_log
from squall.sandbox.runtime.handler import import_handler_module, load_handler, resolve_handler, split_handler
from squall.sandbox.runtime.loop import _json_default


@pytest.fixture
def code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A code dir on sys.path; modules imported from it are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]
    sys.modules.pop("app", None)


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("app.handler", ("app", "handler")),
        ("dir/app.handler", ("dir.app", "handler")),
        ("a/b/app.handler", ("a.b.app", "handler")),
        ("pkg.mod.handler", ("pkg.mod", "handler")),
        ("app.lambda_handler", ("app", "lambda_handler")),
    ],
)
def test_split_handler(name: str, expected: tuple[str, str]) -> None:
    assert split_handler(name) == expected


@pytest.mark.parametrize("name", ["bad", "", ".handler", "app.", "."])
def test_malformed_handler_name(name: str) -> None:
    with pytest.raises(InitError) as ei:
        split_handler(name)
    assert ei.value.error_type == "Runtime.MalformedHandlerName"
    assert ei.value.message.startswith(f"Bad handler '{name}'")
    doc = ei.value.document()
    assert doc["errorType"] == "Runtime.MalformedHandlerName"
    assert doc["errorMessage"] == ei.value.message


def test_builtin_module_conflict() -> None:
    with pytest.raises(InitError) as ei:
        import_handler_module("sys.x")
    assert ei.value.error_type == "Runtime.BuiltInModuleConflict"
    assert "sys" in ei.value.message


def test_import_module_error_message(code: Path) -> None:
    name = f"nosuchmod_{uuid.uuid4().hex[:8]}"
    with pytest.raises(InitError) as ei:
        load_handler(f"{name}.handler")
    assert ei.value.error_type == "Runtime.ImportModuleError"
    assert ei.value.message == f"Unable to import module '{name}': No module named '{name}'"


@pytest.mark.parametrize("handler", ["..handler", "a/../../b.handler", "../app.handler", "/app.handler", "a..b.h"])
def test_a_module_path_that_cannot_be_imported_is_an_import_module_error(code: Path, handler: str) -> None:
    """As on Lambda: a path with empty or relative parts fails like any module that is not there (not TypeError)."""
    write(code, "app.py", "def handler(e, c): pass\n")
    with pytest.raises(InitError) as ei:
        load_handler(handler)
    assert ei.value.error_type == "Runtime.ImportModuleError"
    modname = handler.rsplit(".", 1)[0]
    assert ei.value.message.startswith(f"Unable to import module '{modname}': ")


def test_import_module_error_names_the_missing_dependency(code: Path) -> None:
    write(code, "app.py", "import requests_not_installed_here\ndef handler(e, c): pass\n")
    with pytest.raises(InitError) as ei:
        load_handler("app.handler")
    assert ei.value.error_type == "Runtime.ImportModuleError"
    assert ei.value.message == "Unable to import module 'app': No module named 'requests_not_installed_here'"


def test_syntax_error(code: Path) -> None:
    write(code, "app.py", "def handler(event, context)\n    return 1\n")
    with pytest.raises(InitError) as ei:
        load_handler("app.handler")
    assert ei.value.error_type == "Runtime.UserCodeSyntaxError"
    assert ei.value.message.startswith("Syntax error in module 'app': ")
    assert ei.value.stack and "app.py" in ei.value.stack[0]
    assert "line 1" in ei.value.stack[0]


def test_handler_not_found(code: Path) -> None:
    write(code, "app.py", "def handler(e, c): pass\n")
    with pytest.raises(InitError) as ei:
        load_handler("app.nope")
    assert ei.value.error_type == "Runtime.HandlerNotFound"
    assert ei.value.message == "Handler 'nope' missing on module 'app'"


def test_handler_not_callable(code: Path) -> None:
    write(code, "app.py", "handler = 42\n")
    with pytest.raises(InitError) as ei:
        load_handler("app.handler")
    assert ei.value.error_type == "Runtime.HandlerNotFound"


def test_exception_at_import_keeps_its_type_and_user_frames(code: Path) -> None:
    write(code, "app.py", "def f():\n    raise KeyError('cfg')\nf()\n")
    with pytest.raises(InitError) as ei:
        load_handler("app.handler")
    assert ei.value.error_type == "KeyError"
    assert "cfg" in ei.value.message
    assert any("app.py" in s for s in ei.value.stack)


@pytest.mark.parametrize(
    ("files", "handler"),
    [
        ({"sub/app.py": "def handler(e, c): return 'dir'\n"}, "sub/app.handler"),
        ({"pkg/__init__.py": "", "pkg/mod.py": "def handler(e, c): return 'dotted'\n"}, "pkg.mod.handler"),
        ({"app.py": "def handler(e, c): return 'plain'\n"}, "app.handler"),
    ],
)
def test_load_handler_forms(code: Path, files: dict[str, str], handler: str) -> None:
    for rel, text in files.items():
        write(code, rel, text)
    fn = load_handler(handler)
    assert callable(fn)
    assert fn({}, None) in {"dir", "dotted", "plain"}


def test_resolve_handler_on_module(code: Path) -> None:
    write(code, "app.py", "def handler(e, c): return e\n")
    mod = import_handler_module("app.handler")
    assert resolve_handler(mod, "app.handler")(7, None) == 7


# ------------------------------------------------------------------------------------------ error documents


def test_error_document_shape() -> None:
    assert error_document("T", "m", "rid", ["s"]) == {
        "errorMessage": "m", "errorType": "T", "requestId": "rid", "stackTrace": ["s"],
    }  # fmt: skip
    assert error_document("T", "m") == {"errorMessage": "m", "errorType": "T", "requestId": "", "stackTrace": []}


def test_exception_document_and_log_format() -> None:
    def user_code() -> None:
        raise ValueError("bad input")

    try:
        user_code()
    except ValueError as e:
        doc = exception_document(e, "req-9")
    assert doc["errorType"] == "ValueError"
    assert doc["errorMessage"] == "bad input"
    assert doc["requestId"] == "req-9"
    assert any("user_code" in s for s in doc["stackTrace"])
    json.dumps(doc)  # must be serialisable as is
    text = format_for_log(doc)
    assert text.startswith("[ERROR] ValueError: bad input\nTraceback (most recent call last):\n")
    assert text.endswith("\n")


def test_format_for_log_without_stack() -> None:
    assert format_for_log(error_document("Runtime.X", "msg")) == "[ERROR] Runtime.X: msg\n"


def test_json_default_decimal() -> None:
    from decimal import Decimal

    assert json.dumps({"a": Decimal("2"), "b": Decimal("2.5")}, default=_json_default) == '{"a": 2, "b": 2.5}'
    with pytest.raises(TypeError):
        json.dumps({1, 2}, default=_json_default)
