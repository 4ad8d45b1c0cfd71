//! A small tokio service (issue 14's example): requests arrive on a
//! shmring queue from plain sync client processes, and each answer goes
//! back over that client's pipe. The service never blocks a runtime
//! thread: it awaits the queue and the pipes (see `shmring::aio`).
//!
//! ```text
//! cargo run --release -p shmring-examples --bin async_service
//! ```
//!
//! Each client puts `REQUESTS` numbers tagged with its id and checks that
//! every answer (the square) comes back in order; the service exits
//! non-zero unless every client did.

use std::time::Duration;

use shmring::aio::{AsyncConnection, AsyncQueue};
use shmring::pipe::{Connection, Pipe};
use shmring::process::{run_child, Entry, EntryResult, Process};
use shmring::queue::Queue;

const CLIENTS: u64 = 3;
const REQUESTS: u64 = 2_000;

/// A request: the client's id in the high half, the number in the low.
fn request(client: u64, n: u64) -> u64 {
    client << 32 | n
}

/// A sync client: one request at a time, each answer awaited on its pipe.
fn client((requests, mut answers, id): (Queue<u64>, Connection, u64)) -> EntryResult {
    for n in 0..REQUESTS {
        requests.put(request(id, n))?;
        let answer = answers.recv_timeout::<u64>(Duration::from_secs(20))?;
        if answer != n * n {
            return Err(format!("client {id}: {n}² answered as {answer}").into());
        }
    }
    println!("client {id}: {REQUESTS} answers, all right");
    Ok(())
}
static CLIENT: Entry<(Queue<u64>, Connection, u64)> = shmring::entry!(client);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A client child runs its entry point here, before any runtime starts.
    run_child(&[&CLIENT]);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve())
}

/// The service: one task, awaiting the queue and the pipes.
async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let requests = Queue::<u64>::new(0)?;
    let mut pipes = Vec::new();
    let mut clients = Vec::new();
    for id in 0..CLIENTS {
        // Simplex: the client reads (first end), the service writes.
        let (theirs, ours) = Pipe::new(false)?;
        clients.push(Process::spawn(&CLIENT, (&requests, &theirs, id))?);
        pipes.push(AsyncConnection::new(ours));
    }
    let requests = AsyncQueue::new(requests);
    for _ in 0..CLIENTS * REQUESTS {
        let r = tokio::time::timeout(Duration::from_secs(30), requests.get()).await??;
        let (id, n) = (r >> 32, r & 0xffff_ffff);
        let pipe = pipes
            .get_mut(usize::try_from(id)?)
            .ok_or_else(|| format!("a request from unknown client {id}"))?;
        pipe.send(&(n * n)).await?;
    }
    let mut ok = true;
    for client in &mut clients {
        ok &= client.join_timeout(Duration::from_secs(30))?.success();
    }
    if !ok {
        eprintln!("FAILED: a client did not get its answers");
        std::process::exit(1);
    }
    println!(
        "service: answered {} requests from {CLIENTS} sync processes",
        CLIENTS * REQUESTS
    );
    Ok(())
}
