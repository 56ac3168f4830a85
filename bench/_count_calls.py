"""`squall` under a call counter: every Python-level function call and C call the server process makes (all its
threads), counted by a ``sys.setprofile`` hook.  SIGUSR1 writes the running total to $SQUALL_BENCH_COUNT_FILE.

The count does not depend on how loaded the machine is, unlike CPU time (bench/hot_path_calls.py uses it for A/B
comparisons on a shared machine).  The hook makes every call slower, so never time anything under it.

    python bench/_count_calls.py up --data-dir DIR --port PORT
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

_calls = [0]
#: with $SQUALL_BENCH_COUNT_BY_FUNCTION set: calls per function too (written beside the total as ``<file>.by``);
#: a C call is named with the module that made it
_by: dict[str, int] = {}


def _count(frame: FrameType, event: str, arg: Any) -> None:
    if event == "call" or event == "c_call":
        _calls[0] += 1


def _count_by(frame: FrameType, event: str, arg: Any) -> None:
    if event == "call":
        code = frame.f_code
        key = f"{code.co_name} ({'/'.join(code.co_filename.rsplit('/', 2)[-2:])})"
    elif event == "c_call":  # ``frame`` is the caller's: a C call is put to the module that made it
        key = f"{getattr(arg, '__qualname__', '?')} (C from {'/'.join(frame.f_code.co_filename.rsplit('/', 2)[-2:])})"
    else:
        return
    _calls[0] += 1
    _by[key] = _by.get(key, 0) + 1


def _dump(signum: int, frame: FrameType | None) -> None:
    sys.setprofile(None)  # the dump itself is not counted
    path = os.environ["SQUALL_BENCH_COUNT_FILE"]
    with open(path + ".tmp", "w") as f:
        f.write(str(_calls[0]))
    if _by:
        with open(path + ".by", "w") as f:
            f.writelines(f"{n} {k}\n" for k, n in sorted(_by.items(), key=lambda kv: -kv[1]))
    os.replace(path + ".tmp", path)
    sys.setprofile(_count_by if _by else _count)


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _dump)
    hook = _count_by if os.environ.get("SQUALL_BENCH_COUNT_BY_FUNCTION") else _count
    threading.setprofile(hook)
    sys.setprofile(hook)
    sys.argv = ["squall", *sys.argv[1:]]
    from squall.cli.main import main

    main()
