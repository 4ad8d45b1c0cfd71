//! The measurements behind README.md's "Dependencies" section: why shmring
//! uses neither `raw_sync` (0.1.5) nor `shared_memory` (0.12) from the
//! design card, measured beside shmring in one run.
//!
//! ```text
//! cargo run --release -p shmring-benches --bin dependencies
//! ```
//!
//! 1. An uncontended lock/unlock pair: `raw_sync::locks::Mutex` (a
//!    process-shared pthread mutex in a `shared_memory` mapping) vs
//!    `shmring::lock::Lock`.
//! 2. A holder SIGKILLed while holding the lock: what the next acquirer in
//!    another process gets, and after how long.
//! 3. Creating a 64 GiB segment (more than /dev/shm holds on the machines
//!    this runs on; for shmring the largest queue there is, 1,024 rings of
//!    the 64 MiB maximum): whether the failure comes at create time or as
//!    a SIGBUS on a later write.

use std::time::{Duration, Instant};

use raw_sync::locks::{LockInit, Mutex};
use raw_sync::Timeout;
use shared_memory::ShmemConf;
use shmring::lock::{Acquired, Lock};
use shmring::process::{run_child, Entry, EntryResult, Process};

const PAIRS: u32 = 1_000_000;

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    run_child(&[&HOLD_RAW, &HOLD_SHMRING]);
    let id = std::process::id();
    println!("shmring deps: raw_sync 0.1.5 and shared_memory 0.12 beside shmring");

    // 1. Uncontended lock/unlock.
    let shm = ShmemConf::new()
        .size(4096)
        .os_id(format!("shmring-deps-raw-{id}"))
        .create()?;
    let base = shm.as_ptr();
    // SAFETY: the mapping is 4096 bytes, far more than a pthread mutex plus
    // its alignment; nobody else uses it yet.
    let (mutex, _) = unsafe { Mutex::new(base, base.add(1024)) }?;
    let start = Instant::now();
    for _ in 0..PAIRS {
        drop(mutex.lock()?);
    }
    let raw_ns = start.elapsed().as_nanos() as f64 / f64::from(PAIRS);
    let lock = Lock::builder().create(&format!("/shmring-deps-lock-{id}"))?;
    let start = Instant::now();
    for _ in 0..PAIRS {
        // Python's unguarded acquire/release, as measured before the guards.
        let _ = lock.acquire()?.leak();
        lock.release()?;
    }
    let ours_ns = start.elapsed().as_nanos() as f64 / f64::from(PAIRS);
    println!("1. uncontended lock+unlock pair: raw_sync Mutex {raw_ns:.1} ns, shmring Lock {ours_ns:.1} ns");
    drop(lock);

    // 2. A holder killed while holding the lock.
    let raw_name = format!("shmring-deps-raw-held-{id}");
    let raw_shm = ShmemConf::new().size(4096).os_id(&raw_name).create()?;
    let raw_base = raw_shm.as_ptr();
    // SAFETY: as above; the child attaches with `from_existing` only after
    // this initialisation (it is spawned below).
    let (raw_mutex, _) = unsafe { Mutex::new(raw_base, raw_base.add(1024)) }?;
    let child = Process::spawn(&HOLD_RAW, (raw_name.clone(),))?;
    wait_ready(child, || {
        raw_mutex.try_lock(Timeout::Val(Duration::ZERO)).is_err()
    })?;
    let start = Instant::now();
    let raw_result = raw_mutex.try_lock(Timeout::Val(Duration::from_secs(1)));
    let raw_waited = start.elapsed();
    let raw_outcome = match &raw_result {
        Ok(_) => "acquired".to_string(),
        Err(e) => format!("failed: {e}"),
    };
    drop(raw_result);
    println!(
        "2. holder SIGKILLed: raw_sync Mutex try_lock(1 s) {raw_outcome} after {:.0} ms (not robust: the dead holder keeps it)",
        raw_waited.as_secs_f64() * 1e3
    );

    let lock_name = format!("/shmring-deps-held-{id}");
    let lock = Lock::builder().create(&lock_name)?;
    let child = Process::spawn(&HOLD_SHMRING, (&lock,))?;
    wait_ready(child, || lock.is_locked())?;
    let start = Instant::now();
    let ours = lock
        .acquire_timeout(Duration::from_secs(5))
        .map(|guard| guard.leak());
    let ours_waited = start.elapsed();
    println!(
        "   holder SIGKILLed: shmring Lock acquire(5 s) returned {ours:?} after {:.1} ms",
        ours_waited.as_secs_f64() * 1e3
    );
    if ours.as_ref().ok() != Some(&Acquired::OwnerDied) {
        return Err("shmring did not report the dead owner".into());
    }
    lock.release()?;

    // 3. A segment larger than /dev/shm: the largest queue shmring can
    // make (no single ring may exceed 64 MiB), and the same size for
    // shared_memory.
    let config = shmring::core::mpmc::QueueConfig {
        rings: shmring::core::mpmc::MAX_RINGS,
        ring: shmring::core::RingConfig {
            capacity: shmring::core::ring::MAX_CAPACITY,
            max_record: 64,
        },
        max_len: 0,
    };
    let huge = shmring::core::mpmc::QueueLayout::new(&config)?.total;
    let theirs = ShmemConf::new()
        .size(huge)
        .os_id(format!("shmring-deps-huge-{id}"))
        .create();
    println!(
        "3. create a {} GiB segment: shared_memory {} (ftruncate only, no space reserved: writes beyond /dev/shm's free space would SIGBUS)",
        huge >> 30,
        match &theirs {
            Ok(_) => "succeeded".to_string(),
            Err(e) => format!("failed: {e}"),
        }
    );
    drop(theirs);
    let ours = shmring::mpmc::ByteQueue::builder()
        .producers(shmring::core::mpmc::MAX_RINGS)
        .ring_bytes(shmring::core::ring::MAX_CAPACITY)
        .max_message(64)
        .maxsize(0)
        .create(&format!("/shmring-deps-huge-{id}"));
    println!(
        "   shmring: {}",
        match &ours {
            Ok(_) => "succeeded".to_string(),
            Err(e) => format!("failed at create time: {e}"),
        }
    );
    Ok(())
}

/// Waits until `held()` says the child holds its lock, then SIGKILLs and
/// reaps it.
fn wait_ready(mut child: Process, mut held: impl FnMut() -> bool) -> Result<(), BoxError> {
    let end = Instant::now() + Duration::from_secs(10);
    while !held() {
        if Instant::now() > end {
            let _ = child.kill();
            return Err("the child never took its lock".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill()?;
    child.join()?;
    Ok(())
}

/// The child of part 2 for `raw_sync`: opens the `shared_memory` mapping
/// named `name`, takes the mutex the parent initialised there and holds it
/// until killed.
fn hold_raw((name,): (String,)) -> EntryResult {
    let shm = ShmemConf::new().os_id(name).open()?;
    let base = shm.as_ptr();
    // SAFETY: the parent initialised the mutex at this offset before
    // spawning us; the mapping is 4096 bytes.
    let (mutex, _) = unsafe { Mutex::from_existing(base, base.add(1024)) }?;
    let guard = mutex.lock()?;
    std::thread::sleep(Duration::from_secs(60)); // until killed
    drop(guard);
    Ok(())
}
static HOLD_RAW: Entry<(String,)> = shmring::entry!(hold_raw);

/// The child of part 2 for shmring: takes the parent's lock and holds it
/// until killed.
fn hold_shmring((lock,): (Lock,)) -> EntryResult {
    let _held = lock.acquire()?;
    std::thread::sleep(Duration::from_secs(60)); // until killed
    Ok(())
}
static HOLD_SHMRING: Entry<(Lock,)> = shmring::entry!(hold_shmring);
