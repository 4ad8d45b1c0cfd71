//! What the store-load fence of the wake check costs, and what the
//! asymmetric alternative would cost the sleeper: the figures behind
//! README.md's explanation of the stream targets.
//!
//! ```text
//! cargo run --release -p shmring-benches --bin fence
//! ```
//!
//! Every push and pop stores its position, then (after a `SeqCst` fence)
//! loads the wait word's sleeper count, so that a sleeper's registration
//! and a publish never miss each other (DESIGN.md, "Blocking"). The
//! asymmetric alternative drops the fence from the publisher and makes each
//! sleeper call `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` instead, which
//! interrupts every CPU running a thread of a registered process. This
//! prints:
//!
//! 1. a store, the fence and a load in one thread, against a locked `or`
//!    and against no fence (the fence alone, with nothing to drain);
//! 2. one `membarrier(GLOBAL_EXPEDITED)` with no other registered process
//!    running, and with a registered peer process busy on another CPU (the
//!    case of a sleeper whose peer is about to answer).

use std::hint::black_box;
use std::sync::atomic::{compiler_fence, fence, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmring::process::{run_child, Entry, EntryResult, Process, TryJoinError};

const LOOPS: u64 = 50_000_000;
const BARRIERS: u32 = 20_000;

static STORED: AtomicU64 = AtomicU64::new(0);
static LOADED: AtomicU64 = AtomicU64::new(0);

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    run_child(&[&BUSY_PEER]);
    pin(0);
    println!("shmring fence: the wake check's store-load fence, and membarrier");
    for (name, ns) in [
        (
            "store, SeqCst fence, load",
            per_op(|| fence(Ordering::SeqCst)),
        ),
        ("store, lock or, load", per_op(locked_or)),
        (
            "store, compiler fence only, load",
            per_op(|| compiler_fence(Ordering::SeqCst)),
        ),
    ] {
        println!("  {name:34} {ns:6.2} ns");
    }
    if let Err(e) = register() {
        println!("  membarrier: not available here ({e}); nothing more to measure");
        return Ok(());
    }
    println!(
        "  membarrier(GLOBAL_EXPEDITED), no registered peer running: {:.2} µs",
        barrier_us()?
    );
    let mut peer = Process::spawn(&BUSY_PEER, ())?;
    std::thread::sleep(Duration::from_millis(200)); // registered and spinning
    match peer.try_join() {
        Ok(status) => return Err(format!("the busy peer exited: {status}").into()),
        Err(TryJoinError::Running) => {}
        Err(e) => return Err(e.into()),
    }
    let busy = barrier_us();
    stop(&mut peer);
    println!(
        "  membarrier(GLOBAL_EXPEDITED), registered peer busy on CPU 1: {:.2} µs",
        busy?
    );
    Ok(())
}

/// The busy peer: registered, pinned to CPU 1, spinning until killed.
fn busy_peer(_: ()) -> EntryResult {
    register()?;
    pin(1);
    let mut x = 0u64;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}
static BUSY_PEER: Entry<()> = shmring::entry!(busy_peer);

/// Nanoseconds per store + `barrier` + load, over [`LOOPS`].
fn per_op(barrier: impl Fn()) -> f64 {
    let start = Instant::now();
    let mut sum = 0u64;
    for i in 0..black_box(LOOPS) {
        // ORDERING: Release / Relaxed — the same operations as a publish
        // and the wake check; `barrier` is what is being measured.
        STORED.store(black_box(i), Ordering::Release);
        barrier();
        // ORDERING: Relaxed — see above.
        sum = sum.wrapping_add(LOADED.load(Ordering::Relaxed));
    }
    black_box(sum);
    start.elapsed().as_secs_f64() * 1e9 / LOOPS as f64
}

/// A locked `or` of zero into the stack: a full barrier on x86-64.
#[inline(always)]
fn locked_or() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: ORs zero into the word at the stack pointer, which this
    // function's frame owns; no other state changes (flags are preserved).
    unsafe {
        std::arch::asm!("lock or dword ptr [rsp], 0", options(preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    fence(Ordering::SeqCst);
}

fn membarrier(cmd: libc::c_int) -> std::io::Result<()> {
    // SAFETY: membarrier takes a command and two integer flags; no memory
    // is passed.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED (linux/membarrier.h).
fn register() -> std::io::Result<()> {
    membarrier(1 << 2)
}

/// Microseconds per MEMBARRIER_CMD_GLOBAL_EXPEDITED (1 << 1).
fn barrier_us() -> std::io::Result<f64> {
    let start = Instant::now();
    for _ in 0..BARRIERS {
        membarrier(1 << 1)?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / f64::from(BARRIERS))
}

/// Pins the calling thread to `cpu` (best effort: a machine with one CPU
/// runs both where it can).
fn pin(cpu: usize) {
    // SAFETY: `set` is a zeroed cpu_set_t owned by this frame; CPU_SET and
    // sched_setaffinity only read and write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn stop(peer: &mut Process) {
    let _ = peer.kill();
    let _ = peer.join();
}
