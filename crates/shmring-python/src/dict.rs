//! The dict of `Manager().dict()` and `shmring.dict()`: the library's
//! shared hash table, keys and values in the queue items' form (see
//! [`crate::item`]: an exact None, bool, 64-bit int, float, bytes or str as
//! a tag byte and its raw value, anything else pickled).
//!
//! Keys are compared by those bytes: two keys are the same key when they
//! encode alike (`1`, `1.0` and `True` are different keys here, equal ones
//! in a Python dict), as when every key was pickled.

use std::time::Duration;

use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use shmring::dict::{Dict, DictError};

use crate::item::{decode, encode};
use crate::{fresh_name, in_slices, os_error, Attached, Deadline, Pickled, SLICE};

type Table = Dict<Pickled, Pickled>;

fn open(name: &str) -> Result<Handles, String> {
    let d = Table::open(name).map_err(|e| format!("cannot open the dict {name}: {e}"))?;
    Ok(Handles::of(d))
}

/// This process's two handles of one dict (clones: one attachment): one
/// whose operations wait for the table's lock a slice at a time, with the
/// GIL released, and one whose operations only try it, with the GIL held.
pub(crate) struct Handles {
    wait: Table,
    now: Table,
}

impl Handles {
    fn of(mut wait: Table) -> Handles {
        wait.set_lock_timeout(SLICE);
        let mut now = wait.clone();
        now.set_lock_timeout(Duration::ZERO);
        Handles { wait, now }
    }
}

/// Runs `op` on the table: first with the GIL held, if the table's lock
/// is free (no release and retaking of the GIL: most of an uncontended
/// operation's cost); else with the GIL released, retrying while the lock
/// stays held past a slice (checking signals in between). `op` may run
/// twice: its first run then changed nothing.
fn run<T: Send>(
    py: Python<'_>,
    d: &Handles,
    mut op: impl FnMut(&Table) -> Result<T, DictError> + Send,
) -> PyResult<Result<T, DictError>> {
    match op(&d.now) {
        Err(DictError::Timeout) => {}
        done => return Ok(done),
    }
    let r = in_slices(py, Deadline::Never, false, |_slice: Duration| {
        match op(&d.wait) {
            Ok(v) => Ok(Some(v)),
            Err(DictError::Timeout) => Ok(None),
            Err(e) => Err(e),
        }
    })?;
    Ok(match r {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(DictError::Timeout),
        Err(e) => Err(e),
    })
}

/// The exception for a failed operation; `key` for `KeyError`.
fn error(e: DictError, key: Option<&Bound<'_, PyAny>>) -> PyErr {
    match e {
        DictError::KeyNotFound => match key {
            Some(k) => PyKeyError::new_err(k.clone().unbind()),
            None => PyKeyError::new_err(()),
        },
        DictError::Empty => PyKeyError::new_err("popitem(): dictionary is empty"),
        DictError::Full { capacity } => PyValueError::new_err(format!(
            "the dict is full: it holds at most {capacity} entries (make it with a larger capacity)"
        )),
        DictError::KeyTooLarge { len, max } => PyValueError::new_err(format!(
            "the key is {len} bytes once encoded, more than this dict's max_key of {max}"
        )),
        DictError::ValueTooLarge { len, max } => PyValueError::new_err(format!(
            "the value is {len} bytes once encoded, more than this dict's max_value of {max}"
        )),
        DictError::Reentrant => PyRuntimeError::new_err(e.to_string()),
        e => os_error(e),
    }
}

/// A dict shared between processes.
#[pyclass(module = "shmring._shmring", name = "_Dict", subclass, frozen, weakref)]
pub(crate) struct PyDict {
    handle: Attached<Handles>,
    name: String,
    /// The table's `max_key` and `max_value` (its own, also when opened
    /// by name): the limits of `key` and `value`.
    max_key: usize,
    max_value: usize,
}

impl PyDict {
    fn table(&self) -> PyResult<&Handles> {
        self.handle.get()
    }

    /// The bytes `key` is stored and compared as.
    fn key(&self, key: &Bound<'_, PyAny>) -> PyResult<Pickled> {
        encode(key.py(), key, self.max_key)
    }

    /// The bytes `value` is stored as.
    fn value(&self, value: &Bound<'_, PyAny>) -> PyResult<Pickled> {
        encode(value.py(), value, self.max_value)
    }
}

#[pymethods]
impl PyDict {
    #[new]
    #[pyo3(signature = (*, name=None, capacity=1024, max_key=256, max_value=4096, **_rest))]
    fn new(
        name: Option<String>,
        capacity: u32,
        max_key: u32,
        max_value: u32,
        _rest: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Self> {
        let (table, name) = match name {
            Some(name) => (open(&name).map_err(os_error)?, name),
            None => {
                let name = fresh_name("dict");
                let table = Table::builder()
                    .capacity(capacity)
                    .max_key(max_key)
                    .max_value(max_value)
                    .create(&name)
                    .map_err(|e| PyValueError::new_err(format!("cannot create the dict: {e}")))?;
                (Handles::of(table), name)
            }
        };
        let config = table.wait.config();
        let limit = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(PyDict {
            handle: Attached::new(table),
            name,
            max_key: limit(config.max_key),
            max_value: limit(config.max_value),
        })
    }

    fn __getitem__<'py>(&self, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = key.py();
        let k = self.key(key)?;
        let d = self.table()?;
        match run(py, d, |d| d.get_item(&k))? {
            Ok(v) => decode(py, v.bytes()),
            Err(e) => Err(error(e, Some(key))),
        }
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = key.py();
        let (k, v) = (self.key(key)?, self.value(value)?);
        let d = self.table()?;
        run(py, d, |d| d.set(&k, &v))?.map_err(|e| error(e, Some(key)))
    }

    fn __delitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = key.py();
        let k = self.key(key)?;
        let d = self.table()?;
        match run(py, d, |d| d.remove(&k))? {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(error(DictError::KeyNotFound, Some(key))),
            Err(e) => Err(error(e, Some(key))),
        }
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = key.py();
        let k = self.key(key)?;
        let d = self.table()?;
        run(py, d, |d| d.contains_key(&k))?.map_err(|e| error(e, Some(key)))
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.table()?.now.len())
    }

    #[pyo3(signature = (key, default=None))]
    fn get<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = key.py();
        let k = self.key(key)?;
        let d = self.table()?;
        match run(py, d, |d| d.get(&k))? {
            Ok(Some(v)) => decode(py, v.bytes()),
            Ok(None) => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
            Err(e) => Err(error(e, Some(key))),
        }
    }

    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let d = self.table()?;
        let keys = run(py, d, |d| d.keys())?.map_err(|e| error(e, None))?;
        let out = PyList::empty(py);
        for k in keys {
            out.append(decode(py, k.bytes())?)?;
        }
        Ok(out)
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let d = self.table()?;
        let values = run(py, d, |d| d.values())?.map_err(|e| error(e, None))?;
        let out = PyList::empty(py);
        for v in values {
            out.append(decode(py, v.bytes())?)?;
        }
        Ok(out)
    }

    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let d = self.table()?;
        let items = run(py, d, |d| d.items())?.map_err(|e| error(e, None))?;
        let out = PyList::empty(py);
        for (k, v) in items {
            out.append(PyTuple::new(
                py,
                [decode(py, k.bytes())?, decode(py, v.bytes())?],
            )?)?;
        }
        Ok(out)
    }

    /// `pop(key[, default])`.
    #[pyo3(signature = (key, *default))]
    fn pop<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        default: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = key.py();
        if default.len() > 1 {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "pop expected at most 2 arguments, got {}",
                default.len() + 1
            )));
        }
        let k = self.key(key)?;
        let d = self.table()?;
        match run(py, d, |d| d.remove(&k))? {
            Ok(Some(v)) => decode(py, v.bytes()),
            Ok(None) if default.len() == 1 => default.get_item(0),
            Ok(None) => Err(error(DictError::KeyNotFound, Some(key))),
            Err(e) => Err(error(e, Some(key))),
        }
    }

    fn popitem<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let d = self.table()?;
        let (k, v) = run(py, d, |d| d.popitem())?.map_err(|e| error(e, None))?;
        PyTuple::new(py, [decode(py, k.bytes())?, decode(py, v.bytes())?])
    }

    #[pyo3(signature = (key, default=None))]
    fn setdefault<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = key.py();
        let default = default.unwrap_or_else(|| py.None().into_bound(py));
        let (k, v) = (self.key(key)?, self.value(&default)?);
        let d = self.table()?;
        match run(py, d, |d| d.setdefault(&k, &v))? {
            Ok(v) => decode(py, v.bytes()),
            Err(e) => Err(error(e, Some(key))),
        }
    }

    /// Inserts every `(key, value)` pair of `pairs` under one hold of the
    /// lock (the Python `update` builds the pairs).
    fn _update_pairs(&self, py: Python<'_>, pairs: &Bound<'_, PyList>) -> PyResult<()> {
        let mut encoded = Vec::with_capacity(pairs.len());
        for pair in pairs.iter() {
            let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair.extract()?;
            encoded.push((self.key(&k)?, self.value(&v)?));
        }
        let d = self.table()?;
        // `update` takes the pairs by value, and `run` may call it more
        // than once: hand it copies of the bytes.
        run(py, d, |d| {
            d.update(encoded.iter().map(|(k, v)| {
                (
                    Pickled::In(k.bytes().to_vec()),
                    Pickled::In(v.bytes().to_vec()),
                )
            }))
        })?
        .map_err(|e| error(e, None))
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let d = self.table()?;
        run(py, d, |d| d.clear())?.map_err(|e| error(e, None))
    }

    #[getter]
    fn _name(&self) -> &str {
        &self.name
    }

    fn _after_fork(&self) -> PyResult<()> {
        self.handle.replace_forgetting(open(&self.name));
        Ok(())
    }
}
