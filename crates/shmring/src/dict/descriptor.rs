//! The dict's descriptor: its table's shape in the header, the table
//! filling the object region.

use std::ptr::NonNull;

use shmring_core::dict::{DictConfig, DictLayout, Table, MAX_CAPACITY, MAX_ITEM};
use shmring_core::error::Corrupted;

use crate::descriptor::{words, Describe, Descriptor, Region, Words};
use crate::segment::{HeaderInfo, ObjectKind, ObjectState, PeerStatus};

/// Header words: `[capacity, max_key, max_value]`. The region is one table
/// ([`DictLayout`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DictDescriptor {
    /// The table's shape.
    pub(crate) config: DictConfig,
    /// Bytes of the region (from the shape).
    len: usize,
}

impl DictDescriptor {
    /// The descriptor of a table of shape `config`.
    ///
    /// # Errors
    ///
    /// The shape is invalid (a description of why).
    pub(crate) fn new(config: DictConfig) -> Result<Self, &'static str> {
        let len = DictLayout::new(&config)?.total;
        Ok(DictDescriptor { config, len })
    }

    /// Attaches to the table in `region`, checking it against this
    /// descriptor.
    ///
    /// # Errors
    ///
    /// The table fails validation or has another shape.
    pub(crate) fn attach(&self, region: &Region) -> Result<Table, Corrupted> {
        let table = region.table()?;
        if table.config() != self.config {
            return Err(Corrupted {
                what: "dict config vs segment params",
                value: table.config().capacity.into(),
            });
        }
        Ok(table)
    }
}

impl Describe for DictDescriptor {
    fn describe(&self, state: &mut ObjectState) {
        let c = &self.config;
        state.capacity = Some(c.capacity.into());
        state.capacity_unit = "entries";
        state.details = vec![
            ("max_key", c.max_key.into()),
            ("max_value", c.max_value.into()),
        ];
    }

    fn examine(
        &self,
        region: &Region,
        _: &HeaderInfo,
        _: &[PeerStatus],
        state: &mut ObjectState,
    ) -> Result<(), Corrupted> {
        // Counting needs no lock (and inspection takes none).
        let entries = self.attach(region)?.count_entries()?;
        state.depth = Some(entries);
        state.holds_data = Some(entries > 0);
        state.details.push(("entries", entries));
        Ok(())
    }
}

impl Descriptor for DictDescriptor {
    const KIND: ObjectKind = ObjectKind::Dict;

    fn encode(&self) -> Words {
        let c = &self.config;
        words(&[c.capacity.into(), c.max_key.into(), c.max_value.into()])
    }

    fn decode(w: &Words) -> Result<Self, Corrupted> {
        let [capacity, max_key, max_value, ..] = *w;
        let field = |what: &'static str, value: u64, ok: bool| {
            u32::try_from(value)
                .ok()
                .filter(|_| ok)
                .ok_or(Corrupted { what, value })
        };
        let config = DictConfig {
            capacity: field(
                "dict capacity",
                capacity,
                (1..=u64::from(MAX_CAPACITY)).contains(&capacity),
            )?,
            max_key: field(
                "dict max_key",
                max_key,
                (1..=u64::from(MAX_ITEM)).contains(&max_key),
            )?,
            max_value: field(
                "dict max_value",
                max_value,
                max_value <= u64::from(MAX_ITEM),
            )?,
        };
        DictDescriptor::new(config).map_err(|_| Corrupted {
            what: "dict capacity",
            value: capacity,
        })
    }

    fn object_len(&self) -> usize {
        self.len
    }

    unsafe fn init(&self, base: NonNull<u8>, len: usize) -> Result<(), String> {
        // SAFETY: forwarded from the caller (zeroed, page-aligned, private).
        unsafe { Table::init_in_place(base, len, &self.config) }.map_err(str::to_string)
    }
}
