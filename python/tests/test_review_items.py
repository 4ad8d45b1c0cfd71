"""Regression tests from the adversarial review of the container short
form and the locks' shared wait history (each failed before its fix):

* A timed ``acquire`` whose deadline has passed by the time the first slice
  is computed never probes a dead holder's liveness (the GIL-held try that
  used to probe is now skipped when the lock is held elsewhere).
* The short form of containers is larger than the pickle it replaces
  (9 bytes per small int, no memo for repeated objects): items that fit a
  queue's ``max_message`` or a dict's ``max_key``/``max_value`` as pickles
  are now refused, and an item repeating one big object builds a buffer of
  (size x count) bytes, which aborts the process when it cannot be
  allocated (Rust's infallible ``Vec`` growth) instead of raising.
"""

import os
import pickle
import signal
import subprocess
import sys
import textwrap

import pytest

import shmring
import _children as ch
from conftest import WATCHDOG, join_all


# -- locks: a timed acquire must take a dead holder's lock at its deadline ----


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_tiny_timeout_takes_over_a_dead_holders_lock(kind):
    ctx = shmring.get_context("fork")
    lock, ready = getattr(shmring, kind)(), shmring.Queue()
    p = ctx.Process(target=ch.hold_lock, args=(lock, ready))
    p.start()
    ready.get(timeout=WATCHDOG)
    os.kill(p.pid, signal.SIGKILL)
    join_all([p])
    # The holder is dead: a try takes it at once, a timed acquire at its
    # deadline at the latest. With a deadline already passed when the
    # first slice is computed, the acquire returns False without any
    # liveness probe, however many times it is called.
    # (Stop at the first success: an RLock's next acquire re-enters it,
    # and owner_died describes the latest acquire.)
    got = next((True for _ in range(20) if lock.acquire(timeout=1e-9)), False)
    assert got, f"{kind}.acquire(timeout=1e-9) never took a dead holder's lock"
    assert lock.owner_died
    lock.release()


# -- items: the short form must not refuse what pickle carried ----------------


def test_a_list_of_small_ints_that_pickles_under_max_message_is_put():
    item = list(range(20000))
    assert len(pickle.dumps(item, 5)) < 128 * 1024  # ~60 KB as a pickle
    q = shmring.Queue()  # max_message: 128 KiB
    q.put(item)  # ValueError: the object is 180005 bytes once encoded
    assert q.get(timeout=WATCHDOG) == item


def test_a_list_repeating_one_string_that_pickles_under_max_message_is_put():
    s = "x" * 20000
    item = [s] * 10
    assert len(pickle.dumps(item, 5)) < 128 * 1024  # ~20 KB (memo)
    q = shmring.Queue()
    q.put(item)  # ValueError: 200055 bytes once encoded
    back = q.get(timeout=WATCHDOG)
    assert back == item


def test_a_tuple_key_that_pickles_under_max_key_is_stored():
    key = tuple(range(60))
    assert len(pickle.dumps(key, 5)) < 256  # ~140 bytes as a pickle
    d = shmring.dict()  # max_key: 256
    d[key] = 1  # ValueError: the key is 545 bytes once encoded
    assert d[key] == 1


def test_an_item_repeating_a_big_object_raises_instead_of_aborting(tmp_path):
    # Under an address-space limit (so the machine is safe), an item that
    # pickles to ~1 MiB but whose short form is 1 GiB: the short form's
    # buffer cannot grow, and the process dies of SIGABRT ("memory
    # allocation of N bytes failed") instead of raising MemoryError or
    # pickling the item.
    script = textwrap.dedent(
        """
        import resource, shmring
        q = shmring.Queue(max_message=8 << 20, ring_bytes=16 << 20)
        big = b"x" * (1 << 20)
        item = [big] * 1024
        with open("/proc/self/status") as f:
            vm = next(int(l.split()[1]) for l in f if l.startswith("VmSize:")) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 20),) * 2)
        try:
            q.put(item)
            print("put")
        except (MemoryError, ValueError) as e:
            print("raised", type(e).__name__)
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", script],
        cwd=os.path.dirname(__file__),
        capture_output=True,
        text=True,
        timeout=WATCHDOG,
    )
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr[-500:])
