"""Layers and custom runtimes (the Lambda Runtime API) against a real ``squall up``, with boto3.

Layers: PublishLayerVersion .. DeleteLayerVersion in AWS's shapes and errors; a function's layers merged at /opt in
order, read-only, on sys.path after /var/task, visible to the import probe (pre-import) and to snapshot init.
Custom runtimes: ``provided.al2023`` functions whose ``bootstrap`` (Python with urllib, a shell script with curl,
awslambdaric) talks to the Runtime API of their instance; init errors, function errors, timeouts; and no other
process can reach an instance's Runtime API.
"""

from __future__ import annotations

import io
import json
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e._platform import SquallProcess, eventually, signed_get, zip_of

ROLE = "arn:aws:iam::000000000000:role/x"


def zip_exec(files: dict[str, str | bytes], executables: tuple[str, ...] = ("bootstrap",)) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100755 if name in executables else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def squall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    proc = SquallProcess(tmp_path_factory.mktemp("layers") / "data").start()
    yield proc
    assert proc.stop() == 0


@pytest.fixture(scope="module")
def lam(squall: SquallProcess) -> Any:
    return squall.client("lambda")


def invoke(lam: Any, name: str, event: Any = None, **kw: Any) -> tuple[dict[str, Any], Any]:
    r = lam.invoke(FunctionName=name, Payload=json.dumps(event if event is not None else {}).encode(), **kw)
    raw = r["Payload"].read()
    try:
        return r, json.loads(raw)
    except ValueError:
        return r, raw


def publish(lam: Any, name: str, files: dict[str, str], **kw: Any) -> dict[str, Any]:
    return lam.publish_layer_version(LayerName=name, Content={"ZipFile": zip_of(files)}, **kw)


def create(lam: Any, name: str, files: dict[str, Any], runtime: str = "python3.11", **kw: Any) -> dict[str, Any]:
    kw.setdefault("Timeout", 10)
    kw.setdefault("Handler", "app.handler")
    code = zip_exec(files) if runtime.startswith("provided") else zip_of(files)
    out = lam.create_function(FunctionName=name, Runtime=runtime, Role=ROLE, Code={"ZipFile": code}, **kw)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    return out


# ------------------------------------------------------------------------------------------------------ layers


def test_layer_version_lifecycle(lam: Any, squall: SquallProcess) -> None:
    out = publish(
        lam, "tools", {"python/tools.py": "X = 1\n"}, Description="helpers", LicenseInfo="MIT",
        CompatibleRuntimes=["python3.11", "python3.12"], CompatibleArchitectures=["x86_64"],
    )  # fmt: skip
    arn = "arn:aws:lambda:us-east-1:000000000000:layer:tools"
    assert out["LayerArn"] == arn and out["LayerVersionArn"] == f"{arn}:1" and out["Version"] == 1
    assert out["Description"] == "helpers" and out["LicenseInfo"] == "MIT"
    assert out["CompatibleRuntimes"] == ["python3.11", "python3.12"] and out["CompatibleArchitectures"] == ["x86_64"]
    assert out["Content"]["CodeSize"] > 0 and out["Content"]["CodeSha256"] and out["CreatedDate"]
    # the Location serves the zip back
    assert out["Content"]["Location"].startswith(squall.url)
    out2 = publish(lam, "tools", {"python/tools.py": "X = 2\n"}, CompatibleRuntimes=["python3.12"])
    assert out2["Version"] == 2
    got = lam.get_layer_version(LayerName="tools", VersionNumber=1)
    assert got["LayerVersionArn"] == f"{arn}:1" and got["Content"]["CodeSha256"] == out["Content"]["CodeSha256"]
    assert lam.get_layer_version(LayerName=arn, VersionNumber=2)["Version"] == 2  # LayerName may be the ARN
    assert lam.get_layer_version_by_arn(Arn=f"{arn}:2")["Version"] == 2
    versions = lam.list_layer_versions(LayerName="tools")["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]
    only_311 = lam.list_layer_versions(LayerName="tools", CompatibleRuntime="python3.11")["LayerVersions"]
    assert [v["Version"] for v in only_311] == [1]
    page = lam.list_layer_versions(LayerName="tools", MaxItems=1)
    assert [v["Version"] for v in page["LayerVersions"]] == [2] and page["NextMarker"]
    rest = lam.list_layer_versions(LayerName="tools", MaxItems=1, Marker=page["NextMarker"])
    assert [v["Version"] for v in rest["LayerVersions"]] == [1]
    layers = {item["LayerName"]: item for item in lam.list_layers()["Layers"]}
    assert layers["tools"]["LatestMatchingVersion"]["Version"] == 2 and layers["tools"]["LayerArn"] == arn
    matching = {i["LayerName"]: i for i in lam.list_layers(CompatibleRuntime="python3.11")["Layers"]}
    assert matching["tools"]["LatestMatchingVersion"]["Version"] == 1
    lam.delete_layer_version(LayerName="tools", VersionNumber=2)
    lam.delete_layer_version(LayerName="tools", VersionNumber=2)  # idempotent, as on Lambda
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_layer_version(LayerName="tools", VersionNumber=2)
    assert publish(lam, "tools", {"python/tools.py": "X = 3\n"})["Version"] == 3  # numbers are never reused


def test_layer_errors(lam: Any) -> None:
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="unzip"):
        lam.publish_layer_version(LayerName="bad", Content={"ZipFile": b"not a zip"})
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match=r"'\.\.'"):
        publish(lam, "bad", {"../escape.py": "x"})
    with pytest.raises(ClientError, match="layerName"):
        publish(lam, "bad name!", {"a.py": ""})
    with pytest.raises(ClientError, match=r"[Rr]untime"):
        publish(lam, "bad", {"a.py": ""}, CompatibleRuntimes=["cobol"])
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_layer_version_by_arn(Arn="arn:aws:lambda:us-east-1:000000000000:layer:nothing:1")
    ok = publish(lam, "real", {"python/real.py": ""})["LayerVersionArn"]
    missing = "arn:aws:lambda:us-east-1:000000000000:layer:nothing:1"
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="does not exist"):
        create(lam, "uses-missing", {"app.py": "def handler(e, c): return 1"}, Layers=[ok, missing])
    six = [publish(lam, f"many{i}", {f"python/m{i}.py": ""})["LayerVersionArn"] for i in range(6)]
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="more than 5 layers"):
        create(lam, "too-many", {"app.py": "def handler(e, c): return 1"}, Layers=six)
    second = publish(lam, "real", {"python/real.py": "v = 2"})["LayerVersionArn"]
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="same layer"):
        create(lam, "same-twice", {"app.py": "def handler(e, c): return 1"}, Layers=[ok, second])
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="uses-missing")


LAYERED_APP = """
import os, sys
PREIMPORTED = "dep_b" in sys.modules      # forked from a zygote that pre-imported the layer's module
import shared, only_a, dep_b

def handler(event, context):
    try:
        open("/opt/python/new.py", "w").write("x")
        wrote = True
    except OSError as e:
        wrote = type(e).__name__
    return {"shared": shared.VALUE, "shared_file": shared.__file__, "only_a": only_a.A, "dep_b": dep_b.B,
            "preimported": PREIMPORTED, "path": sys.path[:4], "wrote": wrote,
            "init": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")}
"""


def test_function_with_layers(lam: Any, squall: SquallProcess) -> None:
    a = publish(lam, "layer-a", {"python/shared.py": "VALUE = 'a'\n", "python/only_a.py": "A = 'from a'\n"})
    b = publish(lam, "layer-b", {
        "python/shared.py": "VALUE = 'b'\n",
        "python/lib/python3.11/site-packages/dep_b.py": "B = 'from b site-packages'\n",
    })  # fmt: skip
    arns = [a["LayerVersionArn"], b["LayerVersionArn"]]
    created = create(lam, "layered", {"app.py": LAYERED_APP}, Layers=arns)
    expected = [{"Arn": a["LayerVersionArn"], "CodeSize": a["Content"]["CodeSize"]},
                {"Arn": b["LayerVersionArn"], "CodeSize": b["Content"]["CodeSize"]}]  # fmt: skip
    assert created["Layers"] == expected
    assert lam.get_function_configuration(FunctionName="layered")["Layers"] == expected
    r, out = invoke(lam, "layered")
    assert "FunctionError" not in r, out
    assert out["shared"] == "b" and out["shared_file"] == "/opt/python/shared.py"  # the later layer wins
    assert out["only_a"] == "from a" and out["dep_b"] == "from b site-packages"
    assert out["path"][:3] == ["/var/task", "/opt/python/lib/python3.11/site-packages", "/opt/python"]
    assert out["wrote"] in ("OSError", "PermissionError")  # /opt is read-only
    assert out["preimported"] is False  # its first zygote pre-imports nothing yet: the instance reports its imports
    # ... the zygote's import probe (a sandboxed instance, /opt mounted) imports them: the layer's modules are
    # pre-imported from now on
    eventually(lambda: "dep_b" in signed_get(squall.url, "/_squall/api/functions/layered/preimport")[1]["preloaded"],
               timeout_s=60, what="the layer's module found by the import probe")  # fmt: skip
    # reorder: now a overrides b
    lam.update_function_configuration(FunctionName="layered", Layers=list(reversed(arns)))
    lam.get_waiter("function_updated_v2").wait(FunctionName="layered")
    _, out = invoke(lam, "layered")
    assert out["shared"] == "a"
    # snapshot mode: the whole init runs in the zygote, which must see /opt
    lam.tag_resource(Resource="arn:aws:lambda:us-east-1:000000000000:function:layered",
                     Tags={"squall:snapshot": "true"})  # fmt: skip
    lam.get_waiter("function_updated_v2").wait(FunctionName="layered")
    version = lam.publish_version(FunctionName="layered")["Version"]
    r, out = invoke(lam, "layered", Qualifier=version)
    assert "FunctionError" not in r, out
    assert out["init"] == "snap-start" and out["shared"] == "a" and out["dep_b"] == "from b site-packages"
    # the published version keeps its layers after the layer version is deleted (as on Lambda)
    lam.delete_layer_version(LayerName="layer-a", VersionNumber=a["Version"])
    lam.update_function_configuration(FunctionName="layered", Layers=[])
    lam.get_waiter("function_updated_v2").wait(FunctionName="layered")
    assert "Layers" not in lam.get_function_configuration(FunctionName="layered")
    assert lam.get_function_configuration(FunctionName="layered", Qualifier=version)["Layers"] == list(
        reversed(expected)
    )
    r, out = invoke(lam, "layered", Qualifier=version)
    assert "FunctionError" not in r and out["only_a"] == "from a"
    r, out = invoke(lam, "layered")
    assert r["FunctionError"] == "Unhandled" and out["errorType"] == "Runtime.ImportModuleError"


# ---------------------------------------------------------------------------------------------- custom runtimes

PY_BOOTSTRAP = """#!/usr/bin/env python3
import json, os, sys, time, urllib.request

api = os.environ["AWS_LAMBDA_RUNTIME_API"]
base = f"http://{api}/2018-06-01/runtime"
count = 0
while True:
    with urllib.request.urlopen(base + "/invocation/next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        headers = {k: v for k, v in r.headers.items() if k.startswith("Lambda-Runtime")}
        event = json.loads(r.read())
    count += 1
    print("bootstrap got", rid, flush=True)
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("exit") is not None:
        sys.exit(event["exit"])
    if event.get("fail"):
        url, body = f"{base}/invocation/{rid}/error", {"errorMessage": "asked to fail", "errorType": "MyError",
                                                       "stackTrace": ["here"]}
        extra = {"Lambda-Runtime-Function-Error-Type": "MyError"}
    else:
        url, extra = f"{base}/invocation/{rid}/response", {}
        body = {"event": event, "headers": headers, "count": count, "now_ms": int(time.time() * 1000),
                "env": {k: os.environ.get(k) for k in ("AWS_LAMBDA_RUNTIME_API", "_HANDLER", "LAMBDA_TASK_ROOT",
                                                        "AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION")}}
    req = urllib.request.Request(url, json.dumps(body).encode(), headers=extra, method="POST")
    with urllib.request.urlopen(req) as r:
        assert r.status == 202, r.status
"""

SH_BOOTSTRAP = """#!/bin/sh
set -eu
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
while true; do
  hdrs=$(mktemp)
  event=$(curl -sS -D "$hdrs" "$api/invocation/next")
  rid=$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$hdrs" | cut -d' ' -f2 | tr -d '\\r')
  echo "shell got $rid"
  curl -sS -o /dev/null -X POST "$api/invocation/$rid/response" -d "{\\"echo\\": $event, \\"handler\\": \\"$_HANDLER\\"}"
done
"""


def test_python_bootstrap_echoes_with_lambda_headers(lam: Any) -> None:
    create(lam, "custom-py", {"bootstrap": PY_BOOTSTRAP}, runtime="provided.al2023", Handler="my.handler",
           Timeout=7)  # fmt: skip
    t0 = int(time.time() * 1000)
    r, out = invoke(lam, "custom-py", {"hello": "world"}, LogType="Tail")
    assert "FunctionError" not in r, out
    assert out["event"] == {"hello": "world"} and out["count"] == 1
    h = out["headers"]
    assert h["Lambda-Runtime-Invoked-Function-Arn"] == "arn:aws:lambda:us-east-1:000000000000:function:custom-py"
    assert h["Lambda-Runtime-Aws-Request-Id"] == r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    deadline = int(h["Lambda-Runtime-Deadline-Ms"])
    assert t0 + 7000 - 1000 <= deadline <= out["now_ms"] + 7000  # the invocation's start + Timeout
    assert h["Lambda-Runtime-Trace-Id"].startswith("Root=")
    env = out["env"]
    assert env["_HANDLER"] == "my.handler" and env["LAMBDA_TASK_ROOT"] == "/var/task"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "custom-py" and env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    import base64

    tail = base64.b64decode(r["LogResult"]).decode()
    assert "bootstrap got" in tail and "REPORT RequestId" in tail and "Init Duration" in tail
    # warm: the same bootstrap process answers the next invocation
    r, out = invoke(lam, "custom-py", {"n": 2}, ClientContext=base64.b64encode(b'{"custom": {"k": "v"}}').decode())
    assert out["count"] == 2 and out["event"] == {"n": 2}
    assert json.loads(out["headers"]["Lambda-Runtime-Client-Context"])["custom"] == {"k": "v"}
    # an error posted to /error is the Invoke's FunctionError and payload
    r, out = invoke(lam, "custom-py", {"fail": True})
    assert r["FunctionError"] == "Unhandled"
    assert out == {"errorMessage": "asked to fail", "errorType": "MyError", "stackTrace": ["here"]}
    r, out = invoke(lam, "custom-py", {"n": 4})
    assert out["count"] == 4  # the runtime survived its error
    # timeouts are enforced as for any function
    lam.update_function_configuration(FunctionName="custom-py", Timeout=1)
    lam.get_waiter("function_updated_v2").wait(FunctionName="custom-py")
    r, out = invoke(lam, "custom-py", {"sleep": 5})
    assert r["FunctionError"] == "Unhandled" and "Task timed out after 1.00 seconds" in out["errorMessage"]
    # the bootstrap exiting mid-invocation is Runtime.ExitError with its exit status
    r, out = invoke(lam, "custom-py", {"exit": 7})
    assert r["FunctionError"] == "Unhandled" and out["errorType"] == "Runtime.ExitError"
    assert "exit status 7" in out["errorMessage"]
    r, out = invoke(lam, "custom-py", {"after": "exit"})
    assert out["event"] == {"after": "exit"} and out["count"] == 1  # a fresh instance


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed on this host")
def test_shell_bootstrap_with_curl(lam: Any) -> None:
    create(lam, "custom-sh", {"bootstrap": SH_BOOTSTRAP}, runtime="provided.al2", Handler="fn.sh")
    r, out = invoke(lam, "custom-sh", {"from": "shell"})
    assert "FunctionError" not in r, out
    assert out == {"echo": {"from": "shell"}, "handler": "fn.sh"}
    _, out = invoke(lam, "custom-sh", [1, 2, 3])
    assert out["echo"] == [1, 2, 3]


def test_custom_runtime_init_errors(lam: Any) -> None:
    create(lam, "no-bootstrap", {"other.sh": "#!/bin/sh\n"}, runtime="provided.al2023")
    r, out = invoke(lam, "no-bootstrap")
    assert r["FunctionError"] == "Unhandled" and out["errorType"] == "Runtime.InvalidEntrypoint"
    assert "/var/task/bootstrap" in out["errorMessage"]
    code = zip_exec({"bootstrap": "#!/bin/sh\necho hi\n"}, executables=())  # not executable
    lam.create_function(FunctionName="noexec", Runtime="provided.al2023", Role=ROLE, Handler="x",
                        Code={"ZipFile": code})  # fmt: skip
    r, out = invoke(lam, "noexec")
    assert out["errorType"] == "Runtime.InvalidEntrypoint" and "permission denied" in out["errorMessage"]
    create(lam, "exits-early", {"bootstrap": "#!/bin/sh\necho starting\nexit 3\n"}, runtime="provided.al2023")
    r, out = invoke(lam, "exits-early", LogType="Tail")
    assert r["FunctionError"] == "Unhandled" and out["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in out["errorMessage"]
    init_error = """#!/usr/bin/env python3
import json, os, urllib.request
url = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime/init/error"
doc = {"errorMessage": "config missing", "errorType": "InitBroke"}
req = urllib.request.Request(url, json.dumps(doc).encode(), method="POST",
                             headers={"Lambda-Runtime-Function-Error-Type": "Runtime.InitBroke"})
print(urllib.request.urlopen(req).status, flush=True)
import time; time.sleep(30)
"""
    create(lam, "init-error", {"bootstrap": init_error}, runtime="provided.al2023")
    r, out = invoke(lam, "init-error")
    assert r["FunctionError"] == "Unhandled" and out["errorMessage"] == "config missing"


def test_bootstrap_from_a_layer(lam: Any) -> None:
    """Lambda looks for the bootstrap in /var/task, then /opt (a runtime shipped as a layer)."""
    layer = lam.publish_layer_version(
        LayerName="py-runtime", Content={"ZipFile": zip_exec({"bootstrap": PY_BOOTSTRAP})}
    )["LayerVersionArn"]
    create(lam, "layer-runtime", {"handler.txt": "x"}, runtime="provided.al2023", Layers=[layer])
    r, out = invoke(lam, "layer-runtime", {"via": "layer"})
    assert "FunctionError" not in r, out
    assert out["event"] == {"via": "layer"}


THIEF = """
import json, socket
def handler(event, context):
    host, port = event["api"].split(":")
    try:  # refused outright when instances do not share a network namespace
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        got = s.recv(65536)
    except OSError as e:
        got = repr(e).encode()
    return {"got": got.decode(errors="replace")}
"""


def test_runtime_api_is_not_reachable_by_other_functions(lam: Any) -> None:
    """A function sharing the host network cannot take (or answer) another instance's invocations."""
    create(lam, "victim", {"bootstrap": PY_BOOTSTRAP}, runtime="provided.al2023")
    _, out = invoke(lam, "victim", {"first": 1})
    api = out["env"]["AWS_LAMBDA_RUNTIME_API"]
    create(lam, "thief", {"app.py": THIEF})
    r, stolen = invoke(lam, "thief", {"api": api})
    assert "FunctionError" not in r, stolen
    assert not stolen["got"].startswith("HTTP/"), stolen  # closed (or reset) without an answer
    _, out = invoke(lam, "victim", {"second": 2})
    assert out["event"] == {"second": 2} and out["count"] == 2


def test_custom_runtime_without_network(lam: Any) -> None:
    """With its own (empty) network namespace the Runtime API is on Lambda's own 127.0.0.1:9001."""
    create(lam, "custom-none", {"bootstrap": PY_BOOTSTRAP}, runtime="provided.al2023",
           Tags={"squall:network": "none"})  # fmt: skip
    r, out = invoke(lam, "custom-none", {"x": 1})
    assert "FunctionError" not in r, out
    assert out["env"]["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:9001"


def _ric_files() -> dict[str, bytes]:
    """awslambdaric and its dependencies as a zip's files: the binary wheels ``pip download`` fetches (cached
    between runs), unpacked as Lambda users vendor them.  Skipped when the wheels cannot be had (no network)."""
    import subprocess
    import sys
    import tempfile

    cache = Path(tempfile.gettempdir()) / "squall-test-wheels" / "awslambdaric"
    cache.mkdir(parents=True, exist_ok=True)
    if not list(cache.glob("awslambdaric-*.whl")):
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "-d", str(cache), "awslambdaric"],
            capture_output=True, timeout=300, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"could not download awslambdaric: {done.stderr.decode()[-300:]}")
    files: dict[str, bytes] = {}
    for wheel in cache.glob("*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    files[info.filename] = zf.read(info)
    return files


def test_awslambdaric_vendored_in_the_zip(lam: Any) -> None:
    files: dict[str, Any] = dict(_ric_files())
    files["bootstrap"] = (
        '#!/bin/sh\ncd "$LAMBDA_TASK_ROOT"\nexport PYTHONPATH="$LAMBDA_TASK_ROOT"\nexec python3 -m awslambdaric "$_HANDLER"\n'
    )
    files["app.py"] = (
        "import os\n"
        "def handler(event, context):\n"
        "    print('ric handler', context.aws_request_id)\n"
        "    if event.get('fail'):\n"
        "        raise ValueError('ric failure')\n"
        "    return {'event': event, 'arn': context.invoked_function_arn, 'left': context.get_remaining_time_in_millis(),"
        " 'fn': context.function_name}\n"
    )
    create(lam, "ric", files, runtime="provided.al2023", Handler="app.handler", Timeout=9)
    r, out = invoke(lam, "ric", {"via": "awslambdaric"}, LogType="Tail")
    assert "FunctionError" not in r, out
    assert out["event"] == {"via": "awslambdaric"} and out["fn"] == "ric"
    assert out["arn"] == "arn:aws:lambda:us-east-1:000000000000:function:ric"
    assert 0 < out["left"] <= 9000
    r, out = invoke(lam, "ric", {"fail": True})
    assert r["FunctionError"] == "Unhandled"
    assert out["errorType"] == "ValueError" and out["errorMessage"] == "ric failure"
    _, out = invoke(lam, "ric", {"again": 1})
    assert out["event"] == {"again": 1}


def test_squall_deploy_publishes_layer_directories(lam: Any, squall: SquallProcess, tmp_path: Path) -> None:
    """``layers:`` in squall.yaml: a local directory is published as a layer (again only when it changed)."""
    import subprocess
    import sys

    tools = publish(lam, "cli-tools", {"python/tools.py": "NAME = 'tools layer'\n"})["LayerVersionArn"]
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(
        "import shared, tools\ndef handler(e, c):\n    return {'shared': shared.WHO, 'tools': tools.NAME}\n"
    )
    (tmp_path / "shared" / "python").mkdir(parents=True)
    (tmp_path / "shared" / "python" / "shared.py").write_text("WHO = 'local layer v1'\n")
    (tmp_path / "squall.yaml").write_text(
        f"functions:\n  withlayers:\n    handler: app.handler\n    code: ./fn\n    layers: [./shared, '{tools}']\n"
    )
    env = {**squall.env, "SQUALL_ENDPOINT": squall.url, "SQUALL_DATA_DIR": str(squall.data_dir)}

    def deploy() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "squall.cli.main", "deploy", str(tmp_path)],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    deploy()
    _, out = invoke(lam, "withlayers")
    assert out == {"shared": "local layer v1", "tools": "tools layer"}
    layers = lam.get_function_configuration(FunctionName="withlayers")["Layers"]
    assert layers[0]["Arn"].endswith(":layer:withlayers-shared:1") and layers[1]["Arn"] == tools
    assert "unchanged" in deploy()  # same directory: no new layer version, no update
    (tmp_path / "shared" / "python" / "shared.py").write_text("WHO = 'local layer v2'\n")
    deploy()
    layers = lam.get_function_configuration(FunctionName="withlayers")["Layers"]
    assert layers[0]["Arn"].endswith(":layer:withlayers-shared:2")
    _, out = invoke(lam, "withlayers")
    assert out["shared"] == "local layer v2"


PROBE_BOOTSTRAP = """#!/usr/bin/env python3
import http.client, json, os
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")

def call(method, path, body=None, headers=None, chunked=False):
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request(method, "/2018-06-01/runtime" + path, body, headers or {}, encode_chunked=chunked)
    r = c.getresponse()
    out = r.status, r.read(), dict(r.getheaders())
    c.close()
    return out

status, event, headers = call("GET", "/invocation/next")
rid = headers["Lambda-Runtime-Aws-Request-Id"]
seen = {
    "wrong_id": call("POST", "/invocation/not-the-id/response", b"{}")[0],
    "unknown_path": call("GET", "/invocation/other")[0],
    "wrong_method": call("POST", "/invocation/next", b"")[0],
    "init_error_late": call("POST", "/init/error", b"{}")[0],
    "next_while_busy": call("GET", "/invocation/next")[0],
}
status, body, _ = call("POST", f"/invocation/{rid}/response", b'"' + b"x" * 6_300_000 + b'"')
seen["too_large"] = status
status, event, headers = call("GET", "/invocation/next")
rid = headers["Lambda-Runtime-Aws-Request-Id"]
data = json.dumps(seen).encode()  # sent chunked, in two chunks
call("POST", f"/invocation/{rid}/response", iter([data[:7], data[7:]]), {"Transfer-Encoding": "chunked"}, True)
call("GET", "/invocation/next")
"""


def test_runtime_api_refuses_what_lambda_refuses(lam: Any) -> None:
    create(lam, "probe-api", {"bootstrap": PROBE_BOOTSTRAP}, runtime="provided.al2023")
    r, out = invoke(lam, "probe-api", {"first": True})
    assert r["FunctionError"] == "Unhandled" and out["errorType"] == "Function.ResponseSizeTooLarge"
    _, seen = invoke(lam, "probe-api", {"second": True})
    assert seen == {
        "wrong_id": 400,
        "unknown_path": 404,
        "wrong_method": 405,
        "init_error_late": 403,
        "next_while_busy": 403,
        "too_large": 413,
    }
