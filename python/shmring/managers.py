"""``Manager()`` without a server process, and the shared ``dict``.

The objects a ``Manager()`` makes live in shared memory, not in a server:
they pickle by name anywhere (so they work as ``Pool.apply`` arguments) and
every process reads and writes them directly. ``shutdown()`` only lets the
manager forget them; they keep working for as long as someone holds them.
"""

import builtins

from . import _sharing
from ._queues import JoinableQueue, Queue
from ._shmring import _Dict
from .synchronize import ManagerLock, RLock

__all__ = ["DictProxy", "Dict", "dict", "Manager", "SyncManager"]


def _rebuild_dict(cls, name):
    d = cls.__new__(cls, name=name)
    _sharing.register(d)
    return d


class DictProxy(_Dict):
    """A dict shared between processes (``Manager().dict()``'s methods):
    ``keys()``, ``values()`` and ``items()`` return lists, ``copy()`` a plain
    dict, errors are ``KeyError`` as in Python.

    Keys are compared by their encoded bytes (a pickle, or for an exact
    None, bool, int, float, bytes or str a tag byte and its value): ``1``,
    ``1.0`` and ``True`` are three keys here. A dict holds at most
    ``capacity`` entries (1024 by default), keys of at most ``max_key``
    encoded bytes (256) and values of at most ``max_value`` (4096); ``shmring.Dict(capacity=..., max_key=...,
    max_value=...)`` sets them. A value is a copy, as with a manager's dict:
    ``d[k].append(x)`` changes nothing; assign it back.
    """

    def __init__(self, *args, capacity=None, max_key=None, max_value=None, **kwargs):
        _sharing.register(self)

    def __reduce__(self):
        _sharing.check_reduce(self, True)
        return (_rebuild_dict, (type(self), self._name))

    def __iter__(self):
        return iter(self.keys())

    def update(self, other=(), /, **kwargs):
        if hasattr(other, "keys"):
            pairs = [(k, other[k]) for k in other.keys()]
        else:
            pairs = [(k, v) for k, v in other]
        pairs.extend(kwargs.items())
        self._update_pairs(pairs)

    def copy(self):
        return builtins.dict(self.items())

    def __str__(self):
        return repr(self.copy())

    def __repr__(self):
        return f"<DictProxy object, typeid 'dict' at {hex(id(self))}>"


def Dict(*, capacity=1024, max_key=256, max_value=4096):
    """An empty shared dict of the given shape."""
    return DictProxy(capacity=capacity, max_key=max_key, max_value=max_value)


def dict(*args, **kwargs):
    """A shared dict, made as ``dict(...)`` makes one: ``shmring.dict()``,
    ``shmring.dict(mapping)``, ``shmring.dict(iterable)``,
    ``shmring.dict(**kwargs)``."""
    d = DictProxy()
    if args or kwargs:
        d.update(*args, **kwargs)
    return d


class SyncManager:
    """``multiprocessing.Manager()``'s ``dict``, ``Queue``,
    ``JoinableQueue``, ``Lock`` and ``RLock``, with no server process."""

    def __init__(self, *args, **kwargs):
        self._objects = []

    def start(self, *args, **kwargs):
        """Nothing to start."""

    def shutdown(self):
        """Forgets the objects made (they keep working while held)."""
        self._objects.clear()

    def join(self, timeout=None):
        """Nothing to join."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.shutdown()

    def _keep(self, obj):
        self._objects.append(obj)
        return obj

    def dict(self, *args, **kwargs):
        return self._keep(dict(*args, **kwargs))

    def Queue(self, maxsize=0):
        q = Queue(maxsize)
        q._by_name = True
        return self._keep(q)

    def JoinableQueue(self, maxsize=0):
        q = JoinableQueue(maxsize)
        q._by_name = True
        return self._keep(q)

    def Lock(self):
        return self._keep(ManagerLock())

    def RLock(self):
        lock = RLock()
        lock._by_name = True
        return self._keep(lock)


def Manager(*args, **kwargs):
    """A started manager (nothing runs: the objects live in shared memory)."""
    return SyncManager(*args, **kwargs)
