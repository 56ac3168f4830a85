"""What execution roles cost a function's own calls.

iam_decide_us                 one decision of the pure evaluator (role with 10 statements, the allowing one last)
iam_authorizer_check_us       Authorizer.check with real stores (role policies cached; function config read)
iam_s3_get_function_key_ms    S3 GetObject p50 over HTTP signed with a function's key (checked against its role),
                              baseline: the same GET signed with the admin key (not checked), alternated

  python bench/iam_authorize.py [--quick]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _common import emit, pct, quick
from _server import KEY_ID, SECRET, Server

from squall.functions.store.metadata import SqliteMetadataStore
from squall.iam.actions import Check
from squall.iam.api import IamApi, Identity
from squall.iam.authorizer import Authorizer, decide
from squall.iam.roles import ensure_role_in_store
from squall.iam.store import IamStore

STATEMENTS = [
    *({"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": f"arn:aws:sqs:*:*:q{i}"} for i in range(9)),
    {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::photos/originals/*"},
]
CHECK = Check("s3:GetObject", "arn:aws:s3:::photos/originals/a.jpg")


def in_process(n: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="squall-bench-iam-"))
    store = IamStore(root / "iam.db")
    meta = SqliteMetadataStore(root / "squall.db")
    arn = ensure_role_in_store(store, "000000000000", "f", STATEMENTS)
    meta.create_function("f", {"FunctionName": "f", "Role": arn}, str(root))

    def config(name: str) -> dict[str, Any] | None:
        return meta.get_function(name).config

    api = IamApi(store, "000000000000", lambda scope: Identity("", "", "000000000000", True))
    auth = Authorizer(store, api, config, region="us-east-1", account_id="000000000000")
    caller = auth.caller("f")
    assert decide(caller, [CHECK]) is None and auth.check("f", [CHECK]) is None
    for name, fn in (("iam_decide_us", lambda: decide(caller, [CHECK])), ("iam_authorizer_check_us",
                                                                          lambda: auth.check("f", [CHECK]))):  # fmt: skip
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e6)
        emit(name, pct(samples, 50), "us", p99=round(pct(samples, 99), 2), n=n, statements=len(STATEMENTS))


def over_http(n: int) -> None:
    import boto3
    from botocore.config import Config

    server = Server()
    try:
        iam, lam = server.client("iam"), server.client("lambda")
        from squall.iam.roles import ensure_role

        role, _ = ensure_role(iam, "bench", STATEMENTS)
        from _server import zip_of

        lam.create_function(FunctionName="bench", Runtime="python3.11", Role=role, Handler="app.handler",
                            Code={"ZipFile": zip_of({"app.py": "def handler(e, c):\n    return 1\n"})})  # fmt: skip
        lam.get_waiter("function_active_v2").wait(FunctionName="bench")
        lam.invoke(FunctionName="bench", Payload=b"{}")  # issues the function's key
        scoped = json.loads((server.data / "credentials.json").read_text())["scoped"]["bench"]

        def s3(key_id: str, secret: str) -> Any:
            return boto3.client("s3", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id=key_id,
                                aws_secret_access_key=secret, config=Config(s3={"addressing_style": "path"}))  # fmt: skip

        admin, fn = s3(KEY_ID, SECRET), s3(scoped["access_key_id"], scoped["secret_access_key"])
        admin.create_bucket(Bucket="photos")
        admin.put_object(Bucket="photos", Key="originals/a.jpg", Body=b"x" * 1024)
        times: dict[str, list[float]] = {"admin": [], "function": []}
        for i in range(n * 2):
            who, client = ("admin", admin) if i % 2 == 0 else ("function", fn)
            t0 = time.perf_counter()
            client.get_object(Bucket="photos", Key="originals/a.jpg")["Body"].read()
            times[who].append((time.perf_counter() - t0) * 1000)
        base = pct(times["admin"], 50)
        emit("iam_s3_get_function_key_ms", pct(times["function"], 50), "ms", p99=round(pct(times["function"], 99), 3),
             n=n, baseline={"admin_key_p50_ms": round(base, 3), "admin_key_p99_ms": round(pct(times["admin"], 99), 3)})  # fmt: skip
    finally:
        server.stop()


def main() -> None:
    in_process(2000 if quick() else 20_000)
    over_http(200 if quick() else 2000)


if __name__ == "__main__":
    main()
