//! `Queue`, `JoinableQueue` and `SimpleQueue`: the library's MPMC queue of
//! pickled bytes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use shmring::queue::{
    GetError, GetTimeoutError, JoinTimeoutError, JoinableQueue, PutError, PutTimeoutError, Queue,
    TryGetError, TryPutError,
};

use crate::{empty, fresh_name, full, in_slices, item, os_error, Attached, Deadline, Pickled};

/// The queue under a Python queue object.
enum Kind {
    Plain(Queue<Pickled>),
    Joinable(JoinableQueue<Pickled>),
}

macro_rules! each {
    ($kind:expr, $q:ident => $e:expr) => {
        match $kind {
            Kind::Plain($q) => $e,
            Kind::Joinable($q) => $e,
        }
    };
}

/// What one slice of a put did.
enum PutOutcome {
    Done,
    /// No room before the slice ended: the item, to try again.
    Again(Pickled),
    Failed(PutError<Pickled>),
}

impl Kind {
    fn open(name: &str, joinable: bool) -> Result<Kind, String> {
        if joinable {
            JoinableQueue::open(name).map(Kind::Joinable)
        } else {
            Queue::open(name).map(Kind::Plain)
        }
        .map_err(|e| format!("cannot open the queue {name}: {e}"))
    }

    /// One put waiting at most `d` (zero: one try).
    fn put_for(&self, item: Pickled, d: Duration) -> PutOutcome {
        let r = if d.is_zero() {
            each!(self, q => q.try_put(item)).map_err(|e| match e {
                TryPutError::Full(item) => PutTimeoutError::Timeout(item),
                TryPutError::Put(e) => PutTimeoutError::Put(e),
            })
        } else {
            each!(self, q => q.put_timeout(item, d))
        };
        match r {
            Ok(()) => PutOutcome::Done,
            Err(PutTimeoutError::Timeout(item)) => PutOutcome::Again(item),
            Err(PutTimeoutError::Put(e)) => PutOutcome::Failed(e),
        }
    }

    /// One get waiting at most `d` (zero: one try); `None`: nothing came.
    fn get_for(&self, d: Duration) -> Result<Option<Pickled>, GetError> {
        if d.is_zero() {
            match each!(self, q => q.try_get()) {
                Ok(item) => Ok(Some(item)),
                Err(TryGetError::Empty) => Ok(None),
                Err(TryGetError::Get(e)) => Err(e),
            }
        } else {
            match each!(self, q => q.get_timeout(d)) {
                Ok(item) => Ok(Some(item)),
                Err(GetTimeoutError::Timeout) => Ok(None),
                Err(GetTimeoutError::Get(e)) => Err(e),
            }
        }
    }
}

/// What the Python object says of itself in errors (`repr(self)`).
fn describe(slf: &Bound<'_, PyAny>) -> String {
    slf.repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "<queue>".into())
}

/// The state every queue class shares.
struct Core {
    handle: Attached<Kind>,
    name: String,
    joinable: bool,
    maxsize: i64,
    max_message: u64,
    closed: AtomicBool,
}

impl Core {
    fn new(
        maxsize: i64,
        joinable: bool,
        name: Option<String>,
        producers: u64,
        ring_bytes: u64,
        max_message: u64,
    ) -> PyResult<Core> {
        let (kind, name) = match name {
            Some(name) => (Kind::open(&name, joinable).map_err(os_error)?, name),
            None => {
                let name = fresh_name(if joinable { "jq" } else { "q" });
                let cap = u64::try_from(maxsize).unwrap_or(0);
                let kind = if joinable {
                    JoinableQueue::builder()
                        .maxsize(cap)
                        .producers(producers)
                        .ring_bytes(ring_bytes)
                        .max_message(max_message)
                        .create(&name)
                        .map(Kind::Joinable)
                } else {
                    Queue::builder()
                        .maxsize(cap)
                        .producers(producers)
                        .ring_bytes(ring_bytes)
                        .max_message(max_message)
                        .create(&name)
                        .map(Kind::Plain)
                }
                .map_err(|e| PyValueError::new_err(format!("cannot create the queue: {e}")))?;
                (kind, name)
            }
        };
        let (maxsize, max_message) = {
            let q = &kind;
            let m = each!(q, q => q.maxsize());
            (
                i64::try_from(m).unwrap_or(i64::MAX),
                max_message, // an opener reports the size it was asked for
            )
        };
        Ok(Core {
            handle: Attached::new(kind),
            name,
            joinable,
            maxsize,
            max_message,
            closed: AtomicBool::new(false),
        })
    }

    fn is_closed(&self) -> bool {
        // ORDERING: Relaxed — a flag of this process's object; the queue's
        // own close (which wakes sleepers) carries any ordering.
        self.closed.load(Ordering::Relaxed)
    }

    fn put(
        &self,
        slf: &Bound<'_, PyAny>,
        obj: &Bound<'_, PyAny>,
        deadline: Deadline,
        closed: fn(&Bound<'_, PyAny>) -> PyErr,
    ) -> PyResult<()> {
        if self.is_closed() {
            return Err(closed(slf));
        }
        let py = slf.py();
        let limit = usize::try_from(self.max_message).unwrap_or(usize::MAX);
        let encoded = item::encode(py, obj, limit)?;
        let q = self.handle.get()?;
        let mut item = Some(encoded);
        let outcome = in_slices(py, deadline, true, |d| {
            let Some(it) = item.take() else {
                return Ok(Some(()));
            };
            match q.put_for(it, d) {
                PutOutcome::Done => Ok(Some(())),
                PutOutcome::Again(it) => {
                    item = Some(it);
                    Ok(None)
                }
                PutOutcome::Failed(e) => Err(e),
            }
        })?;
        match outcome {
            Ok(Some(())) => Ok(()),
            Ok(None) => Err(full(py)),
            Err(e) => Err(self.put_error(slf, e, closed)),
        }
    }

    fn put_error(
        &self,
        slf: &Bound<'_, PyAny>,
        e: PutError<Pickled>,
        closed: fn(&Bound<'_, PyAny>) -> PyErr,
    ) -> PyErr {
        match e {
            PutError::Closed(_) | PutError::ShutDown(_) => closed(slf),
            PutError::TooLarge(_, len) => PyValueError::new_err(format!(
                "the object is {len} bytes once encoded, more than this queue's max_message of {} \
                 bytes (make the queue with a larger max_message)",
                self.max_message
            )),
            PutError::NoFreeRing(_, rings) => PyRuntimeError::new_err(format!(
                "all {rings} producer rings of the queue are held by live processes (make the \
                 queue with more producers)"
            )),
            PutError::Encode(_, e) => os_error(e),
            PutError::Corrupted(_, c) => os_error(c),
        }
    }

    fn get<'py>(
        &self,
        slf: &Bound<'py, PyAny>,
        deadline: Deadline,
        closed: fn(&Bound<'_, PyAny>) -> PyErr,
    ) -> PyResult<Bound<'py, PyAny>> {
        if self.is_closed() {
            return Err(closed(slf));
        }
        let py = slf.py();
        let q = self.handle.get()?;
        match in_slices(py, deadline, true, |d| q.get_for(d))? {
            Ok(Some(got)) => item::decode(py, got.bytes()),
            Ok(None) => Err(empty(py)),
            Err(GetError::Closed | GetError::ShutDown) => Err(closed(slf)),
            Err(GetError::TooManyTasks) => Err(PyOSError::new_err(
                "this process holds too many tasks not yet marked done: call task_done()",
            )),
            Err(e) => Err(os_error(e)),
        }
    }

    fn close(&self) -> PyResult<()> {
        // ORDERING: Relaxed — see `is_closed`.
        self.closed.store(true, Ordering::Relaxed);
        let q = self.handle.get()?;
        each!(q, q => q.close());
        Ok(())
    }

    /// Hands the producer ring back (the process puts no more for now).
    fn hand_back_producer(&self) -> PyResult<()> {
        let q = self.handle.get()?;
        each!(q, q => q.hand_back_producer());
        Ok(())
    }

    fn after_fork(&self) -> PyResult<()> {
        let fresh = Kind::open(&self.name, self.joinable);
        self.handle.replace_forgetting(fresh);
        Ok(())
    }
}

/// `ValueError("Queue <...> is closed")`, as CPython 3.8+.
fn queue_closed(slf: &Bound<'_, PyAny>) -> PyErr {
    PyValueError::new_err(format!("Queue {} is closed", describe(slf)))
}

/// `OSError("handle is closed")`, as CPython's `SimpleQueue` after close.
fn handle_closed(_slf: &Bound<'_, PyAny>) -> PyErr {
    PyOSError::new_err("handle is closed")
}

/// The queue of `multiprocessing.Queue` and `JoinableQueue` (the Python
/// classes subclass it).
#[pyclass(
    module = "shmring._shmring",
    name = "_Queue",
    subclass,
    frozen,
    weakref
)]
pub(crate) struct PyQueue {
    core: Core,
}

#[pymethods]
impl PyQueue {
    #[new]
    #[pyo3(signature = (maxsize=0, *, joinable=false, name=None, producers=16, ring_bytes=256*1024, max_message=128*1024, **_rest))]
    fn new(
        maxsize: i64,
        joinable: bool,
        name: Option<String>,
        producers: u64,
        ring_bytes: u64,
        max_message: u64,
        _rest: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Self> {
        Ok(PyQueue {
            core: Core::new(maxsize, joinable, name, producers, ring_bytes, max_message)?,
        })
    }

    #[pyo3(signature = (obj, block=true, timeout=None))]
    fn put(
        slf: &Bound<'_, Self>,
        obj: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        slf.get().core.put(
            slf.as_any(),
            obj,
            Deadline::of(block, timeout),
            queue_closed,
        )
    }

    fn put_nowait(slf: &Bound<'_, Self>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        slf.get()
            .core
            .put(slf.as_any(), obj, Deadline::Now, queue_closed)
    }

    #[pyo3(signature = (block=true, timeout=None))]
    fn get<'py>(
        slf: &Bound<'py, Self>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        slf.get()
            .core
            .get(slf.as_any(), Deadline::of(block, timeout), queue_closed)
    }

    fn get_nowait<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.get()
            .core
            .get(slf.as_any(), Deadline::Now, queue_closed)
    }

    /// Approximate number of queued items.
    fn qsize(&self) -> PyResult<u64> {
        let q = self.core.handle.get()?;
        Ok(each!(q, q => q.len()))
    }

    fn empty(&self) -> PyResult<bool> {
        let q = self.core.handle.get()?;
        Ok(each!(q, q => q.is_empty()))
    }

    fn full(&self) -> PyResult<bool> {
        let q = self.core.handle.get()?;
        Ok(each!(q, q => q.is_full()))
    }

    fn close(&self) -> PyResult<()> {
        self.core.close()
    }

    /// `task_done()` of a `JoinableQueue`.
    fn task_done(&self) -> PyResult<()> {
        let q = self.core.handle.get()?;
        match q {
            Kind::Joinable(q) => q
                .task_done()
                .map_err(|_| PyValueError::new_err("task_done() called too many times")),
            Kind::Plain(_) => Err(PyValueError::new_err("not a JoinableQueue")),
        }
    }

    /// `join()` of a `JoinableQueue`: returns the number of tasks written
    /// off because the process holding them died.
    fn join(&self, py: Python<'_>) -> PyResult<u64> {
        let q = self.core.handle.get()?;
        let Kind::Joinable(jq) = q else {
            return Err(PyValueError::new_err("not a JoinableQueue"));
        };
        let r = in_slices(py, Deadline::Never, true, |d| -> Result<_, String> {
            match jq.join_timeout(d) {
                Ok(()) => Ok(Some(0)),
                Err(JoinTimeoutError::Timeout) => Ok(None),
                Err(JoinTimeoutError::Join(shmring::queue::JoinError::PeerDied { lost })) => {
                    Ok(Some(lost))
                }
            }
        })?;
        match r {
            Ok(Some(lost)) => Ok(lost),
            Ok(None) => Ok(0),
            Err(e) => Err(os_error(e)),
        }
    }

    /// Tasks put and not yet marked done (a snapshot).
    fn _unfinished_tasks(&self) -> PyResult<u64> {
        let q = self.core.handle.get()?;
        match q {
            Kind::Joinable(q) => Ok(q.unfinished_tasks()),
            Kind::Plain(q) => Ok(q.len()),
        }
    }

    #[getter]
    fn _name(&self) -> &str {
        &self.core.name
    }

    #[getter]
    fn _maxsize(&self) -> i64 {
        self.core.maxsize
    }

    #[getter]
    fn _joinable(&self) -> bool {
        self.core.joinable
    }

    #[getter]
    fn _closed(&self) -> bool {
        self.core.is_closed()
    }

    /// In a child forked without exec: opens the queue again by name and
    /// forgets the inherited handle.
    fn _after_fork(&self) -> PyResult<()> {
        self.core.after_fork()
    }

    /// Hands this process's producer ring back: its items then come out
    /// before any put after this was seen (at process exit, so that a
    /// sentinel put after a join comes after the joined process's items).
    fn _hand_back_producer(&self) -> PyResult<()> {
        self.core.hand_back_producer()
    }
}

/// The queue of `multiprocessing.SimpleQueue`: `put`, `get`, `empty`,
/// `close`, and `OSError("handle is closed")` after `close`.
#[pyclass(
    module = "shmring._shmring",
    name = "_SimpleQueue",
    subclass,
    frozen,
    weakref
)]
pub(crate) struct PySimpleQueue {
    core: Core,
}

#[pymethods]
impl PySimpleQueue {
    #[new]
    #[pyo3(signature = (*, name=None, producers=16, ring_bytes=256*1024, max_message=128*1024, **_rest))]
    fn new(
        name: Option<String>,
        producers: u64,
        ring_bytes: u64,
        max_message: u64,
        _rest: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Self> {
        Ok(PySimpleQueue {
            core: Core::new(0, false, name, producers, ring_bytes, max_message)?,
        })
    }

    fn put(slf: &Bound<'_, Self>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        slf.get()
            .core
            .put(slf.as_any(), obj, Deadline::Never, handle_closed)
    }

    fn get<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.get()
            .core
            .get(slf.as_any(), Deadline::Never, handle_closed)
    }

    fn empty(&self) -> PyResult<bool> {
        if self.core.is_closed() {
            return Err(handle_closed_err());
        }
        let q = self.core.handle.get()?;
        Ok(each!(q, q => q.is_empty()))
    }

    fn close(&self) -> PyResult<()> {
        self.core.close()
    }

    #[getter]
    fn _name(&self) -> &str {
        &self.core.name
    }

    #[getter]
    fn _closed(&self) -> bool {
        self.core.is_closed()
    }

    fn _after_fork(&self) -> PyResult<()> {
        self.core.after_fork()
    }

    /// As `_Queue._hand_back_producer`.
    fn _hand_back_producer(&self) -> PyResult<()> {
        self.core.hand_back_producer()
    }
}

fn handle_closed_err() -> PyErr {
    PyOSError::new_err("handle is closed")
}
