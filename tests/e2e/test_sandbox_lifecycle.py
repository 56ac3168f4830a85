"""The node's handle on an instance releases what it holds exactly once."""

from __future__ import annotations

import os

from tests.sandbox_helpers import NodeRunner


def test_closing_an_instance_twice_leaves_other_descriptors_alone(node: NodeRunner) -> None:
    """stop() and the exit callback both close the instance's handle; the second close must not close whatever
    descriptor has reused the log pipe's number by then (under a burst that broke other instances' pipes and
    sockets: 'Bad file descriptor', uvloop's 'File exists')."""
    fn = node.load({"app.py": "def handler(e, c):\n    return 1\n"})
    inst = node.start(fn)
    log_fd = inst.log_fd
    node.stop(inst)
    r, w = os.pipe()
    try:
        # a descriptor that now has the number the log pipe had (as another instance's pipe or socket would)
        os.dup2(r, log_fd)
        inst.close()  # again
        os.fstat(log_fd)  # still open
    finally:
        for fd in (r, w, log_fd):
            try:
                os.close(fd)
            except OSError:
                pass
