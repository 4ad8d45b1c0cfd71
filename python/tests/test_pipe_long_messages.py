"""recv_bytes of a message of many records: signals are handled while it
arrives slowly (a writer process throttled with SIGSTOP/SIGCONT), and
other threads run while it streams in. Written by an adversarial review of the
receive that takes a whole message with the GIL held; both failed then."""

import os
import signal
import threading
import time

import shmring


class _Alarm(Exception):
    pass


def _send_big(conn, n):
    conn.send_bytes(b"\x5a" * n)


def _throttle(pid):
    # Stopped 30 ms, running a moment: records arrive every ~30 ms, never
    # a whole 100 ms slice without one.
    while True:
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.03)
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.0002)


def test_a_signal_is_handled_while_a_long_message_trickles_in():
    """A message that keeps arriving a little at a time (records at least
    every SLICE, never a whole slice of nothing) must not defer signals
    until it is complete: `SLICE` promises a signal is handled within
    100 ms. The writer process is throttled with SIGSTOP/SIGCONT so the
    message takes seconds to arrive."""
    ctx = shmring.get_context("fork")
    r, w = shmring.Pipe(duplex=False)
    n = 128 << 20
    p = ctx.Process(target=_send_big, args=(w, n))
    p.start()
    # The throttle is a process of its own: it must not need our GIL.
    throttler = ctx.Process(target=_throttle, args=(p.pid,), daemon=True)
    fired = []

    def on_alarm(signum, frame):
        fired.append(time.monotonic())
        raise _Alarm()

    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        # Let the first part of the message arrive, then receive.
        assert r.poll(30)
        throttler.start()
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        start = time.monotonic()
        got = None
        try:
            got = r.recv_bytes()
            raised_at = None
        except _Alarm:
            raised_at = time.monotonic()
        done = time.monotonic()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        throttler.kill()
        throttler.join(5)
        os.kill(p.pid, signal.SIGCONT)
    p.kill()
    p.join(5)
    # `fired` is when Python ran the handler; the signal itself came 0.3 s
    # after `start`.
    assert fired, "the alarm was never handled"
    late = fired[0] - (start + 0.3)
    assert late < 1.0, (
        f"the SIGALRM that fired 0.3 s into recv_bytes was handled {late:.2f} s "
        f"late (receive ran {done - start:.2f} s, completed: {got is not None})"
    )


def test_other_threads_run_while_a_long_message_streams_in():
    """While a message much longer than the ring streams in from a writer
    that keeps up, recv_bytes must not hold the GIL from record to record
    (a waiting thread then never gets it: each brief release wakes it
    before its switch interval runs out, and it finds the GIL taken
    again). Measured up to the moment the writer is done, before the one
    copy into the `bytes` that is made with the GIL held."""
    r, w = shmring.Pipe(duplex=False)
    n = 256 << 20
    payload = b"\xa5" * n
    ticks, written = [], []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.001)

    def writer():
        w.send_bytes(payload)
        written.append(time.monotonic())

    tk = threading.Thread(target=ticker, daemon=True)
    wr = threading.Thread(target=writer, daemon=True)
    tk.start()
    time.sleep(0.05)
    wr.start()
    start = time.monotonic()
    got = r.recv_bytes()
    stop.set()
    wr.join(30)
    tk.join(5)
    assert len(got) == n
    del got
    assert written, "the writer did not finish"
    during = [t for t in ticks if start <= t <= written[0]]
    pts = [start] + during + [written[0]]
    gap = max(b - a for a, b in zip(pts, pts[1:]))
    assert gap < 0.15, (
        f"another thread waited {gap * 1000:.0f} ms at a stretch for the GIL while "
        f"the message streamed in ({(written[0] - start) * 1000:.0f} ms)"
    )
