#!/usr/bin/env python3
"""shmring's Python package beside multiprocessing (and faster-fifo when
importable), between two processes (fork), in one run:

* round trip (p50, p99 of per-trip times) and one-way throughput (timed
  from the moment the consuming process says it is ready), for a
  small int, 100 B bytes, a 10-key dict and 64 KiB bytes, through
  Queue (blocking and *_nowait), SimpleQueue, and Pipe (send/recv, and
  send_bytes/recv_bytes for the bytes payloads);
* dict increments from 2 processes under a Lock: shmring.dict + shmring.Lock
  against Manager().dict() + multiprocessing.Lock (timed from a barrier
  both processes reach once started);
* the binding's own cost: put_nowait + get_nowait of a small object in one
  process, against pickle.dumps + pickle.loads of it alone; and a get
  alone of an int, 84 B of bytes and the 10-key dict (the 10-key dict's
  short form is 85 bytes), beside CPython building that dict from its
  keys and values.

    target/venv/bin/python benches/python/py_vs_mp.py [--quick]

(The README's test command builds that venv with shmring installed; add
faster-fifo to it with `target/venv/bin/pip install faster-fifo`.) Prints
a Markdown table.
"""

import argparse
import os
import pickle
import queue as std_queue
import sys
import time
import multiprocessing as mp

import shmring

CTX = mp.get_context("fork")

try:
    import faster_fifo
    import faster_fifo_reduction  # noqa: F401  (pickling support)
except ImportError:
    faster_fifo = None

PAYLOADS = {
    "int": 7,
    "100 B": b"x" * 100,
    "dict(10)": {f"key{i}": i for i in range(10)},
    "64 KiB": b"y" * 65536,
}


# The CPUs this run may use, read once before any pinning: a child
# inherits its parent's (pinned) affinity, so it must not read its own.
CPUS = sorted(os.sched_getaffinity(0))


def pin(index):
    """Pin the calling process to its own CPU: the parent (index 0) and
    the child (index 1) never share one when two or more are available."""
    cpus = CPUS
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[index % len(cpus)]})


# ---- queue-like links: (put, get) in each direction -------------------


def make_queue(kind, big):
    if kind == "mp.Queue":
        return CTX.Queue()
    if kind == "mp.SimpleQueue":
        return CTX.SimpleQueue()
    if kind == "faster-fifo":
        return faster_fifo.Queue(max_size_bytes=4 * 1024 * 1024)
    if kind.startswith("shmring.Queue"):
        return shmring.Queue(max_message=256 * 1024, ring_bytes=1024 * 1024)
    if kind == "shmring.SimpleQueue":
        return shmring.SimpleQueue(max_message=256 * 1024, ring_bytes=1024 * 1024)
    raise ValueError(kind)


def getter(kind, q):
    if kind.endswith("nowait"):
        def get():
            while True:
                try:
                    return q.get_nowait()
                except std_queue.Empty:
                    pass
        return get
    return q.get


def putter(kind, q):
    return q.put_nowait if kind.endswith("nowait") else q.put


def echo_queue(kind, a, b, n):
    pin(1)
    get, put = getter(kind, a), putter(kind, b)
    for _ in range(n):
        put(get())


def sink_queue(kind, a, done, n):
    pin(1)
    get = getter(kind, a)
    done.put(0)  # ready: the clock starts once the consumer runs
    for _ in range(n):
        get()
    done.put(1)


def echo_pipe(conn, n, raw):
    pin(1)
    if raw:
        for _ in range(n):
            conn.send_bytes(conn.recv_bytes())
    else:
        for _ in range(n):
            conn.send(conn.recv())


def sink_pipe(conn, n, raw):
    pin(1)
    recv = conn.recv_bytes if raw else conn.recv
    conn.send(0)  # ready: the clock starts once the reader runs
    for _ in range(n):
        recv()
    conn.send(1)


def round_trips(kind, obj, n, warm):
    """Per-trip seconds of n round trips (after warm ones)."""
    pin(0)
    total = n + warm
    if kind.startswith("Pipe"):
        raw = "bytes" in kind
        pipe = shmring.Pipe if kind.startswith("Pipe shmring") else CTX.Pipe
        here, there = pipe()
        p = CTX.Process(target=echo_pipe, args=(there, total, raw))
        p.start()
        send = here.send_bytes if raw else here.send
        recv = here.recv_bytes if raw else here.recv
    else:
        a, b = make_queue(kind, True), make_queue(kind, True)
        p = CTX.Process(target=echo_queue, args=(kind, a, b, total))
        p.start()
        send, recv = putter(kind, a), getter(kind, b)
    times = []
    for i in range(total):
        t0 = time.perf_counter()
        send(obj)
        recv()
        if i >= warm:
            times.append(time.perf_counter() - t0)
    p.join()
    return times


def throughput(kind, obj, n):
    """Messages per second, one way, n messages."""
    pin(0)
    if kind.startswith("Pipe"):
        raw = "bytes" in kind
        pipe = shmring.Pipe if kind.startswith("Pipe shmring") else CTX.Pipe
        here, there = pipe()
        p = CTX.Process(target=sink_pipe, args=(there, n, raw))
        p.start()
        send = here.send_bytes if raw else here.send
        here.recv()
        t0 = time.perf_counter()
        for _ in range(n):
            send(obj)
        here.recv()
    else:
        a = make_queue(kind, True)
        done = CTX.Queue()
        p = CTX.Process(target=sink_queue, args=(kind, a, done, n))
        p.start()
        put = putter(kind, a)
        done.get()
        t0 = time.perf_counter()
        for _ in range(n):
            while True:
                try:
                    put(obj)
                    break
                except std_queue.Full:
                    pass
        done.get()
    dt = time.perf_counter() - t0
    p.join()
    return n / dt


# ---- dict increments ---------------------------------------------------


def incr(d, lock, n, start):
    start.wait()  # both processes are up: the clock starts
    for _ in range(n):
        with lock:
            d["count"] = d["count"] + 1


def dict_rate(kind, n):
    if kind == "shmring":
        d, lock, mgr = shmring.dict({"count": 0}), shmring.Lock(), None
    else:
        mgr = CTX.Manager()
        d, lock = mgr.dict({"count": 0}), CTX.Lock()
    start = CTX.Barrier(3)
    ps = [CTX.Process(target=incr, args=(d, lock, n, start)) for _ in range(2)]
    for p in ps:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    for p in ps:
        p.join()
    dt = time.perf_counter() - t0
    assert d["count"] == 2 * n, d["count"]
    if mgr is not None:
        mgr.shutdown()
    return 2 * n / dt


# ---- the binding's own cost ---------------------------------------------


def binding_cost(obj, n):
    q = shmring.Queue()
    for _ in range(1000):
        q.put_nowait(obj)
        q.get_nowait()
    t0 = time.perf_counter()
    for _ in range(n):
        q.put_nowait(obj)
        q.get_nowait()
    ours = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(n):
        pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))
    pick = (time.perf_counter() - t0) / n
    return ours, pick


def get_cost(obj, rounds):
    """ns per get_nowait of obj in one process, draining 1,000 items put
    just before (what a consumer pays per item, before any cost of the
    item coming from another CPU)."""
    q = shmring.Queue(ring_bytes=1 << 20)
    put, get = q.put_nowait, q.get_nowait
    total = 0.0
    for _ in range(rounds):
        for _ in range(1000):
            put(obj)
        t0 = time.perf_counter()
        for _ in range(1000):
            get()
        total += time.perf_counter() - t0
    return total / (rounds * 1000)


def dict_build_cost(obj, n):
    """ns for CPython to build a dict equal to obj from its keys and
    values (dict(zip(...))): the floor of any decoding of it."""
    keys, values = list(obj), list(obj.values())
    t0 = time.perf_counter()
    for _ in range(n):
        dict(zip(keys, values))
    return (time.perf_counter() - t0) / n


def us(s):
    return f"{s * 1e6:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tenth of the counts")
    args = ap.parse_args()
    scale = 10 if args.quick else 1
    kinds = ["shmring.Queue", "shmring.Queue nowait", "shmring.SimpleQueue", "mp.Queue", "mp.SimpleQueue"]
    if faster_fifo is not None:
        kinds.append("faster-fifo")
    pipes = ["Pipe shmring", "Pipe mp"]
    print(f"# shmring vs multiprocessing ({time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, faster-fifo "
          f"{'yes' if faster_fifo else 'not installed'})\n")
    print("| payload | mechanism | round trip p50 µs | p99 µs | one-way msgs/s |")
    print("|---|---|---|---|---|")
    for pname, obj in PAYLOADS.items():
        big = pname == "64 KiB"
        n_rt = (2000 if not big else 500) // scale
        n_tp = (50000 if not big else 5000) // scale
        these = kinds + pipes
        if isinstance(obj, bytes):
            these = these + ["Pipe shmring bytes", "Pipe mp bytes"]
        for kind in these:
            times = sorted(round_trips(kind, obj, n_rt, max(50, n_rt // 10)))
            p50 = times[len(times) // 2]
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            rate = throughput(kind, obj, n_tp)
            print(f"| {pname} | {kind} | {us(p50)} | {us(p99)} | {rate:,.0f} |", flush=True)
    print("\n| dict increments, 2 processes, under a Lock | ops/s |")
    print("|---|---|")
    # Each long enough for its steady state (the first milliseconds after
    # fork are copy-on-write faults): 2 x 200,000 increments for shmring,
    # 2 x 2,000 for the Manager (~100 times slower).
    for kind in ("shmring", "Manager"):
        rate = dict_rate(kind, (200000 if kind == "shmring" else 2000) // scale)
        print(f"| {kind} | {rate:,.0f} |", flush=True)
    ours, pick = binding_cost(7, 200000 // scale)
    ours_d, pick_d = binding_cost(PAYLOADS["dict(10)"], 100000 // scale)
    print("\n| binding cost, one process | put_nowait+get_nowait ns | pickle dumps+loads ns | ratio |")
    print("|---|---|---|---|")
    print(f"| int | {ours * 1e9:.0f} | {pick * 1e9:.0f} | {ours / pick:.2f}× |")
    print(f"| dict(10) | {ours_d * 1e9:.0f} | {pick_d * 1e9:.0f} | {ours_d / pick_d:.2f}× |")
    rounds = 200 // scale
    print("\n| get_nowait alone, one process (draining 1,000 items) | ns |")
    print("|---|---|")
    for label, obj in (("int", 7), ("84 B bytes", b"x" * 84), ("dict(10)", PAYLOADS["dict(10)"])):
        print(f"| {label} | {get_cost(obj, rounds) * 1e9:.0f} |")
    build = dict_build_cost(PAYLOADS["dict(10)"], 100000 // scale)
    print(f"| (CPython's dict(zip(keys, values)) of dict(10), no queue) | {build * 1e9:.0f} |")


if __name__ == "__main__":
    main()
