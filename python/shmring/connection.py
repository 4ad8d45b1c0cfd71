"""``Pipe()`` and its ``Connection`` objects (``multiprocessing.connection``'s
names).

An end is claimed by the first process that sends, receives or polls on
it; another live process that then uses it gets an ``OSError`` saying so
(a shmring pipe end is used by one process at a time: use a ``Queue`` for
several readers or writers). Closing a copy of an end that this process
never used, once the end was shared with another process, signals nothing,
as closing one of several file descriptors does; closing the end in the
process that uses it (or its death) is end of file for the other end.
"""

from multiprocessing import BufferTooShort

from . import _sharing
from ._shmring import _Connection

__all__ = ["Connection", "Pipe"]


def _rebuild_connection(name, end):
    return Connection(_Connection._open(name, end))


class Connection:
    """One end of a ``Pipe()``: ``multiprocessing.connection.Connection``'s
    methods and errors."""

    __slots__ = ("_c", "__weakref__")

    def __init__(self, handle):
        self._c = handle
        _sharing.register(self)

    # -- what the at-fork hook and pickling need --------------------------
    @property
    def _name(self):
        return self._c._name

    def _after_fork(self):
        self._c._after_fork()

    def _mark_shared(self):
        self._c._mark_shared()

    def __reduce__(self):
        self._c._mark_shared()
        _sharing.check_reduce(self, True)
        return (_rebuild_connection, (self._c._name, self._c._end))

    # -- Python's API -----------------------------------------------------
    @property
    def closed(self):
        """True if the connection is closed."""
        return self._c.closed

    @property
    def readable(self):
        """True if the connection is readable."""
        return self._c.readable

    @property
    def writable(self):
        """True if the connection is writable."""
        return self._c.writable

    def _check_closed(self):
        if self._c.closed:
            raise OSError("handle is closed")

    def fileno(self):
        """shmring connections have no file descriptor."""
        self._check_closed()
        raise OSError("a shmring connection has no file descriptor")

    def close(self):
        """Close the connection."""
        self._c.close()

    def send(self, obj):
        """Send a (picklable) object."""
        self._c.send(obj)

    def recv(self):
        """Receive a (picklable) object."""
        return self._c.recv()

    def send_bytes(self, buf, offset=0, size=None):
        """Send the bytes data from a bytes-like object."""
        self._check_closed()
        if not self._c.writable:
            raise OSError("connection is read-only")
        m = memoryview(buf)
        if m.itemsize > 1:
            m = m.cast("B")
        n = m.nbytes
        if offset < 0:
            raise ValueError("offset is negative")
        if n < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > n:
            raise ValueError("buffer length < offset + size")
        if type(buf) is bytes and offset == 0 and size == n:
            data = buf
        else:
            data = m[offset : offset + size].tobytes()
        self._c._send_bytes(data)

    def recv_bytes(self, maxlength=None):
        """Receive bytes data as a bytes object."""
        self._check_closed()
        if not self._c.readable:
            raise OSError("connection is write-only")
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        return self._c._recv_bytes(maxlength)

    def recv_bytes_into(self, buf, offset=0):
        """Receive bytes data into a writeable bytes-like object and return
        the number of bytes read; ``BufferTooShort`` (carrying the message)
        when it does not fit."""
        self._check_closed()
        if not self._c.readable:
            raise OSError("connection is write-only")
        with memoryview(buf) as m:
            bytesize = m.itemsize * len(m)
            if offset < 0:
                raise ValueError("negative offset")
            elif offset > bytesize:
                raise ValueError("offset too large")
            data = self._c._recv_bytes(None)
            size = len(data)
            if bytesize < offset + size:
                raise BufferTooShort(data)
            with m.cast("B") as flat:
                flat[offset : offset + size] = data
            return size

    def poll(self, timeout=0.0):
        """Whether there is any input available to be read (or end of file);
        ``timeout=None`` waits for ever."""
        return self._c.poll(timeout)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else f"end {self._c._end}"
        return f"<shmring.Connection {self._c._name} {state}>"


def Pipe(duplex=True):
    """Returns two connection objects connected by a pipe; with
    ``duplex=False`` the first only receives and the second only sends."""
    a, b = _Connection._pair(bool(duplex))
    return Connection(a), Connection(b)
