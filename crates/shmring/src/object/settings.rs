//! What the builders set, in the one vocabulary every kind shares
//! (`maxsize`, `producers`, `ring_bytes`, `max_message`, …), and the one
//! mapping from it to the core's configurations (`QueueConfig`,
//! `RingConfig`). An invalid value is reported under the name the user
//! set, never the core's.
//!
//! The types are public only because the builders' bounds name them;
//! nobody outside the crate can name or build them.

use shmring_core::error::ConfigError;
use shmring_core::mpmc::QueueConfig;
use shmring_core::RingConfig;

use super::CreateError;

/// A queue's shape (every queue kind, facade or engine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSettings {
    /// Python's `maxsize`: most messages queued at once; 0 = no limit but
    /// the rings' bytes.
    pub(crate) maxsize: u64,
    /// Most producers putting at once: one ring each.
    pub(crate) producers: u64,
    /// Bytes of each producer's ring, a power of two.
    pub(crate) ring_bytes: u64,
    /// Largest encoded message in bytes.
    pub(crate) max_message: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            maxsize: 0,
            producers: 16,
            ring_bytes: 256 * 1024,
            max_message: 64 * 1024,
        }
    }
}

impl QueueSettings {
    /// The core's configuration, validated.
    pub(crate) fn core(&self) -> Result<QueueConfig, CreateError> {
        let config = QueueConfig {
            rings: self.producers,
            ring: ring_config(self.ring_bytes, self.max_message, "max_message")?,
            max_len: self.maxsize,
        };
        config.validate().map_err(|e| named(e, "max_message"))?;
        Ok(config)
    }
}

/// An SPSC ring's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSettings {
    /// Bytes of the ring, a power of two.
    pub(crate) ring_bytes: u64,
    /// Largest message in bytes.
    pub(crate) max_message: u64,
}

impl Default for RingSettings {
    fn default() -> Self {
        RingSettings {
            ring_bytes: 256 * 1024,
            max_message: 64 * 1024,
        }
    }
}

impl RingSettings {
    /// The core's configuration, validated.
    pub(crate) fn core(&self) -> Result<RingConfig, CreateError> {
        ring_config(self.ring_bytes, self.max_message, "max_message")
    }
}

/// A pipe's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipeSettings {
    /// Whether both ends send and receive.
    pub(crate) duplex: bool,
    /// Bytes of each direction's ring, a power of two.
    pub(crate) ring_bytes: u64,
    /// Largest record (longer messages travel in fragments of this size);
    /// `None`: a quarter of `ring_bytes`.
    pub(crate) fragment_bytes: Option<u64>,
}

impl Default for PipeSettings {
    fn default() -> Self {
        PipeSettings {
            duplex: true,
            ring_bytes: 256 << 10,
            fragment_bytes: None,
        }
    }
}

impl PipeSettings {
    /// The configuration of each of the pipe's rings, validated.
    pub(crate) fn ring(&self) -> Result<RingConfig, CreateError> {
        let fragment = self.fragment_bytes.unwrap_or(self.ring_bytes / 4);
        let ring = ring_config(self.ring_bytes, fragment, "fragment_bytes")?;
        if ring.max_record < 8 {
            return Err(CreateError::InvalidOption {
                option: "fragment_bytes",
                reason: format!("{} must be at least 8", ring.max_record),
            });
        }
        Ok(ring)
    }
}

/// A ring configuration from the user's `ring_bytes` and the option that
/// bounds one record (`record_option`: `max_message`, or a pipe's
/// `fragment_bytes`).
fn ring_config(
    ring_bytes: u64,
    max_record: u64,
    record_option: &'static str,
) -> Result<RingConfig, CreateError> {
    let ring = RingConfig {
        capacity: ring_bytes,
        max_record,
    };
    ring.validate().map_err(|e| named(e, record_option))?;
    Ok(ring)
}

/// The core's configuration error, told in the builder's words.
pub(crate) fn named(e: ConfigError, record_option: &'static str) -> CreateError {
    let (option, reason) = match e {
        ConfigError::Capacity { capacity, min, max } => (
            "ring_bytes",
            format!("{capacity} must be a power of two between {min} and {max}"),
        ),
        ConfigError::MaxRecord { max_record, limit } => (
            record_option,
            format!(
                "{max_record} bytes do not fit in the ring: this `ring_bytes` holds at most \
                 {limit} (raise `ring_bytes` or lower `{record_option}`)"
            ),
        ),
        ConfigError::RingCount { count, max } => {
            ("producers", format!("{count} must be between 1 and {max}"))
        }
    };
    CreateError::InvalidOption { option, reason }
}
