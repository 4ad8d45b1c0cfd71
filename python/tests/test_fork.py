"""What a process forked without exec does with the objects it inherited."""

import os
import pickle
import signal

import shmring
import _children as ch
from conftest import WATCHDOG, join_all


def test_forked_grandchild_does_not_keep_a_dead_holder_alive(ctx):
    # A child takes a Lock, forks (os.fork, no exec) a grandchild that lives
    # on, and is SIGKILLed. The grandchild inherited the child's descriptors
    # of the lock's segment, whose open file description carries the
    # child's liveness lock: the at-fork hook closes them in the
    # grandchild, so the dead holder is seen dead and its lock taken over.
    lock = shmring.Manager().Lock()
    ready = shmring.Queue()
    p = ctx.Process(target=ch.lock_then_fork_and_die, args=(lock, ready))
    p.start()
    grandchild = ready.get(timeout=WATCHDOG)
    try:
        assert lock.acquire(False) is False
        os.kill(p.pid, signal.SIGKILL)
        assert lock.acquire(timeout=10) is True
        assert lock.owner_died is True
    finally:
        # The grandchild holds the child's end of the sentinel pipe that
        # Process.join waits on: it goes first.
        ch.kill(grandchild)
        join_all([p])


def test_objects_work_in_a_forked_child_and_in_the_parent_after():
    q, q2, d, lock = shmring.Queue(), shmring.Queue(), shmring.dict(), shmring.Lock()
    a, b = shmring.Pipe()
    q2.put("before")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            assert q2.get(timeout=10) == "before"
            d["child"] = os.getpid()
            with lock:
                pass
            b.send("from child")
            q.put("child done")
            code = 0
        finally:
            os._exit(code)
    assert q.get(timeout=WATCHDOG) == "child done"
    assert a.recv() == "from child"
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert d["child"] == pid
    # The child's exit released nothing of the parent's.
    q.put("parent still")
    assert q.get(timeout=5) == "parent still"
    assert lock.acquire(False)
    lock.release()
    b.send("parent end still open")
    assert a.recv() == "parent end still open"


def test_pickled_objects_open_in_another_process_by_name(ctx):
    d = shmring.dict()
    blob = pickle.dumps(d)
    p = ctx.Process(target=_load_and_set, args=(blob,))
    p.start()
    join_all([p])
    assert d["set"] == "by name"


def _load_and_set(blob):
    pickle.loads(blob)["set"] = "by name"


def _idle():
    pass


def test_an_object_not_reattached_after_fork_is_left_alone_at_child_exit():
    # An object whose inherited handle could not be replaced in a forked
    # child (its lock was held at the fork by a thread the child lacks) is
    # kept for ever with that handle, whose mapping the at-fork hook
    # unmapped. The exit hook must not hand back through it: that would
    # touch unmapped memory, or (mapped again at the same address) clear
    # the owner word of the parent's ring, which the next producer would
    # then share with the parent. Simulated by an `_after_fork` that fails.
    fork = shmring.get_context("fork")
    q = shmring.Queue(producers=2)
    q.put("p1")  # the parent owns a ring from now on

    def fail():
        raise OSError("simulated: the handle's lock was held at the fork")

    q._after_fork = fail
    try:
        child = fork.Process(target=_idle)
        child.start()
        join_all([child])
    finally:
        del q._after_fork
    assert child.exitcode == 0
    # A child that reattaches puts: it must get a ring of its own.
    putter = fork.Process(target=ch.put_tagged, args=(q, "c", 1))
    putter.start()
    join_all([putter])
    q.put("p2")
    got = []
    for _ in range(3):
        got.append(q.get(timeout=10))
    assert sorted(map(repr, got)) == sorted(map(repr, ["p1", ("c", 0), "p2"]))
