"""Unit tests of the CLI's pieces: table fitting, output modes, credential precedence, deploy progress lines, and the
build steps a real pip run produces."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from tests.unit.test_packaging import make_wheel

from squall.cli.client import CliError, load_credentials
from squall.cli.output import Column, fit_table, output_mode
from squall.cli.packaging import BuildStep, build_package
from squall.cli.progress import DeployProgress

COLUMNS = [
    Column("name"),
    Column("runtime", priority=2),
    Column("memory", "right"),
    Column("request id", priority=1),
    Column("note", priority=3),
]
ROWS = [["alpha", "python3.11", "128 MB", "5c9c3239-0ec4-4808-a129-8c5187acff2a", "x" * 30]]


def render(width: int) -> tuple[str, list[str]]:
    table, dropped = fit_table(COLUMNS, ROWS, width)
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(table)
    return console.file.getvalue(), dropped  # type: ignore[attr-defined]


def test_fit_table_drops_the_least_important_columns_first() -> None:
    wide, dropped = render(200)
    assert dropped == [] and "5c9c3239-0ec4-4808-a129-8c5187acff2a" in wide
    text, dropped = render(80)
    assert dropped == ["note"]
    text, dropped = render(50)
    assert dropped == ["runtime", "request id", "note"]
    assert all(len(line) <= 50 for line in text.splitlines())
    assert "alpha" in text and "128 MB" in text  # priority 0 columns stay whole
    text, dropped = render(12)  # narrower than the essentials: nothing more to drop, cells are cut, never wrapped
    assert len(text.splitlines()) == 5


def test_output_mode_defaults_to_table_on_a_terminal_and_text_in_a_pipe() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert output_mode(argparse.Namespace(output=None), Tty()) == "table"
    assert output_mode(argparse.Namespace(output=None), io.StringIO()) == "text"
    assert output_mode(argparse.Namespace(output="json"), Tty()) == "json"


def test_environment_credentials_win_over_the_file(tmp_path: Path) -> None:
    (tmp_path / "credentials.json").write_text(
        json.dumps({"admin": {"access_key_id": "FILEKEY", "secret_access_key": "file-secret"}})
    )
    aws = {"AWS_ACCESS_KEY_ID": "AWSKEY", "AWS_SECRET_ACCESS_KEY": "aws-secret"}
    squall = {"SQUALL_ACCESS_KEY_ID": "SQKEY", "SQUALL_SECRET_ACCESS_KEY": "sq-secret"}
    assert load_credentials(tmp_path, {}) == ("FILEKEY", "file-secret")
    assert load_credentials(tmp_path, aws) == ("AWSKEY", "aws-secret")
    assert load_credentials(tmp_path, {**aws, **squall}) == ("SQKEY", "sq-secret")
    with pytest.raises(CliError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        load_credentials(tmp_path, {"AWS_ACCESS_KEY_ID": "only-half"})
    with pytest.raises(CliError, match="no credentials"):
        load_credentials(tmp_path / "empty", {})


def test_deploy_progress_prints_one_plain_line_per_phase_when_not_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None, force_terminal=False)
    with DeployProgress(console) as p:
        for i in range(1, 4):
            p.build("fn", BuildStep("resolving", i, None, f"pkg{i}"))
        for i in range(1, 3):
            p.build("fn", BuildStep("downloading", i, None, f"pkg{i}.whl"))
        p.build("fn", BuildStep("vendoring", 0, 3))
        p.build("fn", BuildStep("vendoring", 3, 3))
        p.build("fn", BuildStep("zipping", 0, 3 * 1024 * 1024))
        p.build("fn", BuildStep("zipping", 3 * 1024 * 1024, 3 * 1024 * 1024))
        p.phase("fn", "uploading 1.2 MB (creating the function)")
        p.finish("fn", "created")
    assert out.getvalue().splitlines() == [
        "fn: resolved 3 packages",
        "fn: downloaded 2 packages",
        "fn: vendored 3 packages",
        "fn: zipped 3.0 MB",
        "fn: uploading 1.2 MB (creating the function)",
        "✓ fn created",
    ]


def test_a_real_pip_run_reports_its_phases(tmp_path: Path) -> None:
    code = tmp_path / "app"
    code.mkdir()
    (code / "app.py").write_text("def handler(e, c):\n    return 1\n")
    wheel = make_wheel(tmp_path)
    req = tmp_path / "requirements.txt"
    req.write_text(f"{wheel}\n")
    steps: list[BuildStep] = []
    build_package(code, req, tmp_path / "cache", steps=steps.append)
    phases = [s.phase for s in steps]
    assert phases.index("resolving") < phases.index("vendoring") < phases.index("zipping")
    assert steps[phases.index("resolving")].done == 1
    assert [s for s in steps if s.phase == "vendoring"][-1] == BuildStep("vendoring", 1, 1, "tinydep")
    last = steps[-1]
    assert last.phase == "zipping" and last.done == last.total and last.done > 0
    again: list[BuildStep] = []  # from the cache: no pip, the tree's packages counted
    build_package(code, req, tmp_path / "cache", steps=again.append)
    assert again[0] == BuildStep("vendoring", 1, 1, "from the build cache")
