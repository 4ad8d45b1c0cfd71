"""multiprocessing.Queue, JoinableQueue and SimpleQueue semantics."""

import os
import pickle
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import shmring
import _children as ch
from conftest import WATCHDOG, join_all


# -- one process -------------------------------------------------------------


def test_fifo_qsize_empty_full():
    q = shmring.Queue(3)
    assert q.empty() and not q.full() and q.qsize() == 0
    for x in (1, "two", [3]):
        q.put(x)
    assert q.full() and not q.empty() and q.qsize() == 3
    assert [q.get(), q.get(), q.get_nowait()] == [1, "two", [3]]
    assert q.empty()


def test_any_picklable_object_round_trips():
    q = shmring.Queue()
    objs = [None, 0, -(2**70), 1.5, "ü€", b"\x00" * 100, (1, (2,)), {"a": [1, {2}]}, bytearray(b"x")]
    for o in objs:
        q.put(o)
    assert [q.get(timeout=5) for _ in objs] == objs


def test_atomic_objects_come_back_with_their_exact_type_and_value():
    # None, bool, int, float, bytes and str travel in a short form of their
    # own (not pickled); ints beyond 64 bits, lone surrogates and subclasses
    # are pickled. Either way the object that comes out is the one pickle
    # would give back.
    q = shmring.Queue(max_message=1 << 20, ring_bytes=4 << 20)
    objs = ch.atomic_objects()
    for o in objs:
        q.put(o)
    for o in objs:
        got = q.get(timeout=5)
        assert type(got) is type(o), (o, got)
        if isinstance(o, float) and o != o:
            assert got != got
        else:
            assert got == o
            if isinstance(o, float):
                assert str(got) == str(o)  # -0.0 stays negative


def test_atomic_objects_cross_processes(ctx):
    q = shmring.Queue(max_message=1 << 20, ring_bytes=4 << 20)
    p = ctx.Process(target=ch.put_atomic_objects, args=(q,))
    p.start()
    got = [q.get(timeout=WATCHDOG) for _ in ch.atomic_objects()]
    join_all([p])
    assert p.exitcode == 0
    want = ch.atomic_objects()
    assert [type(g) for g in got] == [type(w) for w in want]
    assert [repr(g) for g in got] == [repr(w) for w in want]


def _check_containers(got):
    want = ch.container_objects()
    assert [type(g) for g in got] == [type(w) for w in want]
    # repr shows the types inside and the order of dict keys.
    assert [repr(g) for g in got] == [repr(w) for w in want]
    shared, cyclic = got[-2], got[-1]
    assert shared[0] is shared[1], "a list put twice in one item comes back as one list"
    assert cyclic[0] is cyclic, "a list holding itself comes back holding itself"


def test_containers_come_back_alike_with_their_sharing():
    q = shmring.Queue()
    ch.put_container_objects(q)
    _check_containers([q.get(timeout=5) for _ in ch.container_objects()])


def test_containers_cross_processes(ctx):
    q = shmring.Queue()
    p = ctx.Process(target=ch.put_container_objects, args=(q,))
    p.start()
    got = [q.get(timeout=WATCHDOG) for _ in ch.container_objects()]
    join_all([p])
    assert p.exitcode == 0
    _check_containers(got)


def test_put_full_raises_queue_full_after_timeout():
    q = shmring.Queue(1)
    q.put("x")
    t = time.monotonic()
    with pytest.raises(queue.Full):
        q.put("y", timeout=0.3)
    assert time.monotonic() - t >= 0.29
    with pytest.raises(queue.Full):
        q.put_nowait("y")
    with pytest.raises(queue.Full):
        q.put("y", False, 10)  # block=False ignores the timeout
    with pytest.raises(queue.Full):
        q.put("y", timeout=-1)  # negative: like zero, as CPython


def test_get_empty_raises_queue_empty_after_timeout():
    q = shmring.Queue()
    t = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.3)
    assert time.monotonic() - t >= 0.29
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(False, 10)
    with pytest.raises(queue.Empty):
        q.get(timeout=-5)
    q.put(7)
    assert q.get(timeout=-1) == 7  # a negative timeout still takes what is there


def test_exceptions_are_the_queue_modules():
    assert not hasattr(shmring, "Empty")
    q = shmring.Queue()
    try:
        q.get_nowait()
    except queue.Empty as e:
        assert type(e) is queue.Empty


def test_close_then_put_and_get_raise_value_error():
    q = shmring.Queue()
    q.put(1)
    with pytest.raises(AssertionError, match="not closed"):
        q.join_thread()
    q.close()
    q.join_thread()
    q.cancel_join_thread()
    with pytest.raises(ValueError, match=r"^Queue .* is closed$"):
        q.put(2)
    with pytest.raises(ValueError, match=r"is closed"):
        q.get()


def test_close_wakes_a_getter_in_another_thread():
    q = shmring.Queue()
    errors = []

    def getter():
        try:
            q.get()
        except ValueError as e:
            errors.append(e)

    t = threading.Thread(target=getter)
    t.start()
    time.sleep(0.2)
    q.close()
    t.join(WATCHDOG)
    assert not t.is_alive() and len(errors) == 1


def test_unpicklable_object_raises_in_put_and_queue_goes_on():
    q = shmring.Queue()
    with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
        q.put(lambda: 1)
    q.put("fine")
    assert q.get(timeout=5) == "fine"


def test_object_larger_than_max_message_is_a_value_error():
    q = shmring.Queue(max_message=1024, ring_bytes=4096)
    with pytest.raises(ValueError, match="max_message"):
        q.put(b"x" * 2000)
    big = shmring.Queue()
    payload = os.urandom(64 * 1024)
    big.put(payload)
    assert big.get(timeout=5) == payload


def test_pickling_a_queue_outside_spawning_is_a_runtime_error():
    for q in (shmring.Queue(), shmring.JoinableQueue(), shmring.SimpleQueue()):
        with pytest.raises(RuntimeError, match="should only be shared between processes through inheritance"):
            pickle.dumps(q)


def test_manager_queue_pickles_by_name():
    q = shmring.Manager().Queue()
    q.put("hello")
    q2 = pickle.loads(pickle.dumps(q))
    assert q2.get(timeout=5) == "hello"


def test_threads_share_a_queue():
    q = shmring.Queue()
    n, threads = 2000, 4
    out = []
    lock = threading.Lock()

    def producer(tag):
        for i in range(n):
            q.put((tag, i))

    def consumer():
        while True:
            x = q.get(timeout=30)
            if x is None:
                return
            with lock:
                out.append(x)

    ps = [threading.Thread(target=producer, args=(t,)) for t in range(threads)]
    cs = [threading.Thread(target=consumer) for _ in range(2)]
    for t in ps + cs:
        t.start()
    for t in ps:
        t.join(WATCHDOG)
    q.put(None)
    q.put(None)
    for t in cs:
        t.join(WATCHDOG)
    assert sorted(out) == sorted((t, i) for t in range(threads) for i in range(n))
    for tag in range(threads):
        mine = [i for t, i in out if t == tag]
        assert len(mine) == n


def test_a_blocked_get_releases_the_gil():
    q = shmring.Queue()
    ticks = []

    def blocked():
        try:
            q.get(timeout=1.0)
        except queue.Empty:
            pass

    t = threading.Thread(target=blocked)
    t.start()
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        ticks.append(1)
    t.join(WATCHDOG)
    assert len(ticks) > 1000


def _run_python(code, **kw):
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


@pytest.mark.parametrize("call", ["q.get()", "q.put(2)", "j.join()", "s.get()", "l.acquire(); l.acquire()", "c.recv()", "c.poll(None)"])
def test_ctrl_c_interrupts_a_blocking_call(call):
    p = _run_python(
        f"""
        import shmring, sys
        q = shmring.Queue(1); q.put(1)
        if "q.get" in {call!r}: q.get()
        j = shmring.JoinableQueue(); j.put(1)
        s = shmring.SimpleQueue()
        l = shmring.Lock()
        c, other = shmring.Pipe()
        print("ready", flush=True)
        try:
            {call}
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
        """
    )
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=WATCHDOG)
    finally:
        p.kill()
    assert p.returncode == 3, (out, err)
    assert "interrupted" in out


def test_an_idle_blocked_get_uses_no_cpu():
    p = _run_python(
        """
        import shmring, queue, resource
        q = shmring.Queue()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        try:
            q.get(timeout=2.0)
        except queue.Empty:
            pass
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        print((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
        """
    )
    out, err = p.communicate(timeout=WATCHDOG)
    assert p.returncode == 0, err
    assert float(out) < 0.5, out  # CPU seconds over 2 s of waiting


# -- JoinableQueue and SimpleQueue -------------------------------------------


def test_joinable_task_done_and_join():
    q = shmring.JoinableQueue()
    for i in range(3):
        q.put(i)
    for _ in range(3):
        q.get()
    q.task_done()
    q.task_done()
    q.task_done()
    q.join()
    with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
        q.task_done()


def test_joinable_join_waits_for_task_done():
    q = shmring.JoinableQueue()
    q.put("job")
    done = []

    def worker():
        q.get()
        time.sleep(0.3)
        done.append(1)
        q.task_done()

    t = threading.Thread(target=worker)
    t.start()
    q.join()
    assert done == [1]
    t.join(WATCHDOG)


def test_simple_queue_api_and_close():
    q = shmring.SimpleQueue()
    assert q.empty()
    q.put({"a": 1})
    assert not q.empty()
    assert q.get() == {"a": 1}
    for name in ("put_nowait", "get_nowait", "qsize", "full", "task_done"):
        assert not hasattr(q, name)
    q.close()
    for call in (lambda: q.put(1), q.get, q.empty):
        with pytest.raises(OSError, match="^handle is closed$"):
            call()


# -- processes -----------------------------------------------------------------


def test_producer_child_consumer_parent(ctx):
    q = shmring.Queue()
    p = ctx.Process(target=ch.put_range, args=(q, 2000))
    p.start()
    got = []
    while (x := q.get(timeout=WATCHDOG)) is not None:
        got.append(x)
    join_all([p])
    assert got == list(range(2000)) and p.exitcode == 0


def test_several_producers_and_consumers(ctx):
    # Seed 001's shape: three producers, two consumers, one None per
    # consumer, sent here once the producers' items are all taken (see the
    # next test for the seed's own timing).
    q, out = shmring.Queue(), shmring.Queue()
    producers = [ctx.Process(target=ch.put_tagged, args=(q, t, 300)) for t in range(3)]
    consumers = [ctx.Process(target=ch.collect_until_none, args=(q, out)) for _ in range(2)]
    for p in producers + consumers:
        p.start()
    join_all(producers)
    deadline = time.monotonic() + WATCHDOG
    while not q.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
    q.put(None)
    q.put(None)
    results = [out.get(timeout=WATCHDOG) for _ in consumers]
    join_all(consumers)
    got = results[0] + results[1]
    assert sorted(got) == sorted((t, i) for t in range(3) for i in range(300))
    for r in results:  # each producer's items keep their order in each consumer
        for t in range(3):
            mine = [i for tag, i in r if tag == t]
            assert mine == sorted(mine)


def test_sentinel_put_after_joined_producers_comes_after_their_items(ctx):
    # Seed 001 exactly: producers finish (joined), then the parent puts one
    # None per consumer; every item the producers put must come first.
    q, out = shmring.Queue(), shmring.Queue()
    q.put("first")  # this process holds a producer ring from now on
    producers = [ctx.Process(target=ch.put_tagged, args=(q, t, 100)) for t in range(3)]
    for p in producers:
        p.start()
    join_all(producers)
    q.put(None)
    c = ctx.Process(target=ch.collect_until_none, args=(q, out))
    c.start()
    got = out.get(timeout=WATCHDOG)
    join_all([c])
    # Everything before the sentinel; per producer in order (across
    # producers, Python promises no order: the handed-back rings of the
    # joined producers may even come out before "first").
    assert len(got) == 301 and "first" in got
    for t in range(3):
        assert [x for x in got if x != "first" and x[0] == t] == [(t, i) for i in range(100)]


def test_joinable_queue_with_daemon_consumers(ctx):
    # Seed 001: producers put and join; daemon consumers call task_done.
    q, done = shmring.JoinableQueue(), shmring.Queue()
    consumers = [ctx.Process(target=ch.joinable_consumer, args=(q, done), daemon=True) for _ in range(2)]
    for c in consumers:
        c.start()
    for i in range(50):
        q.put(i)
    t = threading.Thread(target=q.join)
    t.start()
    t.join(WATCHDOG)
    assert not t.is_alive(), "join did not return"
    assert sorted(done.get(timeout=5) for _ in range(50)) == list(range(50))
    for c in consumers:
        c.terminate()
    join_all(consumers)


def test_simple_queue_between_processes(ctx):
    inq, outq = shmring.SimpleQueue(), shmring.SimpleQueue()
    p = ctx.Process(target=ch.simple_echo, args=(inq, outq))
    p.start()
    for i in range(100):
        inq.put(i)
    assert [outq.get() for _ in range(100)] == [2 * i for i in range(100)]
    inq.put(None)
    join_all([p])


def test_manager_queue_through_pool_apply(ctx):
    # Seed 002: Pool workers get a Manager().Queue() as an argument.
    q = shmring.Manager().Queue()
    with ctx.Pool(2) as pool:
        pool.apply(ch.pool_writer, (q,))
        assert pool.apply(ch.pool_reader, (q,)) == "dongGe"


def test_plain_queue_as_pool_apply_argument_is_refused(ctx):
    q = shmring.Queue()
    with ctx.Pool(1) as pool:
        with pytest.raises(RuntimeError, match="inheritance"):
            pool.apply(ch.pool_writer, (q,))


def test_queue_as_pool_initializer_argument(ctx):
    q = shmring.Queue()
    with ctx.Pool(2, initializer=ch.init_worker, initargs=(q,)) as pool:
        assert sorted(pool.map(ch.use_init_queue, range(10))) == list(range(10))
    assert sorted(q.get(timeout=WATCHDOG) for _ in range(10)) == list(range(10))


def test_terminated_reader_mid_get_leaves_the_queue_working(ctx):
    # Seeds 000/002: reader.terminate() while it waits in get().
    q, ready = shmring.Queue(), shmring.Queue()
    r = ctx.Process(target=ch.get_forever, args=(q, ready))
    r.start()
    ready.get(timeout=WATCHDOG)
    time.sleep(0.3)  # let it block in get
    r.terminate()
    join_all([r])
    q.put("after")
    assert q.get(timeout=5) == "after"
    p = ctx.Process(target=ch.put_range, args=(q, 100))
    p.start()
    got = []
    while (x := q.get(timeout=WATCHDOG)) is not None:
        got.append(x)
    join_all([p])
    assert got == list(range(100))


def test_sigkilled_producer_leaves_whole_items_and_a_working_queue(ctx):
    q, ready = shmring.Queue(50), shmring.Queue()
    p = ctx.Process(target=ch.put_forever, args=(q, ready))
    p.start()
    ready.get(timeout=WATCHDOG)
    for _ in range(200):  # let it run while we take some
        q.get(timeout=WATCHDOG)
    os.kill(p.pid, signal.SIGKILL)
    join_all([p])
    left = []
    while True:
        try:
            left.append(q.get(timeout=0.5))
        except queue.Empty:
            break
    assert all(tag == "item" for tag, _ in left)
    numbers = [i for _, i in left]
    assert numbers == sorted(numbers)
    # A new producer takes over; the queue goes on.
    p2 = ctx.Process(target=ch.put_range, args=(q, 100))
    p2.start()
    got = []
    while (x := q.get(timeout=WATCHDOG)) is not None:
        got.append(x)
    join_all([p2])
    assert got == list(range(100))


def test_join_returns_when_a_consumer_dies_holding_a_task(ctx):
    q, ready = shmring.JoinableQueue(), shmring.Queue()
    c = ctx.Process(target=ch.take_one_and_wait, args=(q, ready))
    q.put("task")
    c.start()
    assert ready.get(timeout=WATCHDOG) == "took"
    os.kill(c.pid, signal.SIGKILL)
    join_all([c])
    t = threading.Thread(target=q.join)
    t.start()
    t.join(WATCHDOG)
    assert not t.is_alive(), "join waited for a dead consumer's task"


def test_forked_copy_puts_through_its_own_ring(ctx):
    # A process that forks (os.fork, no exec) while holding a queue: both
    # copies put at once. Each must put through a producer ring of its own
    # (the at-fork hook re-opens the queue in the child); sharing the
    # parent's ring would interleave two writers in one SPSC ring.
    q, out = shmring.Queue(), shmring.Queue()
    n = 3000
    p = ctx.Process(target=ch.fork_and_put, args=(q, n, out))
    p.start()
    got = [q.get(timeout=WATCHDOG) for _ in range(2 * n + 1)]
    assert out.get(timeout=WATCHDOG) == "done"
    join_all([p])
    for tag in ("parent", "child"):
        assert [i for t, i in got if t == tag] == list(range(n))


def test_constructor_arguments():
    q = shmring.Queue(maxsize=2, ctx=shmring.get_context("spawn"))
    assert q._maxsize == 2
    with pytest.raises(TypeError):
        shmring.Queue(bogus=1)
    with pytest.raises(TypeError):
        shmring.SimpleQueue(bogus=1)
    assert shmring.Queue(-5).full() is False  # maxsize <= 0: no limit on the count
