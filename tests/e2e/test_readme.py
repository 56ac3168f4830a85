"""The README's examples, run: every ```yaml block parses and deploys with ``squall deploy`` against a real server,
every ``squall ...`` command in a ```bash block parses with the CLI's own parser (the command and its flags exist),
every ``aws ...`` command runs with the AWS CLI v1 (the venv's ``awscli``) against the server, and the forms marked
``# v2`` are indeed refused by v1 (which is why the README gives both)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from squall.cli.cfn import parse_cfn_yaml
from squall.cli.main import build_parser
from squall.cli.project_files import PROJECT_FILES
from tests.aws_cli import AWS_CLI, needs_aws_cli
from tests.e2e._platform import KEY_ID, SECRET, SquallProcess, create

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_URL = "http://127.0.0.1:9070"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [m.group(2) for m in _BLOCK.finditer(README.read_text()) if m.group(1) == language]


def bash_lines() -> list[str]:
    """The commands of the bash blocks, a line continued with a trailing backslash joined to the next."""
    out: list[str] = []
    for b in blocks("bash"):
        for ln in b.replace("\\\n", " ").splitlines():
            if ln.strip() and not ln.startswith("#"):
                out.append(ln.strip())
    return out


@pytest.fixture(scope="module")
def squall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    proc = SquallProcess(tmp_path_factory.mktemp("readme") / "data").start()
    create(proc.client("lambda"), "hello", (ROOT / "src" / "squall" / "demo" / "app.py").read_text())
    yield proc
    assert proc.stop() == 0


def cli_env(squall: SquallProcess) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SQUALL_", "COVERAGE_"))}
    return env | {
        "AWS_ENDPOINT_URL": squall.url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "SQUALL_ENDPOINT": squall.url,
        "SQUALL_DATA_DIR": str(squall.data_dir),
        "AWS_CA_BUNDLE": os.environ.get("AWS_CA_BUNDLE", ""),
    }


def test_the_readme_has_examples() -> None:
    assert len(blocks("yaml")) >= 3 and len(bash_lines()) >= 10


# -- bash: the AWS CLI first, in the README's order (before the yaml examples create the same bucket) --


@needs_aws_cli
def test_aws_cli_v1_commands_run(squall: SquallProcess, tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with zipfile.ZipFile(tmp_path / "shared.zip", "w") as z:  # the layer the README publishes
        z.writestr("python/shared.py", "GREETING = 'hello from a layer'\n")
    env = cli_env(squall)
    ran = 0
    for line in bash_lines():
        if not line.startswith("aws "):
            continue
        command = line.replace(README_URL, squall.url).replace("aws ", f"{AWS_CLI} ", 1)
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=120, check=False)  # fmt: skip
        if line.rstrip().endswith("# v2"):
            assert result.returncode != 0 and "Unknown options: --cli-binary-format" in result.stderr, line
            continue
        assert result.returncode == 0, f"{line}\n{result.stderr}"
        ran += 1
    assert ran >= 4
    assert "Hello, you!" in (tmp_path / "out.json").read_text()  # the v1 invoke sent the payload as written
    s3 = squall.client("s3")
    assert s3.get_object(Bucket="photos", Key="originals/photo.jpg")["Body"].read().startswith(b"\xff\xd8")
    assert squall.client("sqs").get_queue_url(QueueName="jobs")["QueueUrl"].endswith("/jobs")


# -- yaml --


def _kind(doc: Any) -> str:
    if isinstance(doc, dict) and "service" in doc:
        return "serverless.yml"
    if isinstance(doc, dict) and ("Resources" in doc or "Transform" in doc):
        return "template.yaml"
    return "squall.yaml"


def _handlers(kind: str, doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(code directory, handler) of every function of the document."""
    if kind == "squall.yaml":
        return [(f.get("code", "."), f["handler"]) for f in doc["functions"].values()]
    if kind == "serverless.yml":
        return [(".", f["handler"]) for f in doc["functions"].values()]
    defaults = (doc.get("Globals") or {}).get("Function") or {}
    return [
        (r["Properties"].get("CodeUri", defaults.get("CodeUri", ".")), r["Properties"]["Handler"])
        for r in doc["Resources"].values()
        if r["Type"] == "AWS::Serverless::Function"
    ]


@pytest.mark.parametrize("index", range(len(blocks("yaml"))))
def test_yaml_block_parses_and_deploys(squall: SquallProcess, tmp_path: Path, index: int) -> None:
    text = blocks("yaml")[index]
    doc = parse_cfn_yaml(text, f"README.md yaml block {index}")  # CloudFormation's !Ref tags included
    kind = _kind(doc)
    assert kind in PROJECT_FILES
    if kind == "squall.yaml":
        yaml.safe_load(text)  # plain YAML, no tags
    (tmp_path / kind).write_text(text)
    if kind == "squall.yaml":  # local layer directories the example names
        for f in doc["functions"].values():
            for layer in f.get("layers") or []:
                if not str(layer).startswith("arn:"):
                    (tmp_path / layer / "python").mkdir(parents=True, exist_ok=True)
                    (tmp_path / layer / "python" / "shared.py").write_text("GREETING = 'hi'\n")
    for code, handler in _handlers(kind, doc):
        module, function = handler.rsplit(".", 1)
        path = tmp_path / code / f"{module}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"def {function}(event, context):\n    return {{'statusCode': 200, 'body': 'readme'}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "squall.cli.main", "deploy", str(tmp_path)],
        env=cli_env(squall), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"README yaml block {index} did not deploy:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    for line in text.splitlines():  # "# GET http://127.0.0.1:9070/hello/you (unsigned)" answers as said
        m = re.search(r"# GET (http://127\.0\.0\.1:9070\S+)", line)
        if m:
            r = httpx.get(m.group(1).replace(README_URL, squall.url), timeout=30)
            assert (r.status_code, r.text) == (200, "readme")


# -- bash --


def test_squall_commands_exist_with_their_flags() -> None:
    commands = [ln for ln in bash_lines() if ln.startswith("squall ")]
    assert len(commands) >= 5
    for line in commands:
        argv = shlex.split(line, comments=True)
        if "|" in argv:
            argv = argv[: argv.index("|")]
        try:
            args = build_parser().parse_args(argv[1:])
        except SystemExit as e:  # --version and --help exit 0 after printing; a bad flag exits 2
            assert e.code == 0, f"README command does not parse: {line}"
            continue
        assert callable(args.func), line


def test_scripts_and_exports_exist() -> None:
    for line in bash_lines():
        if line.startswith("bash "):
            assert (ROOT / shlex.split(line, comments=True)[1]).is_file(), line
        elif line.startswith("export "):
            names = [w.split("=", 1)[0] for w in shlex.split(line, comments=True)[1:]]
            assert set(names) <= {
                "AWS_ENDPOINT_URL",
                "AWS_DEFAULT_REGION",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
            }
        else:
            assert line.startswith(("squall ", "aws ")), f"a README command this test does not check: {line}"
