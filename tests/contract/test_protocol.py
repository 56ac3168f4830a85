"""Conformance of squall.sandbox.protocol, and of a runtime that speaks it.

Part 1 tests the pure codec.  Part 2 ("runtime conformance") drives a runtime process through the ``runtime``
fixture (tests/contract/conftest.py): every runtime Squall can run must pass it.
"""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squall.sandbox.protocol import MAX_FRAME_BYTES, Frame, FrameDecoder, Kind, ProtocolError, encode
from tests.contract.conftest import StartRuntime

# --------------------------------------------------------------------------------------------- the codec

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
headers = st.dictionaries(st.text(max_size=12), json_values, max_size=6)
frames = st.builds(Frame, st.sampled_from(list(Kind)), headers, st.binary(max_size=300))


def decode_all(data: bytes, chunks: list[int] | None = None) -> list[Frame]:
    dec = FrameDecoder()
    out: list[Frame] = []
    if chunks is None:
        out += dec.feed(data)
    else:
        pos = 0
        for n in chunks:
            out += dec.feed(data[pos : pos + n])
            pos += n
        out += dec.feed(data[pos:])
    assert dec.pending == 0, "bytes left over after whole frames"
    return out


def frame_bytes(length: int, kind: int, hlen: int, rest: bytes) -> bytes:
    return struct.pack(">IBI", length, kind, hlen) + rest


@pytest.mark.parametrize("kind", list(Kind))
def test_round_trip_every_kind(kind: Kind) -> None:
    header = {"request_id": "r-1", "ok": True, "n": 1.5, "nested": {"a": [1, None]}, "unicode": "é✓"}
    body = b'{"x": 1}\x00\xff'
    (frame,) = decode_all(encode(kind, header, body))
    assert frame == Frame(kind, header, body)
    assert isinstance(frame.kind, Kind)


@pytest.mark.parametrize("kind", list(Kind))
def test_empty_header_and_body(kind: Kind) -> None:
    (frame,) = decode_all(encode(kind))
    assert frame == Frame(kind, {}, b"")


def test_wire_layout() -> None:
    data = encode(Kind.INVOKE, {"a": 1}, b"xyz")
    h = b'{"a":1}'
    assert data == struct.pack(">IBI", 1 + 4 + len(h) + 3, 3, len(h)) + h + b"xyz"


@settings(max_examples=150, deadline=None)
@given(frames)
def test_round_trip_property(frame: Frame) -> None:
    assert decode_all(encode(frame.kind, frame.header, frame.body)) == [frame]


@settings(max_examples=150, deadline=None)
@given(st.lists(frames, min_size=1, max_size=5), st.data())
def test_arbitrary_chunking(fs: list[Frame], data: st.DataObject) -> None:
    wire = b"".join(encode(f.kind, f.header, f.body) for f in fs)
    chunks = data.draw(st.lists(st.integers(0, len(wire)), max_size=20))
    assert decode_all(wire, chunks) == fs


@settings(max_examples=30, deadline=None)
@given(st.lists(frames, min_size=1, max_size=3))
def test_byte_by_byte(fs: list[Frame]) -> None:
    wire = b"".join(encode(f.kind, f.header, f.body) for f in fs)
    dec = FrameDecoder()
    got: list[Frame] = []
    for i in range(len(wire)):
        got += dec.feed(wire[i : i + 1])
        if i < len(wire) - 1:
            assert dec.pending > 0 or got, "decoder dropped bytes"
    assert got == fs
    assert dec.pending == 0


def test_partial_frame_is_buffered_not_emitted() -> None:
    wire = encode(Kind.RESULT, {"request_id": "a"}, b"payload")
    dec = FrameDecoder()
    assert dec.feed(wire[:-1]) == []
    assert dec.pending == len(wire) - 1
    assert dec.feed(wire[-1:]) == [Frame(Kind.RESULT, {"request_id": "a"}, b"payload")]
    assert dec.pending == 0


def test_several_frames_in_one_chunk_plus_a_partial_one() -> None:
    a = encode(Kind.READY, {"init_ms": 1.0})
    b = encode(Kind.RESULT, {"request_id": "x", "ok": True}, b"1")
    c = encode(Kind.SHUTDOWN)
    dec = FrameDecoder()
    got = dec.feed(a + b + c[:3])
    assert [f.kind for f in got] == [Kind.READY, Kind.RESULT]
    assert dec.pending == 3
    assert dec.feed(c[3:]) == [Frame(Kind.SHUTDOWN)]


@pytest.mark.parametrize("length", [0, 1, 4])
def test_length_too_small_is_rejected(length: int) -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(struct.pack(">I", length) + b"\x01" * 8)


def test_length_too_large_is_rejected_before_buffering_it() -> None:
    dec = FrameDecoder()
    with pytest.raises(ProtocolError):
        dec.feed(struct.pack(">I", MAX_FRAME_BYTES + 1))  # nothing else: rejected from the prefix alone


def test_decoder_limit_is_configurable() -> None:
    wire = encode(Kind.INVOKE, {}, b"x" * 100)
    with pytest.raises(ProtocolError):
        FrameDecoder(max_frame_bytes=50).feed(wire)
    assert len(FrameDecoder(max_frame_bytes=len(wire)).feed(wire)) == 1


@pytest.mark.parametrize("kind", [0, 8, 99, 255])  # (6, 7: PARKED, START)
def test_unknown_kind(kind: int) -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(frame_bytes(5 + 2, kind, 2, b"{}"))


@pytest.mark.parametrize("header", [b"not json", b"\xff\xfe", b"[1,2]", b'"str"', b"{"])
def test_header_not_a_json_object(header: bytes) -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(frame_bytes(5 + len(header), int(Kind.INVOKE), len(header), header))


def test_header_overruns_frame() -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(frame_bytes(5 + 2, int(Kind.INVOKE), 3, b"{}"))


def test_encode_enforces_max_frame_bytes() -> None:
    overhead = 1 + 4 + len(b"{}")
    assert len(encode(Kind.INVOKE, {}, b"x" * (MAX_FRAME_BYTES - overhead))) == 4 + MAX_FRAME_BYTES
    with pytest.raises(ProtocolError):
        encode(Kind.INVOKE, {}, b"x" * (MAX_FRAME_BYTES - overhead + 1))


def test_largest_frame_decodes() -> None:
    overhead = 1 + 4 + len(b"{}")
    body = b"y" * (MAX_FRAME_BYTES - overhead)
    (frame,) = decode_all(encode(Kind.RESULT, {}, body))
    assert frame.body == body


# ------------------------------------------------------------------------------ runtime conformance

APP = """
import json, os, sys, logging
print("init side effect")
COUNT = 0

def handler(event, context):
    global COUNT
    COUNT += 1
    if event.get("raise"):
        raise ValueError(event["raise"])
    if event.get("print"):
        print(event["print"])
    return {"event": event, "count": COUNT, "rid": context.aws_request_id,
            "remaining": context.get_remaining_time_in_millis(), "arn": context.invoked_function_arn}
"""


def test_runtime_ready_first_with_init_ms(runtime: StartRuntime) -> None:
    peer = runtime({"app.py": APP})
    frame = peer.recv()
    assert frame is not None
    assert frame.kind == Kind.READY
    assert isinstance(frame.header["init_ms"], (int, float))
    assert frame.header["init_ms"] >= 0
    assert frame.header["init_type"] == "on-demand"
    assert "init side effect" in peer.logs()


def test_runtime_invoke_result_pairs(runtime: StartRuntime) -> None:
    peer = runtime({"app.py": APP})
    assert peer.expect().kind == Kind.READY
    for i in range(5):
        event = {"i": i, "s": "é"}
        frame = peer.invoke(f"req-{i}", json.dumps(event).encode())
        assert frame.kind == Kind.RESULT
        assert frame.header["request_id"] == f"req-{i}"
        assert frame.header["ok"] is True
        assert frame.header.get("error_type") is None
        out = json.loads(frame.body)
        assert out["event"] == event
        assert out["count"] == i + 1  # one process, init once
        assert out["rid"] == f"req-{i}"
        assert out["arn"] == "arn:aws:lambda:us-east-1:0:function:f"


def test_runtime_empty_body_is_empty_event(runtime: StartRuntime) -> None:
    peer = runtime({"app.py": APP})
    assert peer.expect().kind == Kind.READY
    frame = peer.invoke("r", b"")
    assert frame.header["ok"] is True
    assert json.loads(frame.body)["event"] == {}


def test_runtime_frames_arriving_together(runtime: StartRuntime) -> None:
    """Two INVOKE frames in one write: the runtime answers both, in order."""
    peer = runtime({"app.py": APP})
    assert peer.expect().kind == Kind.READY
    h = {"deadline_ms": 2**62, "invoked_arn": "", "trace_id": "", "client_context": None, "identity": None}
    peer.send_raw(encode(Kind.INVOKE, {**h, "request_id": "a"}, b"{}") + encode(Kind.INVOKE, {**h, "request_id": "b"}))
    assert [peer.expect().header["request_id"], peer.expect().header["request_id"]] == ["a", "b"]


def test_runtime_exception_is_lambda_error_document(runtime: StartRuntime) -> None:
    peer = runtime({"app.py": APP})
    assert peer.expect().kind == Kind.READY
    frame = peer.invoke("bad-1", json.dumps({"raise": "boom"}).encode())
    assert frame.kind == Kind.RESULT
    assert frame.header["request_id"] == "bad-1"
    assert frame.header["ok"] is False
    assert frame.header["error_type"] == "ValueError"
    doc = json.loads(frame.body)
    assert set(doc) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert doc["errorType"] == "ValueError"
    assert doc["errorMessage"] == "boom"
    assert doc["requestId"] == "bad-1"
    assert any("app.py" in line for line in doc["stackTrace"])
    assert "[ERROR] ValueError: boom" in peer.logs()
    # still serving
    assert peer.invoke("ok-2").header["ok"] is True


def test_runtime_shutdown_exits_zero(runtime: StartRuntime) -> None:
    peer = runtime({"app.py": APP})
    assert peer.expect().kind == Kind.READY
    assert peer.invoke("r").header["ok"] is True
    peer.send(Kind.SHUTDOWN)
    assert peer.wait_exit() == 0


def test_runtime_eof_makes_it_exit(runtime: StartRuntime) -> None:
    peer = runtime({"app.py": APP})
    assert peer.expect().kind == Kind.READY
    peer.sock.shutdown(2)
    assert peer.wait_exit() == 0


def test_runtime_garbage_makes_it_exit_nonzero(runtime: StartRuntime) -> None:
    peer = runtime({"app.py": APP})
    assert peer.expect().kind == Kind.READY
    peer.send_raw(b"\xff" * 16)
    assert peer.wait_exit() != 0


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        ({"app.py": "import nosuchdep_xyz\n"}, "app.handler", "Runtime.ImportModuleError",
         "Unable to import module 'app': No module named 'nosuchdep_xyz'"),
        ({"other.py": "x = 1\n"}, "app.handler", "Runtime.ImportModuleError",
         "Unable to import module 'app': No module named 'app'"),
        ({"app.py": "def handler(:\n"}, "app.handler", "Runtime.UserCodeSyntaxError", "Syntax error in module 'app'"),
        ({"app.py": "x = 1\n"}, "app.nope", "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'app'"),
        ({"app.py": "x = 1\n"}, "bad", "Runtime.MalformedHandlerName", "Bad handler 'bad'"),
        ({"app.py": "raise RuntimeError('init exploded')\n"}, "app.handler", "RuntimeError", "init exploded"),
    ],
)  # fmt: skip
def test_runtime_init_error(
    runtime: StartRuntime, files: dict[str, str], handler: str, error_type: str, message: str
) -> None:
    peer = runtime(files, handler)
    frame = peer.recv()
    assert frame is not None
    assert frame.kind == Kind.INIT_ERROR
    assert frame.header["error_type"] == error_type
    doc = json.loads(frame.body)
    assert doc["errorType"] == error_type
    assert doc["errorMessage"].startswith(message)
    assert set(doc) >= {"errorMessage", "errorType", "stackTrace"}
    assert peer.recv() is None  # nothing after INIT_ERROR
    peer.wait_exit()
    assert f"[ERROR] {error_type}" in peer.logs()
