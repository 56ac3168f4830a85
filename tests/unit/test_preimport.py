"""Table tests of the learned pre-import set (squall.sandbox.node.preimport): hostile reports, bounds, deploy resets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from squall.sandbox.node.preimport import (
    MAX_NAME_LEN,
    Learned,
    PreimportBook,
    candidates,
    clean_names,
    learn,
    parse_pinned,
    preload,
    record_probe,
)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (["PIL", "PIL.Image", "PIL.Image"], ["PIL", "PIL.Image"]),  # order kept, duplicates dropped
        (["json", "xml.dom.minidom", "_ssl"], ["json", "xml.dom.minidom", "_ssl"]),
        ("PIL.Image", []),  # not a list
        ({"PIL": 1}, []),
        (None, []),
        ([1, None, b"PIL", ["PIL"], {"a": 1}], []),  # not strings
        (["../etc/passwd", "a..b", ".rel", "a.", "a b", "a;b", "a/b", "", "é", "1abc"], []),  # not module names
        (["x" * (MAX_NAME_LEN + 1), "y" * MAX_NAME_LEN], ["y" * MAX_NAME_LEN]),  # too long
        (["squall", "squall.runtime.loop", "__main__", "__future__", "sys", "builtins"], []),  # never by name
        (["squallish", "mysys"], ["squallish", "mysys"]),  # only those exact top-level names are refused
    ],
)
def test_clean_names(raw: Any, want: list[str]) -> None:
    assert clean_names(raw) == want


def test_clean_names_is_bounded() -> None:
    raw = [f"m{i}" for i in range(5000)]
    assert clean_names(raw, limit=10) == [f"m{i}" for i in range(10)]
    # a flood of junk before good names cannot make the scan unbounded: at most 4 x limit items are looked at
    assert clean_names(["!"] * 100 + ["ok"], limit=10) == []


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("PIL.Image", ["PIL.Image"]),
        ("PIL.Image PIL.ImageOps", ["PIL.Image", "PIL.ImageOps"]),
        ("PIL.Image, numpy ,  boto3", ["PIL.Image", "numpy", "boto3"]),
        ("  ", []),
        ("a a", ["a"]),
    ],
)
def test_parse_pinned(value: str, want: list[str]) -> None:
    assert parse_pinned(value) == want


@pytest.mark.parametrize("value", ["os.path/..", "squall.node", "1x", "a-b"])
def test_parse_pinned_refuses(value: str) -> None:
    with pytest.raises(ValueError, match="not a module name"):
        parse_pinned(value)


# (state before, code reported for, report) -> (modules after, updates after, truncated)
LEARN_TABLE = [
    (Learned(), "c1", ["PIL", "PIL.Image"], ("PIL", "PIL.Image"), 1, False),
    (Learned("c1", ("PIL",), 1), "c1", ["PIL", "PIL.Image"], ("PIL", "PIL.Image"), 2, False),
    (Learned("c1", ("PIL",), 1), "c1", ["PIL"], ("PIL",), 1, False),  # nothing new: unchanged
    (Learned("c1", ("PIL",), 1), "c1", "garbage", ("PIL",), 1, False),  # hostile: ignored
    (Learned("c1", ("PIL",), 1), "c2", ["json"], ("json",), 1, False),  # new code: starts from nothing
    (Learned("c1", ("PIL",), 1), "c2", [], (), 0, False),  # new code, nothing reported: reset all the same
    (Learned("c1", ("a", "b"), 1), "c1", ["c", "d", "e"], ("a", "b", "c"), 2, True),  # bounded (limit 3)
    (Learned("c1", ("a", "b", "c"), 2, True), "c1", ["x"], ("a", "b", "c"), 2, True),  # full: stays
    (Learned(), "c1", ["a", "b", "c", "d"], ("a", "b", "c"), 1, True),  # one report over the limit
    (Learned("c1", ("a", "b", "c"), 1), "c1", ["a", "b", "c", "d"], ("a", "b", "c"), 1, True),
]


@pytest.mark.parametrize(("state", "code", "report", "modules", "updates", "truncated"), LEARN_TABLE)
def test_learn(state: Learned, code: str, report: Any, modules: tuple[str, ...], updates: int, truncated: bool) -> None:
    after = learn(state, code, report, limit=3)
    assert (after.code, after.modules, after.updates, after.truncated) == (code, modules, updates, truncated)


def test_learn_unchanged_is_the_same_object() -> None:
    s = Learned("c1", ("PIL",), 1)
    assert learn(s, "c1", ["PIL"]) is s  # (the node writes its file only when something changed)


def test_a_deploy_forgets_the_probe_answer_too() -> None:
    s = record_probe(Learned("c1", ("PIL.Image",), 1), "c1", ["PIL.Image"], ["PIL", "PIL.Image"])
    assert preload(["numpy"], s, "c1") == ["numpy", "PIL", "PIL.Image"]  # pinned first
    reset = learn(s, "c2", ["json"])
    assert (reset.probed_for, reset.deps, reset.modules) == (None, (), ("json",))
    assert preload(["numpy"], s, "c2") == ["numpy"]  # asked for other code: only the pinned names


@pytest.mark.parametrize(
    ("pinned", "state", "code", "want"),
    [
        ((), Learned(), "c1", []),
        (("PIL.Image",), Learned(), "c1", ["PIL.Image"]),
        (("PIL.Image",), Learned("c1", ("PIL", "PIL.Image", "json")), "c1", ["PIL.Image", "PIL", "json"]),
        (("PIL.Image",), Learned("c0", ("numpy",)), "c1", ["PIL.Image"]),  # learned for other code: not used
        (("squall.x",), Learned(), "c1", []),  # (pinned names are checked when set; here again)
    ],
)
def test_candidates(pinned: tuple[str, ...], state: Learned, code: str, want: list[str]) -> None:
    assert candidates(pinned, state, code) == want


def test_probe_answer_is_cleaned_and_failures_say_why() -> None:
    s = record_probe(Learned("c1"), "c1", ["a"], ["a", "../x", 3, "squall.node"])
    assert (s.probed_for, s.deps, s.note) == (("a",), ("a",), "")
    f = record_probe(s, "c1", ["a", "b"], [], note="import probe timed out after 10 s")
    assert (f.probed_for, f.deps, f.note) == (("a", "b"), (), "import probe timed out after 10 s")


def test_book_persists_and_survives_a_restart(tmp_path: Path) -> None:
    book = PreimportBook(tmp_path / "preimport")
    assert book.get("f", "$LATEST") == Learned()
    book.learn("f", "$LATEST", "c1", ["PIL", "PIL.Image"])
    book.record_probe("f", "$LATEST", "c1", ["PIL", "PIL.Image"], ["PIL", "PIL.Image", "PIL._imaging"])
    book.learn("f", "2", "c0", ["json"])
    again = PreimportBook(tmp_path / "preimport")  # a restarted node
    got = again.get("f", "$LATEST")
    assert (got.code, got.modules, got.deps) == ("c1", ("PIL", "PIL.Image"), ("PIL", "PIL.Image", "PIL._imaging"))
    assert again.get("f", "2").modules == ("json",)
    assert again.get("g", "$LATEST") == Learned()


def test_book_treats_its_files_as_untrusted(tmp_path: Path) -> None:
    root = tmp_path / "preimport"
    book = PreimportBook(root)
    book.learn("f", "$LATEST", "c1", ["PIL"])
    (path,) = root.iterdir()
    doc = json.loads(path.read_text())
    doc["modules"] = ["ok", "../../etc", 7]
    doc["deps"] = "not a list"
    path.write_text(json.dumps(doc))
    got = PreimportBook(root).get("f", "$LATEST")
    assert (got.modules, got.deps) == (("ok",), ())
    path.write_text("{ not json")
    assert PreimportBook(root).get("f", "$LATEST") == Learned()
    doc["function"] = "other"  # a file that is not this function's
    path.write_text(json.dumps(doc))
    assert PreimportBook(root).get("f", "$LATEST") == Learned()
