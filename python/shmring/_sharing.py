"""How shmring objects reach other processes.

* **spawn and forkserver**: an object passed as ``Process(args=...)`` is
  pickled *by name* while the process is being spawned (as CPython allows
  for its queues and locks only then); the child opens it by name. The
  parent's object is kept alive with the child's ``Popen`` until the child
  is reaped, so that its name outlives the parent's own reference.
* **fork**: the child inherits the parent's handles, which it must not use
  (they are the parent's peer rows, roles and liveness locks). An at-fork
  hook re-opens every live object by name in the child, forgets the
  inherited handle (never dropping it: that would release the parent's
  row), and closes the inherited descriptors *and unmaps the inherited
  mappings* of its segment: both hold a reference to the parent's open
  file description, which carries the parent's liveness lock until its
  last reference goes; left in place, a killed parent would look alive for
  as long as the child lives.
* **by name, always**: objects made by ``Manager()`` and ``shmring.dict()``
  pickle by name anywhere (as CPython's proxies do), so they work as
  ``Pool.apply`` arguments; pipe connections too (CPython can send a
  connection over a connection). The receiving process opens the object by
  name, so the sender must keep its own object alive until then.

At exit (``multiprocessing``'s own exit handler, which runs in its
children too, though they end with ``os._exit``), every queue hands its
producer ring back, so its items come out before a sentinel that another
process puts after joining this one (seed 001's ending).
"""

import ctypes
import os
import weakref

from multiprocessing import context as _context
from multiprocessing import util as _util

_SHM_DIR = "/dev/shm"

# Every live shmring object of this process, for the at-fork hook.
_live = weakref.WeakSet()
# Objects whose inherited handle could not be replaced after a fork: kept
# for ever, because dropping them would release the parent's peer row.
_immortal = []
# (st_dev, st_ino) of each live object's segment file, by id(object).
_files = {}


def register(obj):
    """Tracks ``obj`` (a shmring object) for the at-fork hook."""
    _live.add(obj)
    try:
        st = os.stat(_SHM_DIR + obj._name)
        _files[id(obj)] = (st.st_dev, st.st_ino)
        weakref.finalize(obj, _files.pop, id(obj), None)
    except OSError:
        pass


def check_reduce(obj, by_name):
    """Called by ``__reduce__``: keeps ``obj`` alive for a child being
    spawned, allows pickling by name when ``by_name``, and otherwise raises
    CPython's ``RuntimeError`` ("... objects should only be shared between
    processes through inheritance")."""
    popen = _context.get_spawning_popen()
    if popen is not None:
        keep = popen.__dict__.setdefault("_shmring_keep", [])
        keep.append(obj)
        return
    if not by_name:
        _context.assert_spawning(obj)


def _inherited_descriptors(files):
    """Descriptors of this process that refer to one of ``files``."""
    found = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return found
    for entry in names:
        try:
            fd = int(entry)
            st = os.fstat(fd)
        except (ValueError, OSError):
            continue
        if (st.st_dev, st.st_ino) in files:
            found.append(fd)
    return found


def _inherited_mappings(files):
    """``(start, length)`` of this process's mappings of one of ``files``."""
    wanted = {(os.major(dev), os.minor(dev), ino) for dev, ino in files}
    found = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) < 5:
                    continue
                major, minor = (int(x, 16) for x in fields[3].split(":"))
                if (major, minor, int(fields[4])) in wanted:
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    found.append((start, end - start))
    except (OSError, ValueError):
        pass
    return found


_libc = None


def _munmap(start, length):
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    _libc.munmap(start, length)


def _after_fork_in_child():
    objects = list(_live)
    files = {_files[id(o)] for o in objects if id(o) in _files}
    if files:
        # The inherited handles are forgotten below and never touched
        # again: their descriptors and mappings can go.
        for fd in _inherited_descriptors(files):
            try:
                os.close(fd)
            except OSError:
                pass
        for start, length in _inherited_mappings(files):
            _munmap(start, length)
    for obj in objects:
        try:
            obj._after_fork()
        except Exception:
            _immortal.append(obj)
    # The new handles are new files' descriptors: note them again.
    for obj in objects:
        try:
            st = os.stat(_SHM_DIR + obj._name)
            _files[id(obj)] = (st.st_dev, st.st_ino)
        except OSError:
            pass


def _after_fork_in_parent():
    for obj in list(_live):
        mark = getattr(obj, "_mark_shared", None)
        if mark is not None:
            mark()


os.register_at_fork(
    after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


def _hand_back_all():
    # Not through an object kept with its inherited handle (see
    # `_after_fork_in_child`): that handle's mapping is gone, and its ring
    # is the parent's.
    stale = {id(o) for o in _immortal}
    for obj in list(_live):
        if id(obj) in stale:
            continue
        hand_back = getattr(obj, "_hand_back_producer", None)
        if hand_back is not None:
            try:
                hand_back()
            except Exception:
                pass


class _ExitHook:
    """Registers ``_hand_back_all`` with ``multiprocessing``'s exit
    handler (``util._exit_function``: the main process's ``atexit``, and the
    end of every child's ``Process._bootstrap``). A child's bootstrap
    clears the finalizers it inherited or made while unpickling its
    arguments, then runs the after-fork callbacks, which register it again
    (under fork, spawn and forkserver alike)."""

    def install(self):
        # Priority 0 and up run before the exit handler joins the
        # children; lowest of those, so the process's own finalizers
        # (which may still put) run first.
        _util.Finalize(None, _hand_back_all, exitpriority=0)


_exit_hook = _ExitHook()
_exit_hook.install()
_util.register_after_fork(_exit_hook, _ExitHook.install)
