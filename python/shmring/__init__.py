"""shmring: ``multiprocessing``'s Queue, JoinableQueue, SimpleQueue, Pipe,
Lock, RLock and Manager dict over shared memory.

A script written for ``multiprocessing`` runs with one changed import::

    import shmring as multiprocessing

``Process``, ``Pool``, ``current_process``, ``active_children``,
``cpu_count`` and the rest of ``multiprocessing``'s process machinery are
CPython's own, re-exported. Every message is pickled (highest protocol;
a queue item or dict key or value that is an exact None, bool, 64-bit
int, float, bytes or str travels as a tag byte and its raw value instead,
and an exact list, tuple or dict of those as a tag, a count and its items)
and moved through lock-free rings in shared memory; a blocked call releases the
GIL and wakes for Ctrl-C within 100 ms. Objects reach child processes under
fork, spawn and forkserver (see ``shmring._sharing``).

Deliberate differences from CPython, each documented on its class:

* a process killed at any point leaves no queue, pipe, dict or lock stuck:
  a lock held by a dead process is taken over (``Lock.owner_died``), a
  ``JoinableQueue.join`` writes off the tasks of a dead process, the death
  of the process holding a pipe end is end of file for the other end;
* ``put`` pickles synchronously (no feeder thread): an unpicklable object
  raises in ``put``; a put is in shared memory when it returns;
* sizes are fixed when an object is made: a queue's ``max_message`` (128 KiB
  by default, in the form an item travels in) and ring bytes, a dict's capacity and key and value
  sizes;
* a pipe end is used by one process at a time (``OSError`` at once for a
  second one), and ``fileno()`` raises: there is no descriptor;
* dict keys are compared by their encoded bytes (``1``, ``1.0`` and ``True``
  are three keys).
"""

import multiprocessing as _mp
from multiprocessing import (  # noqa: F401  (re-exported)
    Array,
    AuthenticationError,
    Barrier,
    BoundedSemaphore,
    BufferTooShort,
    Condition,
    Event,
    Pool,
    Process,
    ProcessError,
    RawArray,
    RawValue,
    Semaphore,
    TimeoutError,
    Value,
    active_children,
    allow_connection_pickling,
    cpu_count,
    current_process,
    freeze_support,
    get_all_start_methods,
    get_context,
    get_logger,
    get_start_method,
    log_to_stderr,
    set_executable,
    set_forkserver_preload,
    set_start_method,
)

from ._queues import JoinableQueue, Queue, SimpleQueue
from .connection import Connection, Pipe
from .managers import Dict, DictProxy, Manager, SyncManager, dict
from .synchronize import Lock, ManagerLock, RLock

parent_process = getattr(_mp, "parent_process", None)

__version__ = "0.1.0"

__all__ = [
    "Array",
    "AuthenticationError",
    "Barrier",
    "BoundedSemaphore",
    "BufferTooShort",
    "Condition",
    "Connection",
    "Dict",
    "DictProxy",
    "Event",
    "JoinableQueue",
    "Lock",
    "Manager",
    "ManagerLock",
    "Pipe",
    "Pool",
    "Process",
    "ProcessError",
    "Queue",
    "RLock",
    "RawArray",
    "RawValue",
    "Semaphore",
    "SimpleQueue",
    "SyncManager",
    "TimeoutError",
    "Value",
    "active_children",
    "allow_connection_pickling",
    "cpu_count",
    "current_process",
    "dict",
    "freeze_support",
    "get_all_start_methods",
    "get_context",
    "get_logger",
    "get_start_method",
    "log_to_stderr",
    "parent_process",
    "set_executable",
    "set_forkserver_preload",
    "set_start_method",
]
