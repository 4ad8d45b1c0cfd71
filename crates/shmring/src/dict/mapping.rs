//! The mapping operations of [`Dict`]: Python's dict methods, each under
//! one hold of the table's lock ([`Dict::locked`], in `held.rs`).

use super::*;
use held::Held;
use std::borrow::Cow;

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The encoding of `value`: its own bytes when it holds them
/// ([`Message::as_bytes`]), else encoded into a fresh buffer.
fn encode<T: Message>(value: &T) -> Result<Cow<'_, [u8]>, DictError> {
    if let Some(bytes) = value.as_bytes() {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::new();
    value.encode(&mut out)?;
    Ok(Cow::Owned(out))
}

/// The value of `key`, decoded, read under the lock: a write that replaces
/// or removes it calls this first, so a value that does not decode fails
/// the call before anything is written.
fn current<V: Message>(guard: &Held<'_>, key: &[u8]) -> Result<Option<V>, DictError> {
    let mut bytes = Vec::new();
    if !guard.get(key, &mut bytes)? {
        return Ok(None);
    }
    Ok(Some(V::decode_from(&mut bytes)?))
}

impl<K: Message, V: Message> Dict<K, V> {
    /// Every entry's bytes, copied out under the lock.
    fn pairs(&self) -> Result<Pairs, DictError> {
        let guard = self.locked()?;
        let mut pairs = Vec::with_capacity(guard.len());
        guard.for_each(|k, v| pairs.push((k.to_vec(), v.to_vec())))?;
        Ok(pairs)
    }

    /// The table's configuration.
    pub fn config(&self) -> DictConfig {
        self.table.config()
    }

    /// Python's `d.get(key)`: the value, or `None`.
    ///
    /// # Errors
    ///
    /// `Codec` (the key cannot be encoded, the value not decoded),
    /// `Corrupted`.
    pub fn get(&self, key: &K) -> Result<Option<V>, DictError> {
        let key = encode(key)?;
        let mut value = Vec::new();
        if !self.locked()?.get(&key, &mut value)? {
            return Ok(None);
        }
        Ok(Some(V::decode_from(&mut value)?))
    }

    /// Python's `d[key]`.
    ///
    /// # Errors
    ///
    /// [`DictError::KeyNotFound`] (Python's `KeyError`), or as `get`.
    #[doc(alias = "__getitem__")]
    pub fn get_item(&self, key: &K) -> Result<V, DictError> {
        self.get(key)?.ok_or(DictError::KeyNotFound)
    }

    /// Python's `d[key] = value`; returns the old value.
    ///
    /// # Errors
    ///
    /// `Full` (a new key in a full table), `KeyTooLarge`, `ValueTooLarge`,
    /// `Codec` (also when the old value does not decode as a `V`: stored
    /// through a handle of another type, say), `Corrupted`, `Reentrant`;
    /// the table is unchanged then.
    ///
    /// # Crash behaviour
    ///
    /// Killed inside, the key has its old or its new value.
    #[doc(alias = "__setitem__")]
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>, DictError> {
        let (key, value) = (encode(key)?, encode(value)?);
        let mut guard = self.locked()?;
        let old = current(&guard, &key)?;
        guard.insert(&key, &value, None)?;
        Ok(old)
    }

    /// Python's `d[key] = value`, as [`insert`](Dict::insert) but without
    /// looking up and copying out the old value (the binding's
    /// `__setitem__`, which throws it away).
    ///
    /// # Errors
    ///
    /// `Full` (a new key in a full table), `KeyTooLarge`, `ValueTooLarge`,
    /// `Codec`, `Corrupted`, `Reentrant`; the table is unchanged then.
    ///
    /// # Crash behaviour
    ///
    /// Killed inside, the key has its old or its new value.
    pub fn set(&self, key: &K, value: &V) -> Result<(), DictError> {
        let (key, value) = (encode(key)?, encode(value)?);
        self.locked()?.insert(&key, &value, None)?;
        Ok(())
    }

    /// Python's `del d[key]`, returning the old value (`None`: not there).
    ///
    /// # Errors
    ///
    /// `Codec` (also when the old value does not decode), `Corrupted`,
    /// `Reentrant`; the table is unchanged then.
    ///
    /// # Crash behaviour
    ///
    /// Killed inside, the key is there with its value, or gone.
    #[doc(alias = "__delitem__")]
    pub fn remove(&self, key: &K) -> Result<Option<V>, DictError> {
        let key = encode(key)?;
        let mut guard = self.locked()?;
        let old = current(&guard, &key)?;
        if old.is_some() {
            guard.remove(&key, None)?;
        }
        Ok(old)
    }

    /// Python's `key in d`.
    ///
    /// # Errors
    ///
    /// `Codec`, `Corrupted`.
    #[doc(alias = "__contains__")]
    pub fn contains_key(&self, key: &K) -> Result<bool, DictError> {
        let key = encode(key)?;
        Ok(self.locked()?.get(&key, &mut Vec::new())?)
    }

    /// Python's `len(d)`: the number of entries, a snapshot read without
    /// the lock (as a queue's `len` is).
    ///
    /// Infallible, unlike the other reads, which take the table's lock
    /// (and so can be `Reentrant`, `Timeout` or find the table `Corrupted`
    /// while recovering it) and decode what they copy out (`Codec`): the
    /// count is one word, read without waiting, so it works inside
    /// [`update_with`](Dict::update_with) and while a holder is stopped.
    /// Exact while no write is between its steps; after a writer died in
    /// the middle of one it may be stale until the next operation (which
    /// recovers the table) — `items().len()` counts under the lock. A
    /// hostile value is clamped to the capacity.
    #[doc(alias = "__len__")]
    pub fn len(&self) -> usize {
        self.table.len_unlocked()
    }

    /// Whether the dict is empty: [`len`](Dict::len) `== 0` (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Python's `d.keys()`: a list (a consistent snapshot, in no particular
    /// order).
    ///
    /// # Errors
    ///
    /// `Codec`, `Corrupted`.
    pub fn keys(&self) -> Result<Vec<K>, DictError> {
        self.pairs()?
            .iter()
            .map(|(k, _)| Ok(K::decode(k)?))
            .collect()
    }

    /// Python's `d.values()`: a list, in the order of [`keys`](Dict::keys).
    ///
    /// # Errors
    ///
    /// `Codec`, `Corrupted`.
    pub fn values(&self) -> Result<Vec<V>, DictError> {
        self.pairs()?
            .iter()
            .map(|(_, v)| Ok(V::decode(v)?))
            .collect()
    }

    /// Python's `d.items()`: a list of pairs (a consistent snapshot).
    ///
    /// # Errors
    ///
    /// `Codec`, `Corrupted`.
    pub fn items(&self) -> Result<Vec<(K, V)>, DictError> {
        self.pairs()?
            .iter()
            .map(|(k, v)| Ok((K::decode(k)?, V::decode(v)?)))
            .collect()
    }

    /// Python's `d.copy()`: a plain `HashMap` (a consistent snapshot).
    ///
    /// # Errors
    ///
    /// `Codec`, `Corrupted`.
    #[doc(alias = "copy")]
    pub fn to_hash_map(&self) -> Result<HashMap<K, V>, DictError>
    where
        K: Eq + Hash,
    {
        Ok(self.items()?.into_iter().collect())
    }

    /// Python's `d.pop(key)`: removes the key and returns its value.
    ///
    /// # Errors
    ///
    /// [`DictError::KeyNotFound`] (Python's `KeyError`), or as
    /// [`remove`](Dict::remove); the table is unchanged then.
    ///
    /// # Crash behaviour
    ///
    /// As [`remove`](Dict::remove).
    pub fn pop(&self, key: &K) -> Result<V, DictError> {
        self.remove(key)?.ok_or(DictError::KeyNotFound)
    }

    /// Python's `d.popitem()`: removes and returns some entry (not
    /// necessarily the last inserted).
    ///
    /// # Errors
    ///
    /// [`DictError::Empty`] (`popitem(): dictionary is empty`), `Codec`
    /// (the entry it picked does not decode; it stays, and the next
    /// `popitem` picks it again), `Corrupted`, `Reentrant`; the table is
    /// unchanged then.
    ///
    /// # Crash behaviour
    ///
    /// As [`remove`](Dict::remove).
    pub fn popitem(&self) -> Result<(K, V), DictError> {
        let (mut key, mut value) = (Vec::new(), Vec::new());
        let mut guard = self.locked()?;
        if !guard.first(&mut key, &mut value)? {
            return Err(DictError::Empty);
        }
        let item = (K::decode(&key)?, V::decode(&value)?);
        if !guard.remove(&key, None)? {
            // Its slot is not where its own key's hash leads: a peer
            // rewrote the table.
            return Err(Corrupted {
                what: "dict entry not found by its own key",
                value: 0,
            }
            .into());
        }
        Ok(item)
    }

    /// Python's `d.setdefault(key, default)`: the value of `key`, inserting
    /// `default` first if it is not there (atomically).
    ///
    /// # Errors
    ///
    /// As [`insert`](Dict::insert), and `Codec` when `default`'s encoding
    /// does not decode back (it is not inserted then); the table is
    /// unchanged on every error.
    pub fn setdefault(&self, key: &K, default: &V) -> Result<V, DictError> {
        let (key, fresh) = (encode(key)?, encode(default)?);
        let mut guard = self.locked()?;
        if let Some(value) = current(&guard, &key)? {
            return Ok(value);
        }
        // What the next reader gets back: it must decode before it is stored.
        let value = V::decode(&fresh)?;
        guard.insert(&key, &fresh, None)?;
        Ok(value)
    }

    /// Python's `d.update(items)`: inserts every pair, in order, under one
    /// hold of the lock (no other process sees a part of it). Everything is
    /// encoded first (an encoding error writes nothing); a pair that fails
    /// to be written leaves the table as it was for that pair and stops the
    /// call: the pairs before it stay inserted, as in Python, and the ones
    /// after it are not written.
    ///
    /// # Errors
    ///
    /// As [`insert`](Dict::insert), for the pair that failed: `Full`,
    /// `KeyTooLarge`, `ValueTooLarge`, `Codec` (also when that key's old
    /// value does not decode as a `V`: it is not overwritten), `Corrupted`,
    /// `Reentrant`.
    ///
    /// # Crash behaviour
    ///
    /// Killed inside, the pairs before the one being written are inserted,
    /// that one has its old or new value, the rest are untouched.
    pub fn update<I: IntoIterator<Item = (K, V)>>(&self, items: I) -> Result<(), DictError> {
        let pairs = items
            .into_iter()
            .map(|(k, v)| Ok((encode(&k)?.into_owned(), encode(&v)?.into_owned())))
            .collect::<Result<Pairs, DictError>>()?;
        let mut guard = self.locked()?;
        for (k, v) in &pairs {
            // As `insert`: an old value that does not decode fails the pair
            // before anything of it is written.
            current::<V>(&guard, k)?;
            guard.insert(k, v, None)?;
        }
        Ok(())
    }

    /// Python's `d.clear()`, atomically: another process sees every entry
    /// or none.
    ///
    /// # Errors
    ///
    /// `Corrupted`.
    ///
    /// # Crash behaviour
    ///
    /// Killed inside, the dict is either untouched or empty.
    pub fn clear(&self) -> Result<(), DictError> {
        Ok(self.locked()?.clear()?)
    }

    /// Atomic read-modify-write: calls `f` with the current value (`None`:
    /// absent) while holding the lock, and stores what it returns (`None`:
    /// remove the key). Returns the new value.
    ///
    /// # Blocking
    ///
    /// Every other operation on this dict, in every process and every other
    /// thread, waits while `f` runs: keep it short, and do not wait inside
    /// it for another thread that uses this dict (that waits forever).
    ///
    /// # Re-entrancy
    ///
    /// Inside `f`, this thread holds the dict's lock. Any call on the same
    /// dict from `f` (through this handle, a clone, or another handle of
    /// the same dict in this process) returns [`DictError::Reentrant`] at
    /// once rather than waiting for itself; `f` sees that error and goes on.
    /// Other dicts may be used inside `f`.
    ///
    /// # Errors
    ///
    /// As [`insert`](Dict::insert); the stored value failing to decode is
    /// `Codec`, before `f` runs; `Reentrant` when called from inside
    /// another `update_with` of the same dict on this thread. On any error
    /// nothing is changed.
    ///
    /// # Panics
    ///
    /// When `f` panics: the panic goes on to the caller after the lock is
    /// released, and the key keeps its old value.
    ///
    /// # Crash behaviour
    ///
    /// Killed inside (or `f` panicking), the key keeps its old value or has
    /// the new one; a panic releases the lock.
    pub fn update_with<F>(&self, key: &K, f: F) -> Result<Option<V>, DictError>
    where
        F: FnOnce(Option<V>) -> Option<V>,
    {
        let key = encode(key)?;
        let mut guard = self.locked()?;
        let new = f(current(&guard, &key)?);
        match &new {
            Some(value) => {
                guard.insert(&key, &encode(value)?, None)?;
            }
            None => {
                guard.remove(&key, None)?;
            }
        }
        Ok(new)
    }

    /// How many times a dead writer's lock was taken over and the table
    /// recovered (all peers).
    pub fn recoveries(&self) -> u64 {
        self.table.lock_state().recoveries()
    }

    /// Sets the spin budget and liveness period used while waiting for the
    /// lock.
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.policy = policy;
    }

    /// Bounds how long each operation of this handle (not its clones) waits
    /// for the table's lock: after `timeout` it fails with
    /// [`DictError::Timeout`] and changes nothing. Zero tries once;
    /// `Duration::MAX` waits as long as it takes, the default.
    ///
    /// The bound covers the whole wait: for another thread of this
    /// attachment, and for a holder in another process. A dead holder never
    /// needs it (it is taken over within one liveness slice); a live one
    /// that is stopped (`SIGSTOP`, a debugger) or inside a long
    /// [`update_with`](Dict::update_with) does.
    pub fn set_lock_timeout(&mut self, timeout: Duration) {
        self.lock_until = if timeout == Duration::MAX {
            Until::Never
        } else {
            Until::after(timeout)
        };
    }

    /// The segment underneath (name, peers).
    pub fn segment(&self) -> &Segment {
        &self.segment
    }
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Dict<String, Vec<u8>>>();
};
