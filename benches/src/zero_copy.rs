//! shmring's zero-copy path between two processes: the sender reserves
//! room in the ring and writes the message in place
//! ([`Producer::reserve`](shmring::spsc::Producer::reserve), then
//! `commit`); the receiver reads it in place
//! ([`Consumer::read`](shmring::spsc::Consumer::read); dropping the grant
//! releases it). No buffer on either side, no copy.
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
//! Polling only: the sender spins while the ring is full, the receiver
//! while it is empty. The rings are those of `shmring_measure`'s
//! `shmring-spsc` (1 MiB per direction, or room for two messages).

use std::process::Command;

use shmring::core::{PopError, PushError, RingConfig};
use shmring::spsc::{self, Ring};
use shmring::{CreateOptions, OpenOptions};

use crate::peer::{check, Channel, Job, Spin, Touch};

/// Parent → peer.
const TO_PEER: &str = "SHMRING_BENCHES_ZC_TO_PEER";
/// Peer → parent.
const TO_PARENT: &str = "SHMRING_BENCHES_ZC_TO_PARENT";

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

fn attach_error(what: &'static str) -> impl Fn(shmring::AttachError) -> String {
    move |e| format!("{what}: {e}")
}

impl ZeroCopy {
    /// The parent's side: creates both rings and hands them to the peer
    /// that `cmd` will spawn.
    ///
    /// # Errors
    ///
    /// Creating, sharing or attaching a ring failed.
    pub fn parent(job: &Job, cmd: &mut Command) -> Result<ZeroCopy, String> {
        check_job(job)?;
        let opts = CreateOptions::default();
        let config = ring_config(job.payload);
        let to_peer = Ring::create_anonymous(config, &opts).map_err(attach_error("create"))?;
        let to_parent = Ring::create_anonymous(config, &opts).map_err(attach_error("create"))?;
        to_peer
            .share_with_child(cmd, TO_PEER)
            .map_err(attach_error("share"))?;
        to_parent
            .share_with_child(cmd, TO_PARENT)
            .map_err(attach_error("share"))?;
        Ok(ZeroCopy {
            tx: to_peer.producer().map_err(attach_error("producer"))?,
            rx: to_parent.consumer().map_err(attach_error("consumer"))?,
            payload: job.payload,
            touch: job.touch,
        })
    }

    /// The peer's side: opens the rings the parent handed over.
    ///
    /// # Errors
    ///
    /// As [`parent`](Self::parent).
    pub fn child(job: &Job) -> Result<ZeroCopy, String> {
        check_job(job)?;
        let opts = OpenOptions::default();
        let from_parent = Ring::open_inherited(TO_PEER, &opts).map_err(attach_error("open"))?;
        let to_parent = Ring::open_inherited(TO_PARENT, &opts).map_err(attach_error("open"))?;
        Ok(ZeroCopy {
            tx: to_parent.producer().map_err(attach_error("producer"))?,
            rx: from_parent.consumer().map_err(attach_error("consumer"))?,
            payload: job.payload,
            touch: job.touch,
        })
    }
}

fn check_job(job: &Job) -> Result<(), String> {
    if job.payload < 8 {
        return Err(format!("zero-copy: payload {} below 8 bytes", job.payload));
    }
    if job.mode != shmring_measure::Mode::Polling {
        return Err("zero-copy: polling only".into());
    }
    Ok(())
}

impl Channel for ZeroCopy {
    #[inline]
    fn send(&mut self, seq: u64) -> Result<(), String> {
        let (payload, touch) = (self.payload, self.touch);
        let mut spin = Spin::new();
        loop {
            match self.tx.reserve(payload) {
                Ok(mut grant) => {
                    if touch == Touch::All {
                        grant[8..].fill(seq as u8);
                    }
                    grant[..8].copy_from_slice(&seq.to_le_bytes());
                    grant.commit(payload);
                    return Ok(());
                }
                Err(PushError::Full) => spin.spin()?,
                Err(e) => return Err(format!("reserve: {e}")),
            }
        }
    }

    #[inline]
    fn recv(&mut self, seq: u64) -> Result<(), String> {
        let (payload, touch) = (self.payload, self.touch);
        let mut spin = Spin::new();
        loop {
            match self.rx.read() {
                Ok(grant) => {
                    check(&grant, payload, seq)?;
                    if touch == Touch::All {
                        // Reads every byte; no early exit, so it vectorises.
                        let byte = seq as u8;
                        let diff = grant[8..].iter().fold(0u8, |acc, &b| acc | (b ^ byte));
                        if diff != 0 {
                            return Err(format!("message {seq}: a payload byte differs"));
                        }
                    }
                    // Dropping the grant releases the record.
                    return Ok(());
                }
                Err(PopError::Empty) => spin.spin()?,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }
}
