"""CPython's own multiprocessing tests (``test._test_multiprocessing``,
shipped with CPython) run against shmring: ``_TestQueue``, ``_TestLock``,
``_TestConnection``, ``_TestPoll``, ``TestSimpleQueue`` and the dict tests
of ``_TestContainers``, through a mixin that substitutes shmring's
``Queue``, ``JoinableQueue``, ``SimpleQueue``, ``Pipe``, ``Lock``,
``RLock`` and ``dict`` (the rest of the mixin stays CPython's), under fork
and spawn.

A test that fails for a deliberate difference is listed in ``EXPECTED``
with the reason (README, "Python"); it is marked as an expected failure
(strict: if it passes, the list is wrong). Everything else must pass.
"""

import multiprocessing
import os
import unittest

import pytest

import shmring

try:
    import test._test_multiprocessing as cpython
except ImportError as e:  # Debian ships it apart (libpython3.X-testsuite)
    if os.environ.get("CI"):
        raise ImportError(f"CI must run CPython's multiprocessing tests: {e}") from e
    pytest.skip(f"CPython's test package is not installed: {e}", allow_module_level=True)

# Test -> why it fails with shmring (a deliberate difference).
EXPECTED = {
    "TestQueue.test_queue_feeder_donot_stop_onexc": (
        "no feeder thread: an unpicklable object raises in put() itself, where "
        "CPython's feeder thread prints the error and goes on"
    ),
    "TestConnection.test_connection": (
        "fileno(): a shmring connection has no file descriptor (the rest of the "
        "test runs in test_connection_without_fileno)"
    ),
    "TestConnection.test_fd_transfer": "descriptor passing needs a socket underneath (no fileno)",
    "TestConnection.test_large_fd_transfer": "descriptor passing needs a socket underneath (no fileno)",
    "TestConnection.test_missing_fd_transfer": "descriptor passing needs a socket underneath (no fileno)",
    "TestContainersDict.test_dict_iter": (
        "a shmring dict iterates in its hash table's order, not in insertion order"
    ),
}


class ShmringMixin(cpython.ProcessesMixin):
    Pipe = staticmethod(shmring.Pipe)
    Queue = staticmethod(shmring.Queue)
    JoinableQueue = staticmethod(shmring.JoinableQueue)
    Lock = staticmethod(shmring.Lock)
    RLock = staticmethod(shmring.RLock)
    dict = staticmethod(shmring.dict)

    start_method = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._old_method = multiprocessing.get_start_method(allow_none=True)
        multiprocessing.set_start_method(cls.start_method, force=True)
        cls._old_simple = multiprocessing.SimpleQueue
        multiprocessing.SimpleQueue = shmring.SimpleQueue

    @classmethod
    def tearDownClass(cls):
        multiprocessing.SimpleQueue = cls._old_simple
        multiprocessing.set_start_method(cls._old_method, force=True)
        super().tearDownClass()


class _DictTests(cpython.BaseTestCase):
    """The dict tests of ``_TestContainers`` (its list, namespace and
    nested-proxy tests are of Manager types shmring does not replace)."""

    ALLOWED_TYPES = ("processes",)
    test_dict = cpython._TestContainers.test_dict
    test_dict_iter = cpython._TestContainers.test_dict_iter


class _SimpleQueueTests(cpython.BaseTestCase):
    ALLOWED_TYPES = ("processes",)
    _test_empty = cpython.TestSimpleQueue._test_empty
    test_empty = cpython.TestSimpleQueue.test_empty
    test_close = cpython.TestSimpleQueue.test_close


class _ConnectionTests(cpython._TestConnection):
    def test_connection_without_fileno(self):
        """CPython's ``test_connection`` past its one ``fileno()`` line:
        ``fileno`` answers -1 for the length of the test (shmring has no
        descriptor), so every send, receive, poll and EOF check after it
        runs against shmring."""
        saved = shmring.Connection.fileno
        shmring.Connection.fileno = lambda self: -1
        try:
            cpython._TestConnection.test_connection(self)
        finally:
            shmring.Connection.fileno = saved


BASES = {
    "TestQueue": cpython._TestQueue,
    "TestLock": cpython._TestLock,
    "TestConnection": _ConnectionTests,
    "TestPoll": cpython._TestPoll,
    "TestSimpleQueue": _SimpleQueueTests,
    "TestContainersDict": _DictTests,
}


def _install(method):
    for name, base in BASES.items():
        cls_name = f"Shmring{method.capitalize()}{name}"
        cls = type(cls_name, (base, ShmringMixin, unittest.TestCase), {"start_method": method})
        cls.__module__ = __name__
        for attr in dir(cls):
            if attr.startswith("test_") and f"{name}.{attr}" in EXPECTED:
                setattr(cls, attr, unittest.expectedFailure(getattr(cls, attr)))
        globals()[cls_name] = cls


for _method in ("fork", "spawn"):
    _install(_method)
del _method
