//! The ends of `Pipe()`: the library's pipe, each end claimed by the
//! first process that sends or receives on it.
//!
//! CPython's ends are file descriptors: every process that inherits one
//! may use it, and the other end sees end of file once every copy is
//! closed. A shmring end belongs to one process at a time (its rings are
//! single-producer single-consumer, and the holder's liveness is the
//! other end's end of file), so this module claims an end lazily, at the
//! first send, receive or poll in a process, and:
//!
//! * `close()` (and garbage collection) signals end of file when this
//!   process claimed the end, or when the end was never shared with
//!   another process (pickled for one, or inherited through `fork`);
//!   closing an unused copy of a shared end signals nothing, as closing one
//!   of several descriptors does;
//! * a second live process that uses an end another one claimed gets an
//!   `OSError` saying so at once (CPython would let both use it, and
//!   interleave their bytes unless they take turns under a lock);
//! * the death of the process holding an end is end of file for the other
//!   end (CPython: only once every copy is closed).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyBrokenPipeError, PyEOFError, PyOSError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

use shmring::pipe::{
    Connection, End, Pipe, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
};
use shmring::RoleError;

use crate::{
    dumps, fresh_name, in_slices, loads, loads_from, os_error, Attached, Deadline, Pickled,
};

/// This process's attachment to the pipe and, once claimed, its end.
struct State {
    pipe: Pipe,
    conn: Option<Connection>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why an operation could not start or failed.
enum Failure {
    /// `close()` ran (in another thread) while the call waited.
    Closed,
    Claim(RoleError),
    Send(SendError),
    Recv(RecvError),
}

impl Failure {
    fn into_err(self, end: End) -> PyErr {
        match self {
            Failure::Closed => PyOSError::new_err("handle is closed"),
            Failure::Claim(RoleError::RoleTaken { pid, .. }) => PyOSError::new_err(format!(
                "this end of the pipe ({}) is in use by {}: a shmring pipe end is used by one \
                 process at a time (close it there first, or use a Queue for several readers or \
                 writers)",
                match end {
                    End::First => "the first connection",
                    End::Second => "the second connection",
                },
                pid.map_or_else(|| "another process".to_string(), |p| format!("process {p}")),
            )),
            Failure::Claim(e) => os_error(e),
            Failure::Send(SendError::BrokenPipe) => {
                PyBrokenPipeError::new_err((libc_epipe(), "Broken pipe"))
            }
            Failure::Send(SendError::HandleClosed) | Failure::Recv(RecvError::HandleClosed) => {
                PyOSError::new_err("handle is closed")
            }
            Failure::Send(SendError::ReadOnly) => PyOSError::new_err("connection is read-only"),
            Failure::Recv(RecvError::WriteOnly) => PyOSError::new_err("connection is write-only"),
            Failure::Recv(RecvError::Eof) => PyEOFError::new_err(()),
            Failure::Recv(RecvError::TruncatedMessage) => {
                PyOSError::new_err("got end of file during message")
            }
            Failure::Recv(RecvError::BadMessageLength { .. }) => {
                PyOSError::new_err("bad message length")
            }
            Failure::Send(e) => os_error(e),
            Failure::Recv(e) => os_error(e),
        }
    }
}

fn libc_epipe() -> i32 {
    32
}

/// What [`PyConnection::take_arrived`] found.
enum Taken<'py> {
    /// A whole message.
    Whole(Bound<'py, PyBytes>),
    /// The first records of a longer message, kept in the connection.
    Part,
    /// Nothing to take now.
    Nothing,
}

/// One end of a pipe, as this process sees it.
#[pyclass(module = "shmring._shmring", name = "_Connection", frozen, weakref)]
pub(crate) struct PyConnection {
    state: Attached<Mutex<State>>,
    name: String,
    end: End,
    duplex: bool,
    readable: AtomicBool,
    writable: AtomicBool,
    closed: AtomicBool,
    /// Pickled for another process, or inherited through `fork`: closing
    /// an unclaimed copy then signals nothing.
    shared: AtomicBool,
    /// The `bytearray` the last `recv` unpickled from, and the size to give
    /// it before the next one (see [`PyConnection::recv`]).
    pickles: Mutex<Option<(Py<PyByteArray>, usize)>>,
}

/// The size of the `bytearray` a connection's first `recv` receives into.
const FIRST_SCRATCH: usize = 4096;
/// The largest `bytearray` a connection keeps between receives.
const KEPT_SCRATCH: usize = 1 << 20;

impl PyConnection {
    fn of(pipe: Pipe, name: String, end: End, shared: bool) -> PyConnection {
        let duplex = pipe.duplex();
        PyConnection {
            readable: AtomicBool::new(duplex || end == End::First),
            writable: AtomicBool::new(duplex || end == End::Second),
            state: Attached::new(Mutex::new(State { pipe, conn: None })),
            name,
            end,
            duplex,
            closed: AtomicBool::new(false),
            shared: AtomicBool::new(shared),
            pickles: Mutex::new(None),
        }
    }

    fn flag(b: &AtomicBool) -> bool {
        // ORDERING: Relaxed — flags of this process's object; the pipe's
        // own state in shared memory carries every ordering that matters.
        b.load(Ordering::Relaxed)
    }

    fn check(&self, reading: bool) -> PyResult<()> {
        if Self::flag(&self.closed) {
            return Err(PyOSError::new_err("handle is closed"));
        }
        if reading && !Self::flag(&self.readable) {
            return Err(PyOSError::new_err("connection is write-only"));
        }
        if !reading && !Self::flag(&self.writable) {
            return Err(PyOSError::new_err("connection is read-only"));
        }
        Ok(())
    }

    /// Runs `op` on this process's end (claiming it first if needed) in
    /// slices until `deadline`, as [`in_slices`].
    fn with_end<T: Send>(
        &self,
        py: Python<'_>,
        deadline: Deadline,
        mut op: impl FnMut(&mut Connection, Duration) -> Result<Option<T>, Failure> + Send,
    ) -> PyResult<Option<T>> {
        let state = self.state.get()?;
        let end = self.end;
        let closed = &self.closed;
        let r = in_slices(py, deadline, false, |d| {
            let mut st = lock(state);
            let st = &mut *st;
            // Closed by another thread while this call waited: the end is
            // not claimed again (it would stay claimed, and its peer
            // already saw the end).
            if Self::flag(closed) {
                return Err(Failure::Closed);
            }
            if st.conn.is_none() {
                st.conn = Some(st.pipe.connection(end).map_err(Failure::Claim)?);
            }
            let conn = st.conn.as_mut().expect("claimed just above");
            op(conn, d)
        })?;
        match r {
            Ok(v) => Ok(v),
            Err(f) => {
                if let Failure::Recv(RecvError::BadMessageLength { .. }) = f {
                    self.after_bad_length(state);
                }
                Err(f.into_err(end))
            }
        }
    }

    /// Python's rule after a message longer than `maxlength`: a duplex end
    /// becomes write-only, a read-only one is closed (the library did the
    /// same to its connection).
    fn after_bad_length(&self, state: &Mutex<State>) {
        let st = lock(state);
        let (readable, closed) = st
            .conn
            .as_ref()
            .map_or((false, true), |c| (c.readable(), c.closed()));
        // ORDERING: Relaxed — see `flag`.
        self.readable.store(readable, Ordering::Relaxed);
        if closed {
            self.closed.store(true, Ordering::Relaxed);
        }
    }

    fn send_pickled(&self, py: Python<'_>, bytes: Pickled) -> PyResult<()> {
        self.with_end(py, Deadline::Never, |c, d| {
            let buf = bytes.bytes();
            // A message the all-or-nothing sends cannot take is streamed by
            // the blocking send, which cannot be interrupted (rare: longer
            // than about three quarters of the ring).
            if c.max_whole_message().is_some_and(|max| buf.len() > max) {
                return c.send_bytes(buf, 0, None).map(Some).map_err(Failure::Send);
            }
            match c.send_bytes_timeout(buf, 0, None, d) {
                Ok(()) => Ok(Some(())),
                Err(SendTimeoutError::Timeout) => Ok(None),
                Err(SendTimeoutError::Send(e)) => Err(Failure::Send(e)),
            }
        })?;
        Ok(())
    }

    /// With the GIL held, a message that has wholly arrived, copied once:
    /// straight from the ring into a new `bytes` of its length (see
    /// [`Connection::recv_bytes_with_deadline`]). [`Taken::Nothing`] when
    /// none has, when another thread is using the end (the GIL is not held
    /// while waiting for it), or before this process claimed the end (the
    /// waiting receive claims it); [`Taken::Part`] when the first records of
    /// a longer message were taken (at most a ring's worth).
    fn take_arrived<'py>(&self, py: Python<'py>) -> PyResult<Taken<'py>> {
        let state = self.state.get()?;
        let mut st = match state.try_lock() {
            Ok(st) => st,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(Taken::Nothing),
        };
        let Some(conn) = st.conn.as_mut() else {
            return Ok(Taken::Nothing);
        };
        // A deadline already past, not a try: a try takes records for as
        // long as a writer that keeps up supplies them, this stops after a
        // ring's worth (see `Incoming::overdue`).
        let got = conn.recv_bytes_with_deadline(
            |m| match m.assembled() {
                // Several records, already in this process's memory: one
                // copy, no zero-fill first.
                Some(msg) => Ok(PyBytes::new(py, msg)),
                None => PyBytes::new_with(py, m.len(), |buf| {
                    m.copy_to_slice(buf);
                    Ok(())
                }),
            },
            Instant::now(),
        );
        let part = conn.mid_message();
        drop(st);
        match got {
            Ok(bytes) => bytes.map(Taken::Whole),
            Err(RecvTimeoutError::Timeout) if part => Ok(Taken::Part),
            Err(RecvTimeoutError::Timeout) => Ok(Taken::Nothing),
            Err(RecvTimeoutError::Recv(e)) => Err(Failure::Recv(e).into_err(self.end)),
        }
    }

    /// The rest of a message whose first records [`take_arrived`] took, or
    /// a message of at most `maxlength` bytes: received with the GIL
    /// released, in slices (signals checked between them), into a `Vec`,
    /// then copied into a `bytes`. A message of several records is
    /// assembled this way so that the GIL is not taken back and given up
    /// at every record (a thread waiting for it then never gets it: each
    /// release wakes it before its switch interval runs out, and it finds
    /// the GIL taken again).
    fn recv_released<'py>(
        &self,
        py: Python<'py>,
        maxlength: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let got = self.with_end(py, Deadline::Never, |c, d| {
            let r = if d.is_zero() {
                c.try_recv_bytes(maxlength).map_err(|e| match e {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Recv(e) => RecvTimeoutError::Recv(e),
                })
            } else {
                c.recv_bytes_timeout(maxlength, d)
            };
            match r {
                Ok(v) => Ok(Some(v)),
                Err(RecvTimeoutError::Timeout) => Ok(None),
                Err(RecvTimeoutError::Recv(e)) => Err(Failure::Recv(e)),
            }
        })?;
        Ok(PyBytes::new(py, &got.unwrap_or_default()))
    }

    /// Waits, with the GIL released and in slices (signals are checked
    /// between them), until a record or the end can be read.
    fn wait_readable(&self, py: Python<'_>, deadline: Deadline) -> PyResult<bool> {
        let r = self.with_end(py, deadline, |c, d| {
            let r = if d.is_zero() {
                c.poll()
            } else {
                c.poll_timeout(d)
            };
            match r {
                Ok(true) => Ok(Some(true)),
                Ok(false) => Ok(None),
                Err(e) => Err(Failure::Recv(e)),
            }
        })?;
        Ok(r.unwrap_or(false))
    }

    /// Signals end of file if this process claimed the end, or if the end
    /// was never shared; otherwise lets this copy go silently.
    fn close_now(&self) {
        // ORDERING: Relaxed — see `flag`.
        if self.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(state) = self.state.get() else {
            return;
        };
        let mut st = lock(state);
        if let Some(mut c) = st.conn.take() {
            c.close();
        } else if !Self::flag(&self.shared) {
            if let Ok(mut c) = st.pipe.connection(self.end) {
                c.close();
            }
        }
    }
}

impl Drop for PyConnection {
    fn drop(&mut self) {
        self.close_now();
    }
}

fn end_of(n: u8) -> PyResult<End> {
    match n {
        1 => Ok(End::First),
        2 => Ok(End::Second),
        _ => Err(pyo3::exceptions::PyValueError::new_err(
            "end must be 1 or 2",
        )),
    }
}

#[pymethods]
impl PyConnection {
    /// A new pipe's two ends, `(conn1, conn2)`.
    #[staticmethod]
    fn _pair(duplex: bool) -> PyResult<(PyConnection, PyConnection)> {
        let name = fresh_name("pipe");
        let pipe = Pipe::builder()
            .duplex(duplex)
            .create(&name)
            .map_err(|e| os_error(format!("cannot create the pipe: {e}")))?;
        Ok((
            PyConnection::of(pipe.clone(), name.clone(), End::First, false),
            PyConnection::of(pipe, name, End::Second, false),
        ))
    }

    /// End `end` (1 or 2) of the pipe named `name`, opened in this process
    /// (a shared copy: nothing is claimed until it is used).
    #[staticmethod]
    fn _open(name: String, end: u8) -> PyResult<PyConnection> {
        let end = end_of(end)?;
        let pipe =
            Pipe::open(&name).map_err(|e| os_error(format!("cannot open the pipe {name}: {e}")))?;
        Ok(PyConnection::of(pipe, name, end, true))
    }

    fn send(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check(false)?;
        let bytes = dumps(py, obj)?;
        self.send_pickled(py, Pickled::of(&bytes))
    }

    /// Sends the whole of `buf` (a `bytes`) as one message.
    fn _send_bytes(&self, py: Python<'_>, buf: &Bound<'_, PyBytes>) -> PyResult<()> {
        self.check(false)?;
        self.send_pickled(py, Pickled::of(buf))
    }

    /// Receives straight into a `bytearray` the connection keeps and
    /// unpickles from it: no copy into a `bytes` object, and no allocation
    /// of one per message (a 64 KiB one, freed right after unpickling,
    /// made glibc give the heap top back and fault it in again on every
    /// message: three times the round trip). Not a memoryview over Rust
    /// memory: a view derived from one (a slice, which unpickling code can
    /// take of its input through `gc`) outlives the view's release. A
    /// `bytearray` owns its memory, every view of it holds a reference to
    /// it, and it is written into again only while this connection holds
    /// the only reference. One known hole is CPython's, not ours: code run
    /// inside unpickling can find `pickle.loads`'s unpickler through `gc`
    /// and re-`__init__` it twice, which releases its buffer but keeps its
    /// raw pointer; a later `load()` on it reads what this connection
    /// received since (or freed memory, as it would with a `bytes` input).
    /// It only reads, and needs code that the peer's pickle already runs.
    fn recv<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.check(true)?;
        let kept = self
            .pickles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let (array, size) = match kept {
            Some((array, size)) if array.get_refcnt(py) == 1 => (array.into_bound(py), size),
            _ => (PyByteArray::new(py, &[]), FIRST_SCRATCH),
        };
        array.resize(size)?;
        // The buffer of a bytearray of `size` bytes; no one else references
        // the bytearray (fresh, or the only reference checked above), so
        // no Python code can read, resize or free it while the receive
        // below writes into it, with the GIL released or between slices.
        // SAFETY: only the address is taken here; no slice of it lives on.
        let at = unsafe { array.as_bytes_mut() }.as_mut_ptr() as usize;
        let got = self.with_end(py, Deadline::Never, move |c, d| {
            // SAFETY: see above: `at..at + size` is the bytearray's buffer,
            // alive and touched by nothing else for the whole call.
            let buf = unsafe { std::slice::from_raw_parts_mut(at as *mut u8, size) };
            let r = if d.is_zero() {
                c.try_recv_bytes_into(buf, 0).map_err(|e| match e {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Recv(e) => RecvTimeoutError::Recv(e),
                })
            } else {
                c.recv_bytes_into_timeout(buf, 0, d)
            };
            match r {
                Ok(len) => Ok(Some(Ok(len))),
                Err(RecvTimeoutError::Timeout) => Ok(None),
                // Longer than the buffer: the whole message, consumed.
                Err(RecvTimeoutError::Recv(RecvError::BufferTooShort(msg))) => Ok(Some(Err(msg))),
                Err(RecvTimeoutError::Recv(e)) => Err(Failure::Recv(e)),
            }
        });
        let keep = |array: Bound<'py, PyByteArray>, size: usize| {
            if size <= KEPT_SCRATCH {
                *self.pickles.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((array.unbind(), size));
            }
        };
        let obj = match got {
            Err(e) => {
                keep(array, size);
                return Err(e);
            }
            Ok(Some(Ok(len))) => {
                array.resize(len)?;
                let obj = loads_from(py, array.as_any());
                keep(array, size);
                obj
            }
            Ok(Some(Err(msg))) => {
                let obj = loads(py, &msg);
                // Room for a message this long next time.
                keep(array, msg.len().next_power_of_two().max(size));
                obj
            }
            Ok(None) => loads(py, &[]),
        };
        obj
    }

    #[pyo3(signature = (maxlength=None))]
    fn _recv_bytes<'py>(
        &self,
        py: Python<'py>,
        maxlength: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.check(true)?;
        if maxlength.is_some() {
            // The limit is the library's to enforce (and to close the end
            // over).
            return self.recv_released(py, maxlength);
        }
        // A message of one record (up to a fragment, 64 KiB by default) is
        // copied once on its way out, into the `bytes` made for it once its
        // length is known; the wait in between holds neither the GIL nor a
        // message.
        loop {
            match self.take_arrived(py)? {
                Taken::Whole(bytes) => return Ok(bytes),
                Taken::Part => return self.recv_released(py, None),
                Taken::Nothing => {}
            }
            // The wait below returns as soon as anything can be read, which
            // need not be a whole slice: signals are checked at every turn.
            py.check_signals()?;
            self.wait_readable(py, Deadline::Never)?;
        }
    }

    /// Python's `poll(timeout)`: `None` waits for ever, zero or less looks
    /// once.
    #[pyo3(signature = (timeout=Some(0.0)))]
    fn poll(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.check(true)?;
        self.wait_readable(py, Deadline::of_timeout(timeout))
    }

    fn close(&self) {
        self.close_now();
    }

    #[getter]
    fn closed(&self) -> bool {
        Self::flag(&self.closed)
    }

    #[getter]
    fn readable(&self) -> bool {
        Self::flag(&self.readable)
    }

    #[getter]
    fn writable(&self) -> bool {
        Self::flag(&self.writable)
    }

    #[getter]
    fn _name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn _end(&self) -> u8 {
        match self.end {
            End::First => 1,
            End::Second => 2,
        }
    }

    #[getter]
    fn _duplex(&self) -> bool {
        self.duplex
    }

    /// Whether this process holds the end (it sent, received or polled).
    #[getter]
    fn _claimed(&self) -> PyResult<bool> {
        let state = self.state.get()?;
        let claimed = lock(state).conn.is_some();
        Ok(claimed)
    }

    /// Another process may use a copy of this end now.
    fn _mark_shared(&self) {
        // ORDERING: Relaxed — see `flag`.
        self.shared.store(true, Ordering::Relaxed);
    }

    /// In a child forked without exec: opens the pipe again by name and
    /// forgets the inherited attachment and end (they are the parent's).
    fn _after_fork(&self) -> PyResult<()> {
        self._mark_shared();
        let fresh = Pipe::open(&self.name)
            .map(|pipe| Mutex::new(State { pipe, conn: None }))
            .map_err(|e| format!("cannot open the pipe {}: {e}", self.name));
        self.state.replace_forgetting(fresh);
        Ok(())
    }
}
