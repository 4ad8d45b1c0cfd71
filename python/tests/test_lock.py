"""multiprocessing.Lock, RLock and Manager().Lock() semantics."""

import os
import pickle
import signal
import threading
import time

import pytest

import shmring
import _children as ch
from conftest import WATCHDOG, join_all


def test_lock_acquire_release():
    lock = shmring.Lock()
    assert lock.acquire() is True
    assert lock.acquire(False) is False
    assert lock.acquire(block=False, timeout=10) is False  # timeout ignored
    t = time.monotonic()
    assert lock.acquire(timeout=0.3) is False
    assert time.monotonic() - t >= 0.29
    assert lock.acquire(timeout=-1) is False  # negative: like zero
    lock.release()
    with pytest.raises(ValueError, match="^semaphore or lock released too many times$"):
        lock.release()
    with lock:
        assert lock.acquire(False) is False
    assert lock.acquire(False) is True
    lock.release()


def test_lock_released_by_another_thread():
    lock = shmring.Lock()
    lock.acquire()
    t = threading.Thread(target=lock.release)
    t.start()
    t.join(WATCHDOG)
    assert lock.acquire(False)
    lock.release()


def test_lock_waiter_wakes_on_release():
    lock = shmring.Lock()
    lock.acquire()
    got = []
    t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=WATCHDOG)))
    t.start()
    time.sleep(0.2)
    lock.release()
    t.join(WATCHDOG)
    assert got == [True]
    lock.release()


def test_rlock_recursion_and_owner():
    lock = shmring.RLock()
    assert lock.acquire() and lock.acquire()
    errors = []

    def other():
        assert lock.acquire(False) is False
        try:
            lock.release()
        except AssertionError as e:
            errors.append(str(e))

    t = threading.Thread(target=other)
    t.start()
    t.join(WATCHDOG)
    assert errors == ["attempt to release recursive lock not owned by thread"]
    lock.release()
    lock.release()
    with pytest.raises(AssertionError, match="^attempt to release recursive lock not owned by thread$"):
        lock.release()
    with lock:
        with lock:
            pass


def test_manager_lock_has_threading_semantics():
    lock = shmring.Manager().Lock()
    with pytest.raises(ValueError, match="^can't specify a timeout for a non-blocking call$"):
        lock.acquire(False, 1)
    with pytest.raises(ValueError, match="^timeout value must be positive$"):
        lock.acquire(True, -2)
    with pytest.raises(RuntimeError, match="^release unlocked lock$"):
        lock.release()
    assert lock.acquire(blocking=True, timeout=-1)
    assert lock.acquire(timeout=0.1) is False
    lock.release()
    with lock:
        pass
    # Proxies pickle by name anywhere.
    copy = pickle.loads(pickle.dumps(lock))
    with copy:
        assert lock.acquire(False) is False


def test_pickling_a_lock_outside_spawning_is_a_runtime_error():
    for lock in (shmring.Lock(), shmring.RLock()):
        with pytest.raises(RuntimeError, match="inheritance"):
            pickle.dumps(lock)


# -- processes -----------------------------------------------------------------


def test_mutual_exclusion_between_processes(ctx):
    # Seeds 001/004: increments of a shared dict under the lock.
    lock, d = shmring.Lock(), shmring.Manager().dict(n=0)
    ps = [ctx.Process(target=ch.locked_increments, args=(lock, d, 200)) for _ in range(3)]
    for p in ps:
        p.start()
    join_all(ps)
    assert d["n"] == 600


def test_a_child_releases_the_parents_acquisition(ctx):
    lock = shmring.Lock()
    lock.acquire()
    p = ctx.Process(target=ch.release_lock, args=(lock,))
    p.start()
    join_all([p])
    assert p.exitcode == 0
    assert lock.acquire(False)
    lock.release()


def test_a_killed_holder_is_taken_over_and_reported(ctx):
    lock, ready = shmring.Lock(), shmring.Queue()
    p = ctx.Process(target=ch.hold_lock, args=(lock, ready))
    p.start()
    ready.get(timeout=WATCHDOG)
    assert lock.acquire(False) is False
    assert not lock.owner_died
    os.kill(p.pid, signal.SIGKILL)
    join_all([p])
    assert lock.acquire(timeout=WATCHDOG) is True
    assert lock.owner_died is True
    lock.release()
    assert lock.acquire(False) and not lock.owner_died
    lock.release()


def test_held_lock_is_held_in_a_forked_child(ctx):
    # The parent holds the lock while a child starts: the child (which
    # re-attached after fork, or opened by name) sees it held.
    lock, out = shmring.Lock(), shmring.Queue()
    lock.acquire()
    p = ctx.Process(target=ch.try_acquire, args=(lock, out))
    p.start()
    assert out.get(timeout=WATCHDOG) is False
    join_all([p])
    lock.release()
