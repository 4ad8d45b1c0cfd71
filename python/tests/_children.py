"""Targets of the child processes the tests start (importable under spawn
and forkserver)."""

import os
import signal
import time


def put_range(q, n, sentinel=True):
    for i in range(n):
        q.put(i)
    if sentinel:
        q.put(None)


def put_tagged(q, tag, n):
    for i in range(n):
        q.put((tag, i))


def collect_until_none(q, out):
    got = []
    while True:
        x = q.get(timeout=30)
        if x is None:
            break
        got.append(x)
    out.put(got)


def get_forever(q, ready):
    ready.put(os.getpid())
    while True:
        q.get()


def put_forever(q, ready):
    ready.put(os.getpid())
    i = 0
    while True:
        q.put(("item", i))
        i += 1


def joinable_consumer(q, done):
    while True:
        x = q.get()
        done.put(x)
        q.task_done()


def take_one_and_wait(q, ready):
    q.get()
    ready.put("took")
    time.sleep(300)


def simple_echo(inq, outq):
    while True:
        x = inq.get()
        if x is None:
            break
        outq.put(x * 2)


def echo(conn):
    while True:
        try:
            x = conn.recv()
        except EOFError:
            break
        conn.send(x)
    conn.close()


def send_then_close(conn, items):
    for x in items:
        conn.send(x)
    conn.close()


def send_then_exit(conn, items):
    for x in items:
        conn.send(x)


def recv_forever(conn, ready):
    ready.put(os.getpid())
    while True:
        conn.recv()


def send_forever(conn, ready):
    ready.put(os.getpid())
    i = 0
    while True:
        conn.send(i)
        i += 1


def recv_one_and_report(conn, out):
    try:
        out.put(("ok", conn.recv()))
    except Exception as e:  # reported to the test
        out.put((type(e).__name__, str(e)))


def pipe_pair_child(p, out):
    """Seed 000: the tuple of both ends; the child writes on p[1]."""
    for value in ["a", "b", "c"]:
        p[1].send(value)
    out.put("sent")


def pipe_reader_child(p, out):
    while True:
        out.put(p[0].recv())


def locked_increments(lock, d, n):
    for _ in range(n):
        with lock:
            d["n"] = d["n"] + 1


def hold_lock(lock, ready):
    lock.acquire()
    ready.put(os.getpid())
    time.sleep(300)


def release_lock(lock):
    lock.release()


def try_acquire(lock, out):
    out.put(lock.acquire(False))


def dict_update(d, key, value):
    d[key] = value


def pool_writer(q):
    for ch in "dongGe":
        q.put(ch)


def pool_reader(q):
    return "".join(q.get(True) for _ in range(q.qsize()))


def pool_dict_set(d, key):
    d[key] = os.getpid()
    return key


def init_worker(q):
    global _init_q
    _init_q = q


def use_init_queue(x):
    _init_q.put(x)
    return x


def fork_and_put(q, n, out):
    """Forks (without exec) and puts n items from both copies at once; this
    process puts once before, so its handle holds a producer ring."""
    q.put(("pre", 0))
    pid = os.fork()
    tag = "child" if pid == 0 else "parent"
    for i in range(n):
        q.put((tag, i))
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    out.put("done")


def lock_then_fork_and_die(lock, ready):
    """Takes the lock, forks a grandchild that lives on (inheriting this
    process's descriptors), and reports; the test then kills this process."""
    lock.acquire()
    pid = os.fork()
    if pid == 0:
        time.sleep(120)
        os._exit(0)
    ready.put(pid)
    time.sleep(300)


def kill(pid, wait=10.0):
    """SIGKILLs ``pid`` (not necessarily a child of ours) and waits until
    it is gone, so that it holds none of the test's segments any more."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    end = time.monotonic() + wait
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[-1].startswith("Z"):
                    return  # a zombie holds nothing
        except OSError:
            return
        time.sleep(0.01)


def atomic_objects():
    """Objects of the six types queues send in a short form of their own,
    and neighbours of theirs that must be pickled (big ints, a lone
    surrogate, an int subclass)."""
    import http
    import math

    return [
        None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**200,
        1.5, -0.0, float("inf"), math.nan, b"", b"\x80\x05", b"y" * 70000,
        "", "h\u00e9llo \U0001f600", "\ud800", http.HTTPStatus.OK,
    ]


def put_atomic_objects(q):
    for o in atomic_objects():
        q.put(o)


def container_objects():
    """Lists, tuples and dicts of atomic objects (a short form of their
    own), and neighbours that must be pickled: subclasses, sets, a big int
    or a lone surrogate inside, a list shared twice or holding itself."""
    import collections

    shared = [1, 2]
    cyclic = []
    cyclic.append(cyclic)
    return [
        [], (), {}, [1, 2.5, "three", b"four", None, True, False],
        {f"key{i}": i for i in range(10)}, {3: "c", 1: "a", 2: "b"},
        {(1, "a"): [1, 1.0, True], "x": {"y": ("z", b"")}}, [[[[[]]]]],
        [1, 2**64], {"s": "\ud800"}, collections.OrderedDict(b=1, a=2),
        {1, 2}, [shared, shared], cyclic,
    ]


def put_container_objects(q):
    for o in container_objects():
        q.put(o)


def dict_store_atomic_objects(d):
    """Stores each of `atomic_objects()` as a value under `("v", index)`,
    and its index under each one as a key (NaN aside: no key finds NaN but
    itself)."""
    for i, o in enumerate(atomic_objects()):
        d[("v", i)] = o
        if o == o:
            d[("key", o)] = i
            d[o] = i
