#!/usr/bin/env python3
"""Python's multiprocessing beside shmring: the same round trip and stream
as shmring_measure (same payloads, counts, warm-up rule and pinning), through
multiprocessing.Queue, multiprocessing.Pipe (send_bytes/recv_bytes) and
faster-fifo (when importable), plus the Dict target: a Manager().dict()
counter incremented under a multiprocessing.Lock from two processes.

xbench runs this script itself; by hand:

    python3 benches/python/mp_bench.py --payloads 8,1024 --round-trips 1000,1000 \
        --messages 10000,10000 --dict-ops 1000 --reps 1

Prints one JSON object (records, notes, errors) in xbench's schema.
"""

import argparse
import json
import multiprocessing as mp
import os
import sys
import time

CTX = mp.get_context("fork")


def pin(index, enabled):
    if not enabled:
        return
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[index]})


def warmup_round_trips(n):
    return max(10, min(n // 10, 10_000))


def warmup_messages(n):
    return max(10, min(n // 10, 100_000))


def stamp(buf, i):
    if len(buf) >= 8:
        buf[0:8] = i.to_bytes(8, "little")
    return bytes(buf)


def check(msg, payload, i):
    if len(msg) != payload:
        raise RuntimeError(f"message {i}: {len(msg)} bytes, expected {payload}")
    if payload >= 8 and int.from_bytes(msg[0:8], "little") != i:
        raise RuntimeError(f"message {i} out of sequence")


class QueueLink:
    """A pair of queues (multiprocessing.Queue or faster_fifo.Queue)."""

    def __init__(self, make):
        self.a, self.b = make(), make()

    def ends(self):
        return (self.a.put, self.b.get), (self.b.put, self.a.get)


class PipeLink:
    def __init__(self):
        self.x, self.y = CTX.Pipe(duplex=True)

    def ends(self):
        return (self.x.send_bytes, self.x.recv_bytes), (self.y.send_bytes, self.y.recv_bytes)


def echo(end, payload, total, enabled):
    pin(1, enabled)
    send, recv = end
    for i in range(total):
        msg = recv()
        check(msg, payload, i)
        send(msg)


def sink(end, payload, warm, count, enabled):
    pin(1, enabled)
    send, recv = end
    for i in range(warm + count):
        msg = recv()
        check(msg, payload, i)
        if i + 1 == warm or i + 1 == warm + count:
            send(msg)


def round_trip(link, payload, count, enabled):
    warm = warmup_round_trips(count)
    total = warm + count
    ours, theirs = link.ends()
    child = CTX.Process(target=echo, args=(theirs, payload, total, enabled))
    child.start()
    pin(0, enabled)
    send, recv = ours
    buf = bytearray(payload)
    samples = []
    t0 = time.perf_counter_ns()
    for i in range(total):
        send(stamp(buf, i))
        msg = recv()
        t1 = time.perf_counter_ns()
        if i >= warm:
            samples.append(t1 - t0)
        t0 = t1
        check(msg, payload, i)
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"echo process failed: {child.exitcode}")
    samples.sort()

    def pct(p):
        rank = max(1, min(len(samples), -(-int(p * len(samples) * 1000) // 1000)))
        return samples[rank - 1]

    return {"p50_ns": pct(0.5), "p99_ns": pct(0.99), "p999_ns": pct(0.999), "max_ns": samples[-1]}


def stream(link, payload, count, enabled):
    warm = warmup_messages(count)
    ours, theirs = link.ends()
    child = CTX.Process(target=sink, args=(theirs, payload, warm, count, enabled))
    child.start()
    pin(0, enabled)
    send, recv = ours
    buf = bytearray(payload)
    for i in range(warm):
        send(stamp(buf, i))
    recv()
    t0 = time.perf_counter()
    for i in range(warm, warm + count):
        send(stamp(buf, i))
    recv()
    seconds = max(time.perf_counter() - t0, 1e-9)
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"sink process failed: {child.exitcode}")
    return {"msgs_per_s": count / seconds, "bytes_per_s": count * payload / seconds}


def increment(d, lock, ops, barrier, index, enabled):
    pin(index, enabled)
    barrier.wait()
    for _ in range(ops):
        with lock:
            d["counter"] = d["counter"] + 1


def dict_update(ops, enabled):
    with CTX.Manager() as manager:
        d = manager.dict()
        d["counter"] = 0
        lock = CTX.Lock()
        barrier = CTX.Barrier(2)
        child = CTX.Process(target=increment, args=(d, lock, ops, barrier, 1, enabled))
        child.start()
        pin(0, enabled)
        barrier.wait()
        t0 = time.perf_counter()
        for _ in range(ops):
            with lock:
                d["counter"] = d["counter"] + 1
        child.join()
        seconds = max(time.perf_counter() - t0, 1e-9)
        if d["counter"] != 2 * ops:
            raise RuntimeError(f"counter {d['counter']}, expected {2 * ops}")
        return {"msgs_per_s": 2 * ops / seconds}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--payloads", default="8,1024,65536")
    ap.add_argument("--round-trips", default="100000,100000,20000")
    ap.add_argument("--messages", default="2000000,1000000,50000")
    ap.add_argument("--dict-ops", type=int, default=50000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-pin", action="store_true")
    args = ap.parse_args()
    ints = lambda s: [int(x) for x in s.split(",")]
    payloads, rts, msgs = ints(args.payloads), ints(args.round_trips), ints(args.messages)
    enabled = not args.no_pin
    out = {"records": [], "notes": [], "errors": []}
    mechanisms = [
        ("python mp.Queue", lambda: QueueLink(CTX.Queue)),
        ("python mp.Pipe", PipeLink),
    ]
    try:
        import faster_fifo

        mechanisms.append(
            ("python faster-fifo", lambda: QueueLink(lambda: faster_fifo.Queue(max_size_bytes=1 << 20)))
        )
    except ImportError:
        msg = "faster-fifo not importable (pip install faster-fifo): skipped"
        print(f"mp_bench: {msg}", file=sys.stderr)
        out["notes"].append(msg)
    out["notes"].append(f"python {sys.version.split()[0]}, multiprocessing start method fork")
    records = {}

    def add(kind, name, mode, variant, payload, rep):
        key = (kind, name, mode, variant, payload)
        if key not in records:
            records[key] = {"kind": kind, "mechanism": name, "mode": mode, "variant": variant,
                            "payload": payload, "reps": []}
            out["records"].append(records[key])
        records[key]["reps"].append(rep)

    for r in range(args.reps):
        for payload, rt, n in zip(payloads, rts, msgs):
            for name, make in mechanisms:
                for kind, run, count in (("round_trip", round_trip, rt), ("stream", stream, n)):
                    try:
                        rep = run(make(), payload, count, enabled)
                        add(kind, name, "blocking", "", payload, rep)
                        print(f"[{r + 1}/{args.reps}] {kind} {name} {payload} B: {rep}", file=sys.stderr)
                    except Exception as e:  # noqa: BLE001 - reported, not hidden
                        out["errors"].append(f"{kind} {name} {payload} B: {e}")
                    pin_all = set(range(os.cpu_count() or 1))
                    os.sched_setaffinity(0, pin_all)
        try:
            rep = dict_update(args.dict_ops, enabled)
            add("dict", "python Manager().dict() + Lock", "blocking", "2 processes", 8, rep)
            print(f"[{r + 1}/{args.reps}] dict: {rep}", file=sys.stderr)
        except Exception as e:  # noqa: BLE001
            out["errors"].append(f"dict: {e}")
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
