"""``Queue``, ``JoinableQueue`` and ``SimpleQueue``."""

from . import _sharing
from ._shmring import _Queue, _SimpleQueue


def _rebuild_queue(cls, name, by_name):
    q = cls.__new__(cls, name=name)
    q._by_name = by_name
    _sharing.register(q)
    return q


class Queue(_Queue):
    """``multiprocessing.Queue(maxsize=0)`` over shared memory.

    ``put`` pickles the object and writes it into shared memory before it
    returns (there is no feeder thread), so an unpicklable object raises in
    ``put`` itself, and a process may exit right after ``put`` without
    losing anything. ``maxsize <= 0`` means no limit on the count of items;
    their bytes are limited by each producer's ring (``ring_bytes``, 256 KiB
    by default): a put into a full ring waits as a put into a full queue
    does. One item may be up to ``max_message`` bytes (128 KiB by default)
    in the form it travels in. An exact ``None``, ``bool``, 64-bit ``int``,
    ``float``, ``bytes`` or ``str`` is not pickled but sent as a tag byte
    and its raw value (one byte over its length), an exact ``list``,
    ``tuple`` or ``dict`` of those (nested up to 32 deep, no container in
    it twice) as a tag, a count and its items; each comes out as pickle
    would give it back. The keyword-only ``producers``, ``ring_bytes`` and
    ``max_message`` set the shape.
    """

    def __init__(self, maxsize=0, *, ctx=None, producers=16, ring_bytes=256 * 1024, max_message=128 * 1024):
        self._by_name = False
        _sharing.register(self)

    def join_thread(self):
        """Allowed after ``close()`` only, as in CPython; there is no feeder
        thread to wait for."""
        if not self._closed:
            raise AssertionError(f"Queue {self!r} not closed")

    def cancel_join_thread(self):
        """Nothing to cancel: a put is in shared memory when it returns."""

    def __reduce__(self):
        _sharing.check_reduce(self, self._by_name)
        return (_rebuild_queue, (type(self), self._name, self._by_name))

    def __repr__(self):
        return f"<shmring.{type(self).__name__} {self._name} maxsize={self._maxsize}>"


class JoinableQueue(Queue):
    """``multiprocessing.JoinableQueue(maxsize=0)``: ``task_done()`` and
    ``join()`` besides the ``Queue`` methods.

    ``task_done()`` marks done a task that this process got (or else one got
    by another process); more calls than tasks raise ``ValueError("task_done()
    called too many times")``. ``join()`` returns once every task is done,
    or was held by a process that died (its tasks are written off, not
    waited for for ever).
    """

    def __new__(cls, maxsize=0, **kwargs):
        kwargs["joinable"] = True
        return super().__new__(cls, maxsize, **kwargs)

    def task_done(self):
        _Queue.task_done(self)

    def join(self):
        _Queue.join(self)


class SimpleQueue(_SimpleQueue):
    """``multiprocessing.SimpleQueue()``: ``put``, ``get``, ``empty`` and
    ``close``; ``OSError("handle is closed")`` after ``close``."""

    def __init__(self, *, ctx=None, producers=16, ring_bytes=256 * 1024, max_message=128 * 1024):
        self._by_name = False
        _sharing.register(self)

    def __reduce__(self):
        _sharing.check_reduce(self, self._by_name)
        return (_rebuild_queue, (type(self), self._name, self._by_name))

    def __repr__(self):
        return f"<shmring.SimpleQueue {self._name}>"
