//! [`Locked`], the table held under its lock, and everything done through
//! it: lookups, the publish protocol of every write (see the parent
//! module), compaction and clearing.

use alloc::vec::Vec;

use super::{Table, TableError, TOMBSTONE};
use crate::bytes;
use crate::error::Corrupted;
use crate::sync::{AtomicU32, Ordering};
use crate::wait::Waiter;

/// The table, locked by one token. Every operation of the table goes
/// through one. Dropping it releases the lock (after a recovery if an
/// operation was interrupted by a panic).
pub struct Locked<'a, W: Waiter + ?Sized> {
    pub(super) table: &'a Table,
    pub(super) token: u64,
    pub(super) waiter: &'a W,
    /// A write is between its first and last step.
    pub(super) dirty: bool,
    /// The previous holder died and its state was recovered.
    pub(super) recovered: bool,
}

impl<W: Waiter + ?Sized> core::fmt::Debug for Locked<'_, W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Locked")
            .field("token", &self.token)
            .field("recovered", &self.recovered)
            .finish_non_exhaustive()
    }
}

impl<W: Waiter + ?Sized> Drop for Locked<'_, W> {
    fn drop(&mut self) {
        if self.dirty {
            // Interrupted by a panic: repair the derived state as the next
            // holder would after a crash. A corrupted table stays so; the
            // next operation reports it.
            let _ = self.table.rebuild();
        }
        // Only fails if a hostile peer rewrote the owner; nothing to do then.
        let _ = self
            .table
            .shared()
            .lock
            .release_owned(self.token, self.waiter);
    }
}

/// Where a key is, or where it would go.
struct Found {
    /// Bucket and slot of the key, if present.
    hit: Option<(usize, usize)>,
    /// First tombstone or empty bucket on the probe path, and whether it was
    /// a tombstone.
    vacant: Option<(usize, bool)>,
}

impl<W: Waiter + ?Sized> Locked<'_, W> {
    /// Whether the previous holder died and this guard recovered the table.
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        // ORDERING: Relaxed — under the lock.
        let len = self.table.shared().state.len.load(Ordering::Relaxed);
        len.min(u64::from(self.table.config.capacity)) as usize
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the value of `key` into `value` (replacing its contents).
    /// Returns whether the key was there.
    ///
    /// # Errors
    ///
    /// [`Corrupted`].
    pub fn get(&self, key: &[u8], value: &mut Vec<u8>) -> Result<bool, Corrupted> {
        match self.find(key, super::hash(key))?.hit {
            Some((_, slot)) => {
                self.read_slot(slot, None, Some(value))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Inserts or replaces. When `old` is given and the key was there, its
    /// previous value is copied into it. Returns whether the key was there.
    ///
    /// # Errors
    ///
    /// [`TableError::Full`] for a new key in a full table, the size errors,
    /// [`TableError::Corrupted`]. Nothing is changed on error.
    pub fn insert(
        &mut self,
        key: &[u8],
        value: &[u8],
        old: Option<&mut Vec<u8>>,
    ) -> Result<bool, TableError> {
        let config = self.table.config;
        if key.len() > config.max_key as usize {
            let (len, max) = (key.len(), config.max_key);
            return Err(TableError::KeyTooLarge { len, max });
        }
        if value.len() > config.max_value as usize {
            let (len, max) = (value.len(), config.max_value);
            return Err(TableError::ValueTooLarge { len, max });
        }
        let h = super::hash(key);
        let mut found = self.find(key, h)?;
        if let Some((_, old_slot)) = found.hit {
            if let Some(old) = old {
                self.read_slot(old_slot, None, Some(old))?;
            }
        } else {
            if self.len() >= config.capacity as usize {
                return Err(TableError::Full {
                    capacity: config.capacity,
                });
            }
            let state = &self.table.shared().state;
            // ORDERING: Relaxed — under the lock.
            // Clamped: a hostile count must not overflow the arithmetic
            // below (dict_ops/segment_bytes fuzz finding).
            let tombs = state
                .tombstones
                .load(Ordering::Relaxed)
                .min(self.table.layout.buckets as u64) as usize;
            let crowded = (self.len() + tombs + 1) * 4 > self.table.layout.buckets * 3;
            if found.vacant.is_none() || (crowded && tombs > 0) {
                self.compact()?;
                found = self.find(key, h)?;
            }
        }
        let bucket = match (found.hit, found.vacant) {
            (Some((b, _)), _) | (None, Some((b, _))) => b,
            (None, None) => return Err(Corrupted::new("dict has no vacant bucket", 0).into()),
        };
        self.dirty = true;
        let slot = self.pop_free()?;
        self.write_slot(slot, h, key, value)?;
        self.table.fail("dict:slot-written");
        // ORDERING: Release — publishes the slot written above; pairs with
        // the Acquire of the lock by the next holder (and keeps the order
        // for an optimistic reader, should one ever exist).
        self.table.index(self.table.active()?)[bucket].store(slot as u32 + 1, Ordering::Release);
        self.table.fail("dict:published");
        let state = &self.table.shared().state;
        match found.hit {
            Some((_, old_slot)) => self.push_free(old_slot)?,
            None => {
                if found.vacant.is_some_and(|(_, tomb)| tomb) {
                    // ORDERING: Relaxed — derived state under the lock.
                    state.tombstones.fetch_sub(1, Ordering::Relaxed);
                }
                // ORDERING: Relaxed — derived state under the lock.
                state.len.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.dirty = false;
        Ok(found.hit.is_some())
    }

    /// Removes `key`; its value is copied into `old` when given. Returns
    /// whether it was there.
    ///
    /// # Errors
    ///
    /// [`Corrupted`].
    pub fn remove(&mut self, key: &[u8], old: Option<&mut Vec<u8>>) -> Result<bool, Corrupted> {
        let Some((bucket, slot)) = self.find(key, super::hash(key))?.hit else {
            return Ok(false);
        };
        if let Some(old) = old {
            self.read_slot(slot, None, Some(old))?;
        }
        self.remove_at(bucket, slot)?;
        Ok(true)
    }

    /// Removes some entry (the first in bucket order), copying its key and
    /// value out. Returns whether there was one.
    ///
    /// # Errors
    ///
    /// [`Corrupted`].
    pub fn pop_first(&mut self, key: &mut Vec<u8>, value: &mut Vec<u8>) -> Result<bool, Corrupted> {
        let Some((bucket, slot)) = self.first_at()? else {
            return Ok(false);
        };
        self.read_slot(slot, Some(key), Some(value))?;
        self.remove_at(bucket, slot)?;
        Ok(true)
    }

    /// Copies out the entry [`pop_first`](Locked::pop_first) would remove,
    /// and leaves it there (a caller that must check it before removing it
    /// then removes it by key). Returns whether there was one.
    ///
    /// # Errors
    ///
    /// [`Corrupted`].
    pub fn first(&self, key: &mut Vec<u8>, value: &mut Vec<u8>) -> Result<bool, Corrupted> {
        let Some((_, slot)) = self.first_at()? else {
            return Ok(false);
        };
        self.read_slot(slot, Some(key), Some(value))?;
        Ok(true)
    }

    /// Bucket and slot of the first live entry in bucket order.
    fn first_at(&self) -> Result<Option<(usize, usize)>, Corrupted> {
        let index = self.table.index(self.table.active()?);
        for (bucket, b) in index.iter().enumerate() {
            // ORDERING: Relaxed — under the lock.
            let v = b.load(Ordering::Relaxed);
            if v != 0 && v != TOMBSTONE {
                return Ok(Some((bucket, (v - 1) as usize)));
            }
        }
        Ok(None)
    }

    /// Calls `f(key, value)` for every entry, in bucket order.
    ///
    /// # Errors
    ///
    /// [`Corrupted`]; `f` has then seen the entries before the bad one.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) -> Result<(), Corrupted> {
        let (mut key, mut value) = (Vec::new(), Vec::new());
        for b in self.table.index(self.table.active()?) {
            // ORDERING: Relaxed — under the lock.
            let v = b.load(Ordering::Relaxed);
            if v != 0 && v != TOMBSTONE {
                self.read_slot((v - 1) as usize, Some(&mut key), Some(&mut value))?;
                f(&key, &value);
            }
        }
        Ok(())
    }

    /// Removes every entry, atomically: the other index is emptied, then
    /// made active with one store.
    ///
    /// # Errors
    ///
    /// [`Corrupted`].
    pub fn clear(&mut self) -> Result<(), Corrupted> {
        let active = self.table.active()?;
        self.dirty = true;
        for b in self.table.index(active ^ 1) {
            // ORDERING: Relaxed — the inactive index; published by the flip.
            b.store(0, Ordering::Relaxed);
        }
        self.table.fail("dict:index-written");
        self.flip(active ^ 1);
        self.table.fail("dict:flipped");
        self.table.rebuild()?;
        self.dirty = false;
        Ok(())
    }

    fn remove_at(&mut self, bucket: usize, slot: usize) -> Result<(), Corrupted> {
        let index = self.table.index(self.table.active()?);
        let mask = index.len() - 1;
        // Linear probing: a bucket followed by an empty one is on no other
        // key's probe path, so it can become empty instead of a tombstone.
        // ORDERING: Relaxed — under the lock.
        let next_empty = index[(bucket + 1) & mask].load(Ordering::Relaxed) == 0;
        let mark = if next_empty { 0 } else { TOMBSTONE };
        self.dirty = true;
        // ORDERING: Release — the one store that removes the key; pairs with
        // the next holder's Acquire of the lock.
        index[bucket].store(mark, Ordering::Release);
        self.table.fail("dict:published");
        self.push_free(slot)?;
        let state = &self.table.shared().state;
        // ORDERING: Relaxed — derived state under the lock.
        state.len.fetch_sub(1, Ordering::Relaxed);
        if !next_empty {
            // ORDERING: Relaxed — as above.
            state.tombstones.fetch_add(1, Ordering::Relaxed);
        }
        self.dirty = false;
        Ok(())
    }

    /// Rebuilds the live entries into the other index without tombstones,
    /// then makes it active with one store.
    fn compact(&mut self) -> Result<(), Corrupted> {
        let active = self.table.active()?;
        let (from, to) = (self.table.index(active), self.table.index(active ^ 1));
        let mask = to.len() - 1;
        self.dirty = true;
        for b in to {
            // ORDERING: Relaxed — the inactive index; published by the flip.
            b.store(0, Ordering::Relaxed);
        }
        for b in from {
            // ORDERING: Relaxed — under the lock.
            let v = b.load(Ordering::Relaxed);
            if v == 0 || v == TOMBSTONE {
                continue;
            }
            let slot = self.table.slot((v - 1) as usize)?;
            // ORDERING: Relaxed — under the lock.
            let mut at = slot[0].load(Ordering::Relaxed) as usize & mask;
            let mut probes = 0;
            // ORDERING: Relaxed — our own stores above and below.
            while to[at].load(Ordering::Relaxed) != 0 {
                probes += 1;
                if probes == to.len() {
                    return Err(Corrupted::new("dict compaction overflow", v.into()));
                }
                at = (at + 1) & mask;
            }
            // ORDERING: Relaxed — published by the flip.
            to[at].store(v, Ordering::Relaxed);
        }
        self.table.fail("dict:index-written");
        self.flip(active ^ 1);
        let state = &self.table.shared().state;
        // ORDERING: Relaxed — derived state under the lock.
        state.tombstones.store(0, Ordering::Relaxed);
        self.dirty = false;
        Ok(())
    }

    fn flip(&self, to: usize) {
        // ORDERING: Release — publishes the index built before it; pairs with
        // the Acquire load in `Table::active`.
        self.table
            .shared()
            .state
            .active
            .store(to as u64, Ordering::Release);
    }

    fn find(&self, key: &[u8], h: u64) -> Result<Found, Corrupted> {
        let index: &[AtomicU32] = self.table.index(self.table.active()?);
        let mask = index.len() - 1;
        let mut at = h as usize & mask;
        let mut vacant = None;
        // A key longer than `max_key` matches no slot (a slot claiming that
        // length is corrupted, and its words may not hold it).
        let fits = key.len() <= self.table.config.max_key as usize;
        for _ in 0..index.len() {
            // ORDERING: Relaxed — under the lock.
            match index[at].load(Ordering::Relaxed) {
                0 => {
                    return Ok(Found {
                        hit: None,
                        vacant: vacant.or(Some((at, false))),
                    })
                }
                TOMBSTONE => {
                    vacant = vacant.or(Some((at, true)));
                }
                v => {
                    let slot = (v - 1) as usize;
                    let words = self.table.slot(slot)?;
                    // ORDERING: Relaxed — under the lock.
                    let lens = words[1].load(Ordering::Relaxed);
                    // ORDERING: Relaxed — under the lock.
                    // In bounds: 2 + ceil(key/8) <= slot_words when the key
                    // fits (`equals` checks anyway).
                    if fits
                        && words[0].load(Ordering::Relaxed) == h
                        && lens as u32 as usize == key.len()
                        && bytes::equals(words, 2, key)
                    {
                        return Ok(Found {
                            hit: Some((at, slot)),
                            vacant,
                        });
                    }
                }
            }
            at = (at + 1) & mask;
        }
        Ok(Found { hit: None, vacant })
    }

    /// Copies a slot's key and value out (each when asked), checking both
    /// lengths. Returns the stored hash.
    fn read_slot(
        &self,
        slot: usize,
        key: Option<&mut Vec<u8>>,
        value: Option<&mut Vec<u8>>,
    ) -> Result<u64, Corrupted> {
        let words = self.table.slot(slot)?;
        let config = self.table.config;
        // ORDERING: Relaxed — under the lock.
        let lens = words[1].load(Ordering::Relaxed);
        let (key_len, value_len) = ((lens & 0xffff_ffff) as usize, (lens >> 32) as usize);
        if key_len > config.max_key as usize || value_len > config.max_value as usize {
            return Err(Corrupted::new("dict slot lengths", lens));
        }
        // In bounds: 2 + ceil(key/8) + ceil(value/8) <= slot_words.
        if let Some(key) = key {
            key.resize(key_len, 0);
            bytes::load(words, 2, key, true);
        }
        if let Some(value) = value {
            value.resize(value_len, 0);
            bytes::load(words, 2 + key_len.div_ceil(8), value, true);
        }
        // ORDERING: Relaxed — under the lock.
        Ok(words[0].load(Ordering::Relaxed))
    }

    fn write_slot(&self, slot: usize, h: u64, key: &[u8], value: &[u8]) -> Result<(), Corrupted> {
        let words = self.table.slot(slot)?;
        // ORDERING: Relaxed — a free slot nobody reads until the Release
        // store of its bucket publishes it.
        words[0].store(h, Ordering::Relaxed);
        // ORDERING: Relaxed — as above.
        words[1].store(
            key.len() as u64 | (value.len() as u64) << 32,
            Ordering::Relaxed,
        );
        // Lengths were checked against max_key / max_value: in bounds.
        bytes::store(words, 2, key, true);
        bytes::store(words, 2 + key.len().div_ceil(8), value, true);
        Ok(())
    }

    fn pop_free(&self) -> Result<usize, Corrupted> {
        let state = &self.table.shared().state;
        // ORDERING: Relaxed — derived state under the lock.
        let top = state.free_top.load(Ordering::Relaxed);
        if top == 0 || top > self.table.layout.slots as u64 {
            return Err(Corrupted::new("dict free stack top", top));
        }
        // ORDERING: Relaxed — under the lock.
        let slot = self.table.free()[top as usize - 1].load(Ordering::Relaxed) as usize;
        if slot >= self.table.layout.slots {
            return Err(Corrupted::new("dict free slot", slot as u64));
        }
        // ORDERING: Relaxed — under the lock; a crash right after leaks the
        // slot until recovery rebuilds the stack.
        state.free_top.store(top - 1, Ordering::Relaxed);
        self.table.fail("dict:slot-allocated");
        Ok(slot)
    }

    fn push_free(&self, slot: usize) -> Result<(), Corrupted> {
        let state = &self.table.shared().state;
        // ORDERING: Relaxed — derived state under the lock.
        let top = state.free_top.load(Ordering::Relaxed);
        if top >= self.table.layout.slots as u64 {
            return Err(Corrupted::new("dict free stack top", top));
        }
        // ORDERING: Relaxed — under the lock.
        self.table.free()[top as usize].store(slot as u32, Ordering::Relaxed);
        self.table.fail("dict:slot-freeing");
        // ORDERING: Relaxed — under the lock.
        state.free_top.store(top + 1, Ordering::Relaxed);
        Ok(())
    }
}
