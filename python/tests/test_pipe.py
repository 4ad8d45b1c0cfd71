"""multiprocessing.Pipe and Connection semantics."""

import array
import os
import pickle
import signal
import threading
import time

import pytest

import shmring
import _children as ch
from conftest import WATCHDOG, join_all


def test_duplex_both_ways():
    a, b = shmring.Pipe()
    assert a.readable and a.writable and b.readable and b.writable
    a.send({"x": [1, 2]})
    assert b.recv() == {"x": [1, 2]}
    b.send("back")
    assert a.recv() == "back"


def test_simplex_directions_and_errors():
    r, w = shmring.Pipe(duplex=False)
    assert r.readable and not r.writable
    assert w.writable and not w.readable
    with pytest.raises(OSError, match="^connection is read-only$"):
        r.send(1)
    with pytest.raises(OSError, match="^connection is read-only$"):
        r.send_bytes(b"x")
    with pytest.raises(OSError, match="^connection is write-only$"):
        w.recv()
    with pytest.raises(OSError, match="^connection is write-only$"):
        w.recv_bytes()
    with pytest.raises(OSError, match="^connection is write-only$"):
        w.poll()
    w.send("ok")
    assert r.recv() == "ok"


def test_send_bytes_offset_size_and_argument_errors():
    a, b = shmring.Pipe()
    a.send_bytes(b"abcdef", 2)
    assert b.recv_bytes() == b"cdef"
    a.send_bytes(b"abcdef", 1, 3)
    assert b.recv_bytes() == b"bcd"
    a.send_bytes(b"abc", 3)
    assert b.recv_bytes() == b""
    with pytest.raises(ValueError, match="^offset is negative$"):
        a.send_bytes(b"abc", -1)
    with pytest.raises(ValueError, match="^buffer length < offset$"):
        a.send_bytes(b"abc", 4)
    with pytest.raises(ValueError, match="^size is negative$"):
        a.send_bytes(b"abc", 0, -1)
    with pytest.raises(ValueError, match=r"^buffer length < offset \+ size$"):
        a.send_bytes(b"abc", 1, 3)
    assert not b.poll()


def test_send_bytes_takes_any_buffer():
    a, b = shmring.Pipe()
    ints = array.array("i", [1, 2, 3])
    for buf in (bytearray(b"ba"), memoryview(b"mv"), ints):
        a.send_bytes(buf)
    assert b.recv_bytes() == b"ba"
    assert b.recv_bytes() == b"mv"
    assert b.recv_bytes() == ints.tobytes()
    a.send_bytes(ints, 4, 8)  # offsets count bytes, as in CPython
    assert b.recv_bytes() == ints.tobytes()[4:12]


def test_recv_bytes_maxlength():
    a, b = shmring.Pipe()
    with pytest.raises(ValueError, match="^negative maxlength$"):
        b.recv_bytes(-1)
    a.send_bytes(b"12345")
    assert b.recv_bytes(5) == b"12345"
    a.send_bytes(b"123456")
    with pytest.raises(OSError, match="^bad message length$"):
        b.recv_bytes(5)
    # A duplex end becomes write-only.
    assert not b.readable and b.writable and not b.closed
    b.send("still writes")
    assert a.recv() == "still writes"
    # A read-only end is closed.
    r, w = shmring.Pipe(duplex=False)
    w.send_bytes(b"123456")
    with pytest.raises(OSError, match="^bad message length$"):
        r.recv_bytes(2)
    assert r.closed


def test_recv_bytes_into():
    a, b = shmring.Pipe()
    buf = bytearray(10)
    a.send_bytes(b"hello")
    assert b.recv_bytes_into(buf, 2) == 5
    assert buf == b"\0\0hello\0\0\0"
    ints = array.array("i", [0, 0, 0, 0])
    a.send_bytes(array.array("i", [7, 8]))
    assert b.recv_bytes_into(ints, 4) == 8
    assert list(ints) == [0, 7, 8, 0]
    with pytest.raises(ValueError, match="^negative offset$"):
        b.recv_bytes_into(buf, -1)
    with pytest.raises(ValueError, match="^offset too large$"):
        b.recv_bytes_into(buf, 11)
    a.send_bytes(b"far too long a message")
    with pytest.raises(shmring.BufferTooShort) as e:
        b.recv_bytes_into(buf)
    assert e.value.args[0] == b"far too long a message"
    assert isinstance(e.value, shmring.ProcessError)
    assert not b.poll()  # the message was consumed


def test_poll():
    a, b = shmring.Pipe()
    assert b.poll() is False
    t = time.monotonic()
    assert b.poll(0.3) is False
    assert time.monotonic() - t >= 0.29
    assert b.poll(-1) is False
    a.send(1)
    assert b.poll() is True and b.poll(None) is True
    assert b.recv() == 1
    a.close()
    assert b.poll() is True  # end of file is readable
    with pytest.raises(EOFError):
        b.recv()


def test_eof_after_draining_and_broken_pipe():
    a, b = shmring.Pipe()
    a.send("last")
    a.close()
    assert b.recv() == "last"
    with pytest.raises(EOFError):
        b.recv()
    with pytest.raises(EOFError):
        b.recv_bytes()
    with pytest.raises(BrokenPipeError):
        b.send("nobody listens")


def test_closed_handle_errors_and_context_manager():
    a, b = shmring.Pipe()
    with a:
        assert not a.closed
    assert a.closed
    for call in (lambda: a.send(1), a.recv, lambda: a.send_bytes(b"x"), a.recv_bytes,
                 lambda: a.recv_bytes_into(bytearray(1)), a.poll, a.fileno):
        with pytest.raises(OSError, match="^handle is closed$"):
            call()
    a.close()  # twice is harmless
    with pytest.raises(OSError):
        b.fileno()  # no descriptor in shmring


def test_large_messages_stream():
    a, b = shmring.Pipe()
    payload = os.urandom(1 << 20)
    import threading

    t = threading.Thread(target=lambda: (a.send_bytes(payload), a.send({"big": payload})))
    t.start()
    assert b.recv_bytes() == payload
    assert b.recv() == {"big": payload}
    t.join(WATCHDOG)


def test_messages_of_every_size_around_the_receive_buffer():
    # A connection receives into a buffer it keeps (4 KiB at first, grown
    # to the longest message up to 1 MiB): each message must come out
    # whole, whatever the buffer held before, and a short one after a long
    # one must not carry the long one's tail.
    import threading

    a, b = shmring.Pipe()
    sizes = [0, 1, 4095, 4096, 4097, 70000, 3, 300000, 1 << 20, (1 << 20) + 1, 3 << 20, 2, 65536]
    payloads = [os.urandom(n) for n in sizes]

    def send():
        for p in payloads:
            a.send_bytes(p)
        for p in payloads:
            a.send(p)

    t = threading.Thread(target=send)
    t.start()
    assert [b.recv_bytes() for _ in payloads] == payloads
    assert [b.recv() for _ in payloads] == payloads
    t.join(WATCHDOG)


def test_threads_receiving_on_one_end_each_get_whole_messages():
    import threading

    a, b = shmring.Pipe()
    n = 2000
    got = [[], []]

    def recv(out):
        for _ in range(n):
            out.append(b.recv_bytes())

    readers = [threading.Thread(target=recv, args=(got[i],)) for i in range(2)]
    for r in readers:
        r.start()
    for i in range(2 * n):
        a.send_bytes(bytes([i % 251]) * (1 + (i * 7919) % 20000))
    for r in readers:
        r.join(WATCHDOG)
    every = sorted(got[0] + got[1], key=lambda m: (len(m), m[:1]))
    want = sorted((bytes([i % 251]) * (1 + (i * 7919) % 20000) for i in range(2 * n)), key=lambda m: (len(m), m[:1]))
    assert every == want


def test_garbage_collected_end_is_eof_for_the_other():
    a, b = shmring.Pipe()
    del a
    with pytest.raises(EOFError):
        b.recv()


def test_connection_pickles_by_name():
    a, b = shmring.Pipe()
    b2 = pickle.loads(pickle.dumps(b))
    a.send("via copy")
    assert b2.recv() == "via copy"


# -- processes -----------------------------------------------------------------


def test_child_sends_and_closes(ctx):
    # Seed 003: parent_conn, child_conn = Pipe(); the child sends and closes.
    parent_conn, child_conn = shmring.Pipe()
    p = ctx.Process(target=ch.send_then_close, args=(child_conn, ["Hello The_Third_Wave"]))
    p.start()
    child_conn.close()  # the parent's unused copy: signals nothing
    assert parent_conn.recv() == "Hello The_Third_Wave"
    with pytest.raises(EOFError):
        parent_conn.recv()
    join_all([p])


def test_child_exit_is_eof(ctx):
    a, b = shmring.Pipe()
    p = ctx.Process(target=ch.send_then_exit, args=(b, [1, 2]))
    p.start()
    assert [a.recv(), a.recv()] == [1, 2]
    join_all([p])
    with pytest.raises(EOFError):
        a.recv()


def test_echo_round_trips(ctx):
    a, b = shmring.Pipe()
    p = ctx.Process(target=ch.echo, args=(b,))
    p.start()
    for i in range(300):
        a.send(("n", i))
        assert a.recv() == ("n", i)
    a.close()
    join_all([p])
    assert p.exitcode == 0


def test_seed_000_simplex_pair_to_writer_and_reader(ctx):
    # Seed 000: both ends to both children; the writer sends on p[1], the
    # reader receives on p[0] and is terminated in the middle of recv().
    p = shmring.Pipe(duplex=False)
    out, sent = shmring.Queue(), shmring.Queue()
    pwrite = ctx.Process(target=ch.pipe_pair_child, args=(p, sent))
    pread = ctx.Process(target=ch.pipe_reader_child, args=(p, out))
    pwrite.start()
    pread.start()
    join_all([pwrite])
    assert sent.get(timeout=5) == "sent"
    assert [out.get(timeout=WATCHDOG) for _ in range(3)] == ["a", "b", "c"]
    pread.terminate()
    join_all([pread])


def test_second_reader_of_a_claimed_end_fails_at_once_with_the_reason(ctx):
    a, b = shmring.Pipe()
    ready = shmring.Queue()
    first = ctx.Process(target=ch.recv_forever, args=(b, ready))
    first.start()
    ready.get(timeout=WATCHDOG)
    a.send("for the first")  # makes sure the first reader claimed the end
    time.sleep(0.5)
    out = shmring.Queue()
    second = ctx.Process(target=ch.recv_one_and_report, args=(b, out))
    second.start()
    kind, message = out.get(timeout=WATCHDOG)
    join_all([second])
    first.terminate()
    join_all([first])
    assert kind == "OSError" and "in use by process" in message, (kind, message)


def test_sigkilled_writer_is_eof_for_the_reader(ctx):
    a, b = shmring.Pipe()
    ready = shmring.Queue()
    w = ctx.Process(target=ch.send_forever, args=(b, ready))
    w.start()
    ready.get(timeout=WATCHDOG)
    got = [a.recv() for _ in range(100)]
    assert got == list(range(100))
    os.kill(w.pid, signal.SIGKILL)
    join_all([w])
    last = got[-1]
    with pytest.raises(EOFError):
        while True:
            x = a.recv()
            assert x == last + 1
            last = x


def test_terminated_reader_is_a_broken_pipe_for_the_writer(ctx):
    a, b = shmring.Pipe()
    ready = shmring.Queue()
    r = ctx.Process(target=ch.recv_forever, args=(b, ready))
    r.start()
    ready.get(timeout=WATCHDOG)
    a.send("claim")
    time.sleep(0.3)
    r.terminate()
    join_all([r])
    chunk = b"x" * 65536
    with pytest.raises(BrokenPipeError):
        for _ in range(1000):  # fills the ring, then notices the reader died
            a.send_bytes(chunk)


_REENTRANT_END = []


def _receive_while_unpickling():
    # Runs inside pickle.loads of the outer message: receives the next
    # message on the same connection, whose buffer the outer one is read
    # from until its loads ends.
    return ("inner", _REENTRANT_END[0].recv())


class _ReceivesWhenUnpickled:
    def __reduce__(self):
        return (_receive_while_unpickling, ())


def test_a_receive_inside_unpickling_leaves_both_messages_whole():
    a, b = shmring.Pipe()
    _REENTRANT_END[:] = [b]
    try:
        big = os.urandom(70000)
        a.send([_ReceivesWhenUnpickled(), big])
        a.send(big[::-1])
        outer = b.recv()
        assert outer[0] == ("inner", big[::-1])
        assert outer[1] == big
        a.send(b"after")
        assert b.recv() == b"after"
    finally:
        _REENTRANT_END.clear()


_SLICE_KEPT_BY_UNPICKLING = r"""
import gc, shmring
kept = []
def grab():
    # Finds the buffer `recv` hands `pickle.loads` and keeps a slice of it:
    # a slice shares the view's memory and outlives the view's release.
    for o in gc.get_objects():
        if type(o) in (memoryview, bytearray) and len(o) > 60000:
            kept.append((o[:], bytes(o)))
    return "grabbed"
class Grab:
    def __reduce__(self):
        return (grab, ())
a, b = shmring.Pipe()
a.send([Grab(), b"x" * 70000])
b.recv()
for _ in range(3):
    a.send(b"y" * 70000)
    b.recv()
print("ok" if all(bytes(s) == was for s, was in kept) else "changed")
"""


def test_a_slice_of_the_unpickled_buffer_kept_by_unpickling_stays_readable():
    # Whatever unpickling keeps of its input must stay valid memory after
    # `recv` returns and the connection receives again (before the fix,
    # recv unpickled from a view over its own buffer, freed or reused
    # after: reading the slice crashed the interpreter).
    import subprocess
    import sys

    got = subprocess.run(
        [sys.executable, "-c", _SLICE_KEPT_BY_UNPICKLING],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "ok"



@pytest.mark.parametrize("call", ["recv", "recv_bytes", "poll"])
def test_close_from_another_thread_ends_a_blocked_receive(call):
    """A receive blocked in one thread while another closes the end raises
    OSError("handle is closed") within a slice, and does not claim the
    closed end again (its peer already saw the end)."""
    a, b = shmring.Pipe()
    errors = []

    def reader():
        try:
            getattr(a, call)(*([None] if call == "poll" else []))
        except OSError as e:
            errors.append(str(e))

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.2)
    a.close()
    t.join(5)
    assert not t.is_alive()
    assert errors == ["handle is closed"]
    assert not a._c._claimed
    with pytest.raises(EOFError):
        b.recv_bytes()
