//! Support for the fault harness (`tests/faults/`): faults beyond `SIGKILL`.
//!
//! The chaos harness (`tests/chaos/`) kills processes and counts messages.
//! The fault harness adds what it never did: queues with a `maxsize` (where
//! a miscounted length wedges every producer), processes *stopped*
//! (`SIGSTOP`, then `SIGCONT`) as well as killed, children that inherit an
//! object and never open it (a *bystander*: it must not keep a dead
//! holder alive), creators killed in the middle of a create, and two
//! processes creating and dropping one name while a third opens it.
//!
//! This module holds what both sides of that harness share:
//!
//! * [`board::Board`]: a second ledger file (the chaos [`crate::ledger`]
//!   still counts queue messages) where the parent writes, for every child
//!   *incarnation*, when it killed it and when it stopped it, and where
//!   children write what they saw: every report of a peer's death (a lock
//!   taken with `OwnerDied`, an end of file, a broken pipe, a producer ring
//!   claimed) with the time it came. The parent then checks each report
//!   against the deaths it caused: a report no real death explains is a
//!   *false death*, one that came later than the liveness bound after the
//!   death is an *unseen death*.
//! * [`hook`]: the children's failpoint hook, which kills its process *or
//!   stops it* (`raise(SIGSTOP)`) at the N-th hit of a chosen failpoint.
//! * [`payload`]: long tagged messages for pipes (several fragments each),
//!   so that a stop or a kill lands in the middle of one.

pub mod board;
pub mod hook;
pub mod payload;
