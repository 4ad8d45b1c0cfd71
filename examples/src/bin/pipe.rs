//! Python's `multiprocessing.Pipe` with shmring, between real processes.
//!
//! ```text
//! cargo run --release -p shmring-examples --bin pipe
//! ```
//!
//! 1. A duplex ping-pong: the parent sends numbers, a child answers each
//!    with its double, until the parent closes its end.
//! 2. A simplex pipe (`duplex = false`: the first end reads, the second
//!    writes): a child writes a few messages and returns; the parent reads
//!    them and then sees end of file, because the child's end was closed
//!    when the child exited.
//! 3. The same, but the writer is killed (SIGKILL) instead of exiting: the
//!    parent still reads what was sent, then end of file, within the
//!    100 ms liveness period.
//!
//! Each child is this same executable running an entry point
//! ([`run_child`]); the pipe end is its argument and travels by
//! inheritance ([`Process::spawn`]), which *transfers* it: the parent may drop its copy at once without signalling
//! end of file, like Python's `child_conn.close()` after `start()`.

use std::error::Error;
use std::time::{Duration, Instant};

use shmring::pipe::{Connection, Pipe, RecvError};
use shmring::process::{run_child, Entry, EntryResult, Process};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const ROUNDS: u64 = 10_000;

/// Child of part 1: doubles every number until end of file.
fn doubler((mut conn,): (Connection,)) -> EntryResult {
    loop {
        match conn.recv::<u64>() {
            Ok(n) => conn.send(&(2 * n))?,
            Err(RecvError::Eof) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Child of part 2: writes three lines and returns; dropping the end (at
/// the latest when the process exits) is end of file for the reader.
static DOUBLER: Entry<(Connection,)> = shmring::entry!(doubler);

fn writer((mut conn,): (Connection,)) -> EntryResult {
    for i in 0..3 {
        conn.send(&format!("line {i} from child {}", std::process::id()))?;
    }
    Ok(())
}

/// Child of part 3: writes three lines, then hangs until killed.
static WRITER: Entry<(Connection,)> = shmring::entry!(writer);

fn writer_then_hang((mut conn,): (Connection,)) -> EntryResult {
    for i in 0..3 {
        conn.send(&format!("line {i} before being killed"))?;
    }
    std::thread::sleep(Duration::from_secs(60));
    Err("was not killed".into())
}

static WRITER_THEN_HANG: Entry<(Connection,)> = shmring::entry!(writer_then_hang);

fn check(ok: bool, what: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}").into())
    }
}

fn ping_pong() -> Result<()> {
    let (mut parent, child_end) = Pipe::new(true)?;
    let mut child = Process::spawn(&DOUBLER, (&child_end,))?;
    drop(child_end); // transferred: dropping it signals nothing
    let start = Instant::now();
    for n in 0..ROUNDS {
        parent.send(&n)?;
        let answer: u64 = parent.recv()?;
        check(answer == 2 * n, "the child doubles")?;
    }
    let elapsed = start.elapsed();
    parent.close(); // end of file for the child, which then exits
    let status = child.join_timeout(Duration::from_secs(5));
    check(status.is_ok_and(|s| s.success()), "doubler exits cleanly")?;
    println!(
        "1. duplex ping-pong: {ROUNDS} round trips in {elapsed:.2?} ({:.1} µs each); child exited after our close",
        elapsed.as_secs_f64() * 1e6 / ROUNDS as f64
    );
    Ok(())
}

/// Reads every line until end of file; returns them and how long the end
/// of file took to arrive after the last line.
fn read_until_eof(reader: &mut Connection) -> Result<(Vec<String>, Duration)> {
    let mut lines = Vec::new();
    let mut last = Instant::now();
    loop {
        match reader.recv::<String>() {
            Ok(line) => {
                println!("   parent got: {line:?}");
                lines.push(line);
                last = Instant::now();
            }
            Err(RecvError::Eof) => return Ok((lines, last.elapsed())),
            Err(e) => return Err(e.into()),
        }
    }
}

fn simplex_until_writer_exits() -> Result<()> {
    println!("2. simplex pipe, the child writes and exits:");
    let (mut reader, writer_end) = Pipe::new(false)?;
    check(
        reader.readable() && !reader.writable(),
        "first end reads only",
    )?;
    check(
        !writer_end.readable() && writer_end.writable(),
        "second end writes only",
    )?;
    let mut child = Process::spawn(&WRITER, (&writer_end,))?;
    drop(writer_end);
    let (lines, _) = read_until_eof(&mut reader)?;
    check(lines.len() == 3, "three lines before end of file")?;
    check(reader.poll()?, "poll is true at end of file")?;
    let status = child.join_timeout(Duration::from_secs(5));
    check(status.is_ok_and(|s| s.success()), "writer exits cleanly")?;
    println!("   then end of file: the writer exited");
    Ok(())
}

fn simplex_until_writer_killed() -> Result<()> {
    println!("3. simplex pipe, the writer is killed:");
    let (mut reader, writer_end) = Pipe::new(false)?;
    let mut child = Process::spawn(&WRITER_THEN_HANG, (&writer_end,))?;
    drop(writer_end);
    for _ in 0..3 {
        let line: String = reader.recv()?;
        println!("   parent got: {line:?}");
    }
    child.kill()?; // not reaped yet: a zombie still counts as dead
    let killed = Instant::now();
    let eof = reader.recv::<String>();
    let took = killed.elapsed();
    check(eof == Err(RecvError::Eof), "end of file after the kill")?;
    check(took < Duration::from_secs(1), "end of file within a second")?;
    child.join_timeout(Duration::from_secs(5))?;
    check(
        child.exitcode() == Some(-libc::SIGKILL),
        "killed by SIGKILL",
    )?;
    println!("   then end of file {took:.2?} after SIGKILL");
    Ok(())
}

fn main() {
    run_child(&[&DOUBLER, &WRITER, &WRITER_THEN_HANG]);
    let result = ping_pong()
        .and_then(|()| simplex_until_writer_exits())
        .and_then(|()| simplex_until_writer_killed());
    match result {
        Ok(()) => println!("all pipe checks passed"),
        Err(e) => {
            eprintln!("pipe example failed: {e}");
            std::process::exit(1);
        }
    }
}
