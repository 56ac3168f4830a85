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


def _count(frame: FrameType, event: str, arg: Any) -> None:
    if event == "call" or event == "c_call":
        _calls[0] += 1


def _dump(signum: int, frame: FrameType | None) -> None:
    path = os.environ["SQUALL_BENCH_COUNT_FILE"]
    with open(path + ".tmp", "w") as f:
        f.write(str(_calls[0]))
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _dump)
    threading.setprofile(_count)
    sys.setprofile(_count)
    sys.argv = ["squall", *sys.argv[1:]]
    from squall.cli.main import main

    main()
