"""Merging layer trees for /opt (squall.sandbox.node.layers) and the ``layers:`` key of squall.yaml."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from squall.cli.project import ProjectError, parse_project
from squall.sandbox.node.layers import merge_layers


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_later_layers_override_earlier_ones(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a", {"python/x.py": "a", "python/only_a.py": "a", "bin/tool": "file in a"})
    b = _tree(tmp_path / "b", {"python/x.py": "b", "bin/tool/inner": "dir in b"})
    os.symlink("python/x.py", b / "link")
    merged = merge_layers([a, b], tmp_path / "cache")
    assert (merged / "python/x.py").read_text() == "b"
    assert (merged / "python/only_a.py").read_text() == "a"
    assert (merged / "bin/tool/inner").read_text() == "dir in b"  # a directory replaces a file of the same path
    assert os.readlink(merged / "link") == "python/x.py"  # links are recreated, never followed
    assert (merged / "python/x.py").stat().st_ino == (b / "python/x.py").stat().st_ino  # hardlinked, not copied
    # the other order, and the cache
    other = merge_layers([b, a], tmp_path / "cache")
    assert other != merged and (other / "python/x.py").read_text() == "a" and (other / "bin/tool").is_file()
    assert merge_layers([a, b], tmp_path / "cache") == merged
    assert not os.stat(merged).st_mode & 0o222  # sealed read-only


def test_layers_key_of_squall_yaml(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    arn = "arn:aws:lambda:us-east-1:000000000000:layer:tools:3"
    project = parse_project(
        {"functions": {"f": {"handler": "app.handler", "layers": ["./shared", arn]}}}, base_dir=tmp_path
    )
    assert project.functions["f"].layers == (tmp_path / "shared", arn)
    with pytest.raises(ProjectError, match=r"functions\.f\.layers\[0\].*does not exist"):
        parse_project({"functions": {"f": {"handler": "app.handler", "layers": ["./nope"]}}}, base_dir=tmp_path)
    with pytest.raises(ProjectError, match=r"functions\.f\.layers\[0\].*layer version ARN"):
        parse_project({"functions": {"f": {"handler": "a.b", "layers": ["arn:aws:lambda:x"]}}}, base_dir=tmp_path)
    with pytest.raises(ProjectError, match="at most 5"):
        parse_project({"functions": {"f": {"handler": "a.b", "layers": [arn] * 6}}}, base_dir=tmp_path)
