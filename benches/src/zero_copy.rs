//! shmring's zero-copy path between two processes: the sender reserves
//! room in the ring and writes the message in place
//! ([`Producer::reserve`](shmring::spsc::Producer::reserve), then
//! `commit`); the receiver reads it in place
//! ([`Consumer::read`](shmring::spsc::Consumer::read); dropping the grant
//! releases it). The payload is never copied.
//!
//! Two variants, because "zero-copy" alone hides who pays for the bytes:
//!
//! * [`Touch::Header`]: the sender writes only the 8-byte sequence word and
//!   the receiver reads only that (and the length). This is the transport's
//!   own cost, the figure iceoryx2 quotes as flat in the message size.
//! * [`Touch::All`]: the sender writes every byte (a fill, then the
//!   sequence word) and the receiver reads every byte (an OR-reduction that
//!   also checks them). What an application that fills and consumes its
//!   messages pays.
//!
//! In place means the grants' `unsafe` slice views
//! ([`WriteGrant::as_mut_slice`](shmring::core::spsc::WriteGrant::as_mut_slice),
//! [`ReadGrant::as_slice`](shmring::core::spsc::ReadGrant::as_slice)): both
//! ends are this bench's own processes, well-behaved peers, which is what
//! those views ask of their callers.
//!
//! Polling only: the sender spins while the ring is full, the receiver
//! while it is empty. The rings are those of `shmring_measure`'s
//! `shmring-spsc` (1 MiB per direction, or room for two messages).
//!
//! It runs in `shmring_measure`'s driver as a
//! [custom link](shmring_measure::custom), named after its [`Touch`]
//! (`zero-copy:header`, `zero-copy:all`): the driver stamps and checks the
//! sequence word, so the receiver copies out just that word (and the
//! length) for it, and checks the other bytes in place.

use std::process::Command;

use shmring::core::{PopError, PushError, RingConfig};
use shmring::spsc::{self, Ring};
use shmring_measure::custom::{Link, LinkSpec, Spin};
use shmring_measure::{MeasureError, Mode};

/// Parent → peer.
const TO_PEER: &str = "SHMRING_BENCHES_ZC_TO_PEER";
/// Peer → parent.
const TO_PARENT: &str = "SHMRING_BENCHES_ZC_TO_PARENT";

/// How much of a message the zero-copy path writes and reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touch {
    /// Only the sequence word: the transport's own cost.
    Header,
    /// Every byte written by the sender and read by the receiver.
    All,
}

impl Touch {
    /// The custom link's name for this variant.
    pub fn link_name(self) -> &'static str {
        match self {
            Touch::Header => "zero-copy:header",
            Touch::All => "zero-copy:all",
        }
    }

    /// The variant a custom link's name stands for, if it is this path's.
    pub fn from_link_name(name: &str) -> Option<Touch> {
        [Touch::Header, Touch::All]
            .into_iter()
            .find(|t| t.link_name() == name)
    }
}

/// The ring shape `shmring_measure` uses for `payload`: 1 MiB, or room for
/// two messages; records up to 64 KiB or the payload.
pub fn ring_config(payload: usize) -> RingConfig {
    let need = 2 * (payload as u64 + 64);
    RingConfig {
        capacity: need.next_power_of_two().max(1 << 20),
        max_record: (payload as u64).max(64 << 10),
    }
}

/// One SPSC ring per direction, used in place.
pub struct ZeroCopy {
    tx: spsc::Producer,
    rx: spsc::Consumer,
    payload: usize,
    touch: Touch,
}

fn attach_error<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> MeasureError {
    move |e| MeasureError::Transport(format!("{what}: {e}"))
}

impl ZeroCopy {
    /// The parent's side: creates both rings and hands them to the peer
    /// that `cmd` will spawn.
    ///
    /// # Errors
    ///
    /// Not this path's link, or creating, sharing or attaching a ring
    /// failed.
    pub fn parent(spec: &LinkSpec, cmd: &mut Command) -> Result<ZeroCopy, MeasureError> {
        let touch = check_spec(spec)?;
        let config = ring_config(spec.payload);
        let ring = Ring::builder()
            .ring_bytes(config.capacity)
            .max_message(config.max_record);
        let to_peer = ring.anonymous().map_err(attach_error("create"))?;
        let to_parent = ring.anonymous().map_err(attach_error("create"))?;
        to_peer
            .share_with_child(cmd, TO_PEER)
            .map_err(attach_error("share"))?;
        to_parent
            .share_with_child(cmd, TO_PARENT)
            .map_err(attach_error("share"))?;
        Ok(ZeroCopy {
            tx: to_peer.producer().map_err(attach_error("producer"))?,
            rx: to_parent.consumer().map_err(attach_error("consumer"))?,
            payload: spec.payload,
            touch,
        })
    }

    /// The peer's side: opens the rings the parent handed over.
    ///
    /// # Errors
    ///
    /// As [`parent`](Self::parent).
    pub fn child(spec: &LinkSpec) -> Result<ZeroCopy, MeasureError> {
        let touch = check_spec(spec)?;
        let from_parent = Ring::builder()
            .open_inherited(TO_PEER)
            .map_err(attach_error("open"))?;
        let to_parent = Ring::builder()
            .open_inherited(TO_PARENT)
            .map_err(attach_error("open"))?;
        Ok(ZeroCopy {
            tx: to_parent.producer().map_err(attach_error("producer"))?,
            rx: from_parent.consumer().map_err(attach_error("consumer"))?,
            payload: spec.payload,
            touch,
        })
    }
}

fn check_spec(spec: &LinkSpec) -> Result<Touch, MeasureError> {
    let bad = |why: String| Err(MeasureError::InvalidParams(format!("zero-copy: {why}")));
    let Some(touch) = Touch::from_link_name(&spec.name) else {
        return bad(format!("not its link: {:?}", spec.name));
    };
    if spec.payload < 8 {
        return bad(format!("payload {} below 8 bytes", spec.payload));
    }
    if spec.mode != Mode::Polling {
        return bad("polling only".into());
    }
    Ok(touch)
}

impl Link for ZeroCopy {
    /// Writes the sequence word (`msg`'s first 8 bytes) in place, and with
    /// [`Touch::All`] every other byte too (its low byte).
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), MeasureError> {
        let (payload, touch) = (self.payload, self.touch);
        let mut spin = Spin::new();
        loop {
            match self.tx.reserve(payload) {
                Ok(mut grant) => {
                    // SAFETY: the receiver is this bench's peer process, a
                    // correct consumer: it never touches unpublished space.
                    let space = unsafe { grant.as_mut_slice() };
                    if touch == Touch::All {
                        space[8..].fill(msg[0]);
                    }
                    space[..8].copy_from_slice(&msg[..8]);
                    grant.commit(payload);
                    return Ok(());
                }
                Err(PushError::Full) => spin.spin()?,
                Err(e) => return Err(MeasureError::Transport(format!("reserve: {e}"))),
            }
        }
    }

    /// Copies out the length and the sequence word (what the driver
    /// checks); with [`Touch::All`] reads every other byte in place and
    /// checks it against the sequence word's low byte.
    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<(), MeasureError> {
        let touch = self.touch;
        let mut spin = Spin::new();
        loop {
            match self.rx.read() {
                Ok(grant) => {
                    // SAFETY: the sender is this bench's peer process, a
                    // correct producer: it leaves a published record alone
                    // until it is released (when `grant` drops).
                    let record = unsafe { grant.as_slice() };
                    // A no-op once `buf` has the message's length.
                    buf.resize(record.len(), 0);
                    let head = record.len().min(8);
                    buf[..head].copy_from_slice(&record[..head]);
                    if touch == Touch::All {
                        // Reads every byte; no early exit, so it vectorises.
                        let byte = buf.first().copied().unwrap_or_default();
                        let rest = record.get(8..).unwrap_or_default();
                        let diff = rest.iter().fold(0u8, |acc, &b| acc | (b ^ byte));
                        if diff != 0 {
                            return Err(MeasureError::Peer("a payload byte differs".into()));
                        }
                    }
                    // Dropping the grant releases the record.
                    return Ok(());
                }
                Err(PopError::Empty) => spin.spin()?,
                Err(e) => return Err(MeasureError::Transport(format!("read: {e}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_name_the_touch() {
        for touch in [Touch::Header, Touch::All] {
            assert_eq!(Touch::from_link_name(touch.link_name()), Some(touch));
        }
        assert_eq!(Touch::from_link_name("iceoryx2:1-0"), None);
    }

    #[test]
    fn ring_fits_two_messages() {
        assert_eq!(ring_config(8).capacity, 1 << 20);
        assert_eq!(ring_config(4 << 20).capacity, 16 << 20);
        assert_eq!(ring_config(4 << 20).max_record, 4 << 20);
    }
}
