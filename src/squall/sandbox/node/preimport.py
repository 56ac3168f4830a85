"""Learned pre-import: which modules a function's next zygote imports before it forks instances.

An instance reports the modules its init and its first invocations imported (lazy imports inside the handler
included; squall.sandbox.runtime.imports).  That report comes from the function's code, so it is hostile input: only
well-formed dotted module names are kept, at most :data:`MAX_NAMES` of them, never the platform's own package.
The names are not trusted either: the next zygote hands them to the same sandboxed import probe that finds the
handler's dependencies, and pre-imports only what that probe imported (squall.sandbox.node.zygote).

The set belongs to one function version *and its code*: a deploy (new code) starts from nothing, so what a zygote
pre-imports is a function of (code, pinned names, what that code was seen importing).  ``preimport:`` in
squall.yaml (the tag ``squall:preimport``) pins names ahead of anything learned.

The pure part (:func:`clean_names`, :func:`learn`, :func:`candidates`) is table-tested; :class:`PreimportBook`
keeps one small JSON file per function version under the node's data directory (the node's own files).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = [
    "LEARN_INVOCATIONS",
    "MAX_NAMES",
    "MAX_NAME_LEN",
    "Learned",
    "PreimportBook",
    "candidates",
    "clean_names",
    "learn",
    "parse_pinned",
    "preload",
    "record_probe",
]

#: most names kept per function version (botocore + boto3 + Pillow import ~400 modules)
MAX_NAMES = 1024
#: longest module name kept (characters)
MAX_NAME_LEN = 200
#: an instance reports what its init and this many first invocations imported (then it stops looking)
LEARN_INVOCATIONS = 3
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
#: never pre-imported by name: the platform's own package and the interpreter's entry module
_NEVER = ("squall", "__main__", "__mp_main__", "builtins", "sys")


def _allowed(name: str) -> bool:
    top = name.split(".", 1)[0]
    return top not in _NEVER and not top.startswith("__")


def clean_names(raw: Any, limit: int = MAX_NAMES) -> list[str]:
    """Well-formed, allowed module names out of untrusted ``raw`` (anything): order kept, duplicates dropped, at
    most ``limit``; anything else (not a list, not strings, too long, ``..``, the platform's package) is ignored."""
    if not isinstance(raw, (list, tuple)):
        return []
    out: dict[str, None] = {}
    for item in raw[: 4 * limit]:
        if len(out) >= limit:
            break
        if isinstance(item, str) and len(item) <= MAX_NAME_LEN and _NAME.fullmatch(item) and _allowed(item):
            out[item] = None
    return list(out)


def parse_pinned(value: str) -> list[str]:
    """The tag ``squall:preimport`` ("PIL.Image PIL.ImageOps", commas allowed) as names; raises ValueError naming
    the first one that is not a module name."""
    names = [n for n in re.split(r"[\s,]+", value.strip()) if n]
    for n in names:
        if len(n) > MAX_NAME_LEN or not _NAME.fullmatch(n) or not _allowed(n):
            raise ValueError(f"{n!r} is not a module name that can be pre-imported")
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Learned:
    """What one function version's code was seen importing (in first-seen order)."""

    #: the code this was learned from (CodeSha256): another code digest starts from nothing
    code: str = ""
    modules: tuple[str, ...] = ()
    #: how many reports (instance inits and invocations) added something
    updates: int = 0
    #: reports that were cut at MAX_NAMES
    truncated: bool = False
    #: the candidate names (pinned + learned) the import probe last ran with for this code, and what it imported
    #: (dependencies only): what the next zygote pre-imports.  None: no probe has answered for this code yet
    probed_for: tuple[str, ...] | None = None
    deps: tuple[str, ...] = ()
    #: why that probe pre-imports nothing (it failed, or its imports started threads); "" when it answered
    note: str = ""


def learn(state: Learned, code: str, reported: Any, limit: int = MAX_NAMES) -> Learned:
    """``state`` after an instance of code ``code`` reported importing ``reported`` (untrusted).  A report for other
    code than ``state``'s replaces it (a deploy resets what was learned); names already known change nothing."""
    if state.code != code:
        state = Learned(code=code)
    names = clean_names(reported, limit + 1)
    over = len(names) > limit  # (the report alone held more than fits)
    new = [n for n in names[:limit] if n not in state.modules]
    if not new:
        return replace(state, truncated=True) if over and not state.truncated else state
    room = max(0, limit - len(state.modules))
    return replace(
        state,
        modules=state.modules + tuple(new[:room]),
        updates=state.updates + (1 if room else 0),
        truncated=state.truncated or over or len(new) > room,
    )


def record_probe(
    state: Learned, code: str, tried: Iterable[str], deps: Any, note: str = "", limit: int = MAX_NAMES
) -> Learned:
    """``state`` after the import probe of code ``code``, given ``tried``, answered ``deps`` (untrusted), or failed
    (``note`` says why; ``deps`` is then empty)."""
    if state.code != code:
        state = Learned(code=code)
    return replace(state, probed_for=tuple(tried), deps=tuple(clean_names(deps, limit)), note=note[:500])


def preload(pinned: Iterable[str], state: Learned, code: str, limit: int = MAX_NAMES) -> list[str]:
    """What a new zygote of code ``code`` pre-imports: the pinned names, then what the probe saw that code import."""
    deps = state.deps if state.code == code else ()
    return clean_names([*pinned, *deps], limit)


def candidates(pinned: Iterable[str], learned: Learned, code: str, limit: int = MAX_NAMES) -> list[str]:
    """Names for the next zygote's probe: pinned ones first, then what this code was seen importing."""
    mods = learned.modules if learned.code == code else ()
    return clean_names([*pinned, *mods], limit)


@dataclass
class PreimportBook:
    """The learned sets of every function version this node ran, one JSON file each under ``root`` (the node's
    own directory, 0700): they survive a restart of the server, so a restarted platform's first zygote of a
    function already pre-imports what that code imports."""

    root: Path
    _cache: dict[str, Learned] = field(default_factory=dict)

    def _path(self, function: str, version: str) -> Path:
        h = hashlib.sha256(f"{function}\0{version}".encode()).hexdigest()[:32]
        return self.root / f"{h}.json"

    def get(self, function: str, version: str) -> Learned:
        key = f"{function}:{version}"
        got = self._cache.get(key)
        if got is None:
            got = Learned()
            with contextlib.suppress(OSError, ValueError, TypeError):
                doc = json.loads(self._path(function, version).read_text())
                if doc.get("function") == function and doc.get("version") == version:
                    probed = doc.get("probed_for")
                    got = Learned(
                        code=str(doc.get("code", "")),
                        modules=tuple(clean_names(doc.get("modules"))),
                        updates=int(doc.get("updates", 0)),
                        truncated=bool(doc.get("truncated")),
                        probed_for=tuple(clean_names(probed)) if isinstance(probed, list) else None,
                        deps=tuple(clean_names(doc.get("deps"))),
                        note=str(doc.get("note", ""))[:500],
                    )
            self._cache[key] = got
        return got

    def learn(self, function: str, version: str, code: str, reported: Any) -> Learned:
        return self._put(function, version, self.get(function, version), learn(self.get(function, version), code,
                                                                                reported))  # fmt: skip

    def record_probe(
        self, function: str, version: str, code: str, tried: Iterable[str], deps: Any, note: str = ""
    ) -> Learned:
        before = self.get(function, version)
        return self._put(function, version, before, record_probe(before, code, tried, deps, note))

    def _put(self, function: str, version: str, before: Learned, after: Learned) -> Learned:
        if after != before:
            self._cache[f"{function}:{version}"] = after
            self._save(function, version, after)
        return after

    def _save(self, function: str, version: str, state: Learned) -> None:
        doc = {"function": function, "version": version, "code": state.code, "modules": list(state.modules),
               "updates": state.updates, "truncated": state.truncated, "deps": list(state.deps), "note": state.note,
               "probed_for": None if state.probed_for is None else list(state.probed_for)}  # fmt: skip
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self._path(function, version)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)
        except OSError:
            pass  # a full disk loses a hint, never an event: the next zygote pre-imports less
