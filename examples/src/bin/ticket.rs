//! Seed 001's ticket race: five buyers, one ticket, a shared "database".
//!
//! The seed keeps `{"count": 1}` in a JSON file; here it is a shared
//! [`Dict`]. Each buyer looks at the count, waits a little (the seed's
//! "network delay"), and if a ticket is left writes `count - 1` and counts
//! itself as a buyer.
//!
//! 1. **No lock**: every buyer reads 1 before anyone writes 0, so several
//!    "buy" the one ticket (how many depends on scheduling; not an error
//!    here, it is the point).
//! 2. **With a `Lock`** around read–wait–write (the seed's `with lock:`):
//!    exactly one buyer succeeds.
//! 3. **With `Dict::update_with`**: the read-modify-write is one atomic
//!    operation; again exactly one succeeds.
//!
//! ```text
//! cargo run --release -p shmring-examples --bin ticket
//! ```
//!
//! Exits non-zero if a locked round sells the ticket to anyone but exactly
//! one buyer.

use std::time::{Duration, Instant};

use shmring::dict::Dict;
use shmring::lock::Lock;
use shmring::process::{run_child, Entry, EntryResult, Process};

/// The shared database: "count" (tickets left) and "sold" (successful
/// buyers, counted atomically so the count itself never races).
type Db = Dict<String, i64>;

const BUYERS: usize = 5;
const DELAY: Duration = Duration::from_millis(100);

fn key(k: &str) -> String {
    k.to_string()
}

/// What every buyer gets: the database, the lock (only the locked buyer
/// takes it) and its name.
type Buyer = (Db, Lock, String);

/// The seed's `search`: print what is left.
fn search(db: &Db, who: &str) -> Result<(), Box<dyn std::error::Error>> {
    let count = db.get(&key("count"))?.unwrap_or(0);
    println!("  <{who}> sees {count} ticket(s) left");
    Ok(())
}

/// The seed's `get`: read, wait, write back `count - 1`.
fn buy(db: &Db, who: &str) -> Result<(), Box<dyn std::error::Error>> {
    let count = db.get(&key("count"))?.unwrap_or(0);
    if count > 0 {
        std::thread::sleep(DELAY); // the "network delay" between read and write
        db.insert(&key("count"), &(count - 1))?;
        db.update_with(&key("sold"), |n| Some(n.unwrap_or(0) + 1))?;
        println!("  <{who}> bought a ticket");
    }
    Ok(())
}

fn unlocked_buyer((db, _lock, who): Buyer) -> EntryResult {
    search(&db, &who)?;
    std::thread::sleep(DELAY);
    buy(&db, &who)
}

static UNLOCKED: Entry<Buyer> = shmring::entry!(unlocked_buyer);

fn locked_buyer((db, lock, who): Buyer) -> EntryResult {
    search(&db, &who)?;
    std::thread::sleep(DELAY);
    let guard = lock.acquire()?; // the seed's `with lock:`
    if guard.owner_died() {
        println!("  <{who}> took over the lock of a buyer that died");
    }
    buy(&db, &who)
}

static LOCKED: Entry<Buyer> = shmring::entry!(locked_buyer);

fn atomic_buyer((db, _lock, who): Buyer) -> EntryResult {
    search(&db, &who)?;
    std::thread::sleep(DELAY);
    let mut bought = false;
    db.update_with(&key("count"), |count| match count {
        Some(n) if n > 0 => {
            bought = true;
            Some(n - 1)
        }
        other => other,
    })?;
    if bought {
        db.update_with(&key("sold"), |n| Some(n.unwrap_or(0) + 1))?;
        println!("  <{who}> bought a ticket");
    }
    Ok(())
}

static ATOMIC: Entry<Buyer> = shmring::entry!(atomic_buyer);

/// Runs one round: one ticket, `BUYERS` children running `entry`. Returns
/// how many bought it.
fn round(
    title: &str,
    entry: &Entry<Buyer>,
    db: &Db,
    lock: &Lock,
) -> Result<i64, Box<dyn std::error::Error>> {
    println!("{title}");
    db.insert(&key("count"), &1)?;
    db.insert(&key("sold"), &0)?;
    let mut buyers = Vec::new();
    for i in 0..BUYERS {
        let p = Process::new(entry, (db, lock, format!("buyer {i}"))).daemon(true);
        buyers.push(p.start()?);
    }
    for b in &mut buyers {
        let status = b.join_timeout(Duration::from_secs(8));
        if !status.as_ref().is_ok_and(|s| s.success()) {
            return Err(format!("{} failed: {status:?}", b.name()).into());
        }
    }
    let sold = db.get(&key("sold"))?.unwrap_or(0);
    let left = db.get(&key("count"))?.unwrap_or(0);
    println!("  => {sold} buyer(s) got the single ticket; the database says {left} left\n");
    Ok(sold)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    run_child(&[&UNLOCKED, &LOCKED, &ATOMIC]);
    let start = Instant::now();
    let db: Db = Dict::builder()
        .capacity(8)
        .max_key(16)
        .max_value(8)
        .anonymous()?;
    let lock = Lock::new()?;

    let racy = round("1. no lock: read, wait, write", &UNLOCKED, &db, &lock)?;
    if racy > 1 {
        println!("   (the race the seed shows: one ticket sold {racy} times)\n");
    }
    let locked = round("2. with a Lock around read-wait-write", &LOCKED, &db, &lock)?;
    let atomic = round("3. with Dict::update_with", &ATOMIC, &db, &lock)?;

    println!("done in {:.2?}", start.elapsed());
    if locked != 1 || atomic != 1 {
        eprintln!("FAILED: expected exactly one buyer with the lock, got {locked} and {atomic}");
        std::process::exit(1);
    }
    Ok(())
}
