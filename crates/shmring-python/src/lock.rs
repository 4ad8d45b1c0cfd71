//! `Lock` and `RLock`: the library's robust locks, with
//! `multiprocessing`'s `acquire(block=True, timeout=None)` and release
//! errors.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pyo3::exceptions::{PyAssertionError, PyValueError};
use pyo3::prelude::*;

use shmring::lock::{AcquireTimeoutError, Acquired, Lock, RLock, TryAcquireError};

use crate::{fresh_name, in_slices, os_error, Attached, Deadline};

/// What both lock kinds do for a Python `acquire`.
trait Acquire: Send + Sync {
    fn acquire_for(&self, d: Duration) -> Result<Option<Acquired>, String>;
    /// Whether a first try, made before a wait, would surely fail: another
    /// holds the lock (held by this thread, an `RLock` is re-entered).
    fn held_elsewhere(&self) -> bool;
    fn open(name: &str) -> Result<Self, String>
    where
        Self: Sized;
}

macro_rules! acquire_impl {
    ($ty:ty, $owned:expr) => {
        impl Acquire for $ty {
            /// One acquire waiting at most `d` (zero: one try), the lock
            /// kept held (the guard leaked) when it succeeds.
            fn acquire_for(&self, d: Duration) -> Result<Option<Acquired>, String> {
                if d.is_zero() {
                    match self.try_acquire() {
                        Ok(g) => Ok(Some(g.leak())),
                        Err(TryAcquireError::WouldBlock) => Ok(None),
                        Err(TryAcquireError::Acquire(e)) => Err(e.to_string()),
                    }
                } else {
                    match self.acquire_timeout(d) {
                        Ok(g) => Ok(Some(g.leak())),
                        Err(AcquireTimeoutError::Timeout) => Ok(None),
                        Err(AcquireTimeoutError::Acquire(e)) => Err(e.to_string()),
                    }
                }
            }

            fn held_elsewhere(&self) -> bool {
                self.is_locked() && !$owned(self)
            }

            fn open(name: &str) -> Result<Self, String> {
                <$ty>::open(name).map_err(|e| format!("cannot open the lock {name}: {e}"))
            }
        }
    };
}
acquire_impl!(Lock, |_: &Lock| false);
acquire_impl!(RLock, RLock::is_owned);

/// The state both lock classes share.
struct Core<L> {
    handle: Attached<L>,
    name: String,
    /// Whether the latest acquire through this object took the lock over
    /// from a holder that had died.
    owner_died: AtomicBool,
}

impl<L: Acquire + 'static> Core<L> {
    fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
        let lock = self.handle.get()?;
        let deadline = Deadline::of(block, timeout);
        let got = in_slices(py, deadline, true, |d| {
            // The try made with the GIL held, before a wait: a lock held
            // elsewhere is left to the wait, whose probes notice a dead
            // holder (a try here would probe its liveness, a system call,
            // every time it finds the lock held).
            if d.is_zero() && !matches!(deadline, Deadline::Now) && lock.held_elsewhere() {
                return Ok(None);
            }
            lock.acquire_for(d)
        })?;
        // A deadline that had passed before the first slice was computed
        // leaves the wait without any try since the skipped one above: try
        // once more, which takes a dead holder's lock at the deadline.
        let got = match (got, deadline) {
            (Ok(None), Deadline::At(_)) => lock.acquire_for(Duration::ZERO),
            (got, _) => got,
        };
        match got {
            Ok(Some(how)) => {
                // ORDERING: Relaxed — a report about this object, read by
                // the thread that acquired (or anyone, as a snapshot).
                self.owner_died.store(how.owner_died(), Ordering::Relaxed);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(os_error(e)),
        }
    }

    fn after_fork(&self) -> PyResult<()> {
        self.handle.replace_forgetting(L::open(&self.name));
        Ok(())
    }
}

/// `multiprocessing.Lock()`: not recursive, released by anyone; a holder
/// that died is taken over (and reported by `owner_died`).
#[pyclass(module = "shmring._shmring", name = "_Lock", subclass, frozen, weakref)]
pub(crate) struct PyLock {
    core: Core<Lock>,
}

#[pymethods]
impl PyLock {
    #[new]
    #[pyo3(signature = (*, name=None, **_rest))]
    fn new(name: Option<String>, _rest: Option<&Bound<'_, pyo3::types::PyDict>>) -> PyResult<Self> {
        let (lock, name) = match name {
            Some(name) => (<Lock as Acquire>::open(&name).map_err(os_error)?, name),
            None => {
                let name = fresh_name("lock");
                let lock = Lock::builder()
                    .create(&name)
                    .map_err(|e| os_error(format!("cannot create the lock: {e}")))?;
                (lock, name)
            }
        };
        Ok(PyLock {
            core: Core {
                handle: Attached::new(lock),
                name,
                owner_died: AtomicBool::new(false),
            },
        })
    }

    #[pyo3(signature = (block=true, timeout=None))]
    fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
        self.core.acquire(py, block, timeout)
    }

    fn release(&self) -> PyResult<()> {
        self.core
            .handle
            .get()?
            .release()
            .map_err(|_| PyValueError::new_err("semaphore or lock released too many times"))
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.core.acquire(py, true, None)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        self.release()
    }

    /// Whether anyone holds the lock (a snapshot).
    fn _is_locked(&self) -> PyResult<bool> {
        Ok(self.core.handle.get()?.is_locked())
    }

    /// Whether the latest acquire through this object took the lock over
    /// from a process that died holding it: what it protects may be
    /// half-updated.
    #[getter]
    fn owner_died(&self) -> bool {
        // ORDERING: Relaxed — see `Core::acquire`.
        self.core.owner_died.load(Ordering::Relaxed)
    }

    #[getter]
    fn _name(&self) -> &str {
        &self.core.name
    }

    fn _after_fork(&self) -> PyResult<()> {
        self.core.after_fork()
    }
}

/// `multiprocessing.RLock()`: recursive, owned by a thread.
#[pyclass(
    module = "shmring._shmring",
    name = "_RLock",
    subclass,
    frozen,
    weakref
)]
pub(crate) struct PyRLock {
    core: Core<RLock>,
}

#[pymethods]
impl PyRLock {
    #[new]
    #[pyo3(signature = (*, name=None, **_rest))]
    fn new(name: Option<String>, _rest: Option<&Bound<'_, pyo3::types::PyDict>>) -> PyResult<Self> {
        let (lock, name) = match name {
            Some(name) => (<RLock as Acquire>::open(&name).map_err(os_error)?, name),
            None => {
                let name = fresh_name("rlock");
                let lock = RLock::builder()
                    .create(&name)
                    .map_err(|e| os_error(format!("cannot create the lock: {e}")))?;
                (lock, name)
            }
        };
        Ok(PyRLock {
            core: Core {
                handle: Attached::new(lock),
                name,
                owner_died: AtomicBool::new(false),
            },
        })
    }

    #[pyo3(signature = (block=true, timeout=None))]
    fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
        self.core.acquire(py, block, timeout)
    }

    fn release(&self) -> PyResult<()> {
        self.core.handle.get()?.release().map_err(|_| {
            PyAssertionError::new_err("attempt to release recursive lock not owned by thread")
        })
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.core.acquire(py, true, None)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        self.release()
    }

    /// Whether this thread holds it.
    fn _is_owned(&self) -> PyResult<bool> {
        Ok(self.core.handle.get()?.is_owned())
    }

    /// See `Lock.owner_died`.
    #[getter]
    fn owner_died(&self) -> bool {
        // ORDERING: Relaxed — see `Core::acquire`.
        self.core.owner_died.load(Ordering::Relaxed)
    }

    #[getter]
    fn _name(&self) -> &str {
        &self.core.name
    }

    fn _after_fork(&self) -> PyResult<()> {
        self.core.after_fork()
    }
}
