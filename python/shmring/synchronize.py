"""``Lock`` and ``RLock`` (``multiprocessing.synchronize``'s names).

Both are robust: when the process holding one dies, the next acquirer takes
it over (at once for a non-blocking try, within 100 ms for a waiter) and
``owner_died`` is true on its object until its next acquire: what the lock
protected may be half-updated. CPython's locks stay held for ever then.
"""

from . import _sharing
from ._shmring import _Lock, _RLock

__all__ = ["Lock", "RLock"]


def _rebuild_lock(cls, name, by_name):
    lock = cls.__new__(cls, name=name)
    lock._by_name = by_name
    _sharing.register(lock)
    return lock


class Lock(_Lock):
    """``multiprocessing.Lock()``: ``acquire(block=True, timeout=None)``,
    ``release()`` from any process or thread (``ValueError("semaphore or lock
    released too many times")`` when not held), a context manager."""

    def __init__(self, *, ctx=None):
        self._by_name = False
        _sharing.register(self)

    def __reduce__(self):
        _sharing.check_reduce(self, self._by_name)
        return (_rebuild_lock, (type(self), self._name, self._by_name))

    def __repr__(self):
        state = "locked" if self._is_locked() else "unlocked"
        return f"<shmring.{type(self).__name__}({state}) {self._name}>"


class RLock(_RLock):
    """``multiprocessing.RLock()``: recursive, owned by a thread; releasing
    it from another thread raises ``AssertionError("attempt to release
    recursive lock not owned by thread")``."""

    def __init__(self, *, ctx=None):
        self._by_name = False
        _sharing.register(self)

    def __reduce__(self):
        _sharing.check_reduce(self, self._by_name)
        return (_rebuild_lock, (type(self), self._name, self._by_name))

    def __repr__(self):
        return f"<shmring.RLock {self._name}>"


class ManagerLock(Lock):
    """``Manager().Lock()``: ``threading.Lock``'s semantics, as CPython's
    ``AcquirerProxy``: ``acquire(blocking=True, timeout=-1)``,
    ``RuntimeError("release unlocked lock")``. Pickles by name anywhere."""

    def __init__(self):
        super().__init__()
        self._by_name = True

    def acquire(self, blocking=True, timeout=-1):
        if timeout is None:
            timeout = -1
        if not blocking and timeout != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        if timeout < 0 and timeout != -1:
            raise ValueError("timeout value must be positive")
        return _Lock.acquire(self, blocking, None if timeout == -1 else timeout)

    def release(self):
        try:
            _Lock.release(self)
        except ValueError:
            raise RuntimeError("release unlocked lock") from None

    def __exit__(self, *exc):
        self.release()
