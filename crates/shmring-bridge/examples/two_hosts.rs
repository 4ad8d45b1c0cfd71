//! Three "hosts" on one machine, bridged through NATS JetStream:
//!
//! ```text
//!  host A: 2 producer threads -> queue A -> BridgeOut --+
//!                                                       v
//!                                 JetStream stream TWO_HOSTS (work queue),
//!                                 durable consumer "hosts", shared
//!                                       |                    |
//!  host B: BridgeIn -> queue B -> consumer thread            |
//!  host C: BridgeIn -> queue C -> consumer thread  <---------+
//! ```
//!
//! Each host has its own local queue (its own shared-memory segment); on
//! real hosts each block would be its own machine and the bridges would be
//! `shmring bridge out ...` / `shmring bridge in ...` processes. Here the
//! three bridges run in this process, on one tokio runtime, through the
//! library ([`BridgeOut::run`], [`BridgeIn::run`], one [`Shutdown`]).
//!
//! ```text
//! cargo run --release -p shmring-bridge --example two_hosts [NATS_URL]
//! ```
//!
//! Without `NATS_URL` it starts its own `nats-server -js` (Debian:
//! `apt-get install nats-server`) on a free loopback port with a temporary
//! store, and stops it at the end. Checks its own result: every message
//! consumed exactly once across B and C, each producer's messages in order
//! within a host, or exit status 1.

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmring::queue::{GetTimeoutError, Queue};
use shmring_bridge::{
    BridgeIn, BridgeOut, InConfig, NatsOptions, OutConfig, Shutdown, StreamSettings,
};

const PRODUCERS: u64 = 2;
const EACH: u64 = 5_000;

type Failure = Box<dyn std::error::Error>;

/// A `nats-server -js` of our own, killed on drop.
struct Server {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_server() -> Result<(Server, String), Failure> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = std::env::temp_dir().join(format!("two-hosts-nats-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let binary = ["nats-server", "/usr/sbin/nats-server"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .ok_or("nats-server not found: apt-get install nats-server, or pass a NATS URL")?;
    let child = Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let server = Server { child, dir };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err("nats-server did not start within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("started nats-server -js on port {port}");
    Ok((server, format!("nats://127.0.0.1:{port}")))
}

fn host_queue(host: &str) -> Result<(String, Queue<String>), Failure> {
    let name = format!("/two-hosts-{host}-{}", std::process::id());
    let q = Queue::<String>::builder()
        .producers(4)
        .ring_bytes(1 << 16)
        .max_message(1024)
        .create(&name)?;
    Ok((name, q))
}

fn main() -> Result<(), Failure> {
    let (_server, url) = match std::env::args().nth(1) {
        Some(url) => (None, url),
        None => {
            let (s, url) = start_server()?;
            (Some(s), url)
        }
    };
    // Each host's queue, created by its host (kept open to the end).
    let (a_name, _a) = host_queue("a")?;
    let (b_name, _b) = host_queue("b")?;
    let (c_name, _c) = host_queue("c")?;

    // Host A's bridge creates the stream (work-queue retention); B's and
    // C's share one durable consumer, so each message goes to one host.
    let mut out = OutConfig::new(&a_name, NatsOptions::new(&url), "two_hosts.jobs");
    out.create_stream = Some(StreamSettings::new(
        "TWO_HOSTS",
        vec!["two_hosts.jobs".into()],
    ));
    let out = BridgeOut::new(out)?;
    let inbound = |queue: &str| {
        let mut config = InConfig::new(NatsOptions::new(&url), "TWO_HOSTS", "hosts", queue);
        config.create_stream = Some(StreamSettings::new(
            "TWO_HOSTS",
            vec!["two_hosts.jobs".into()],
        ));
        BridgeIn::new(config)
    };
    let (in_b, in_c) = (inbound(&b_name)?, inbound(&c_name)?);
    let counters = [out.counters(), in_b.counters(), in_c.counters()];

    let shutdown = Shutdown::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let bridges = [
        runtime.spawn(out.run(shutdown.clone())),
        runtime.spawn(in_b.run(shutdown.clone())),
        runtime.spawn(in_c.run(shutdown.clone())),
    ];

    // Host A's producers, and B's and C's consumers: the plain Queue API.
    let started = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            // Each producer opens host A's queue by name, as a producer
            // process of that host would.
            let a = Queue::<String>::open(&a_name).expect("open queue A");
            std::thread::spawn(move || {
                for i in 0..EACH {
                    a.put(format!("{p} {i}")).expect("put on host A");
                }
            })
        })
        .collect();
    let consumed = Arc::new(AtomicU64::new(0));
    let total = PRODUCERS * EACH;
    let consumers: Vec<_> = [&b_name, &c_name]
        .into_iter()
        .map(|name| {
            let q = Queue::<String>::open(name).expect("open a host's queue");
            let consumed = consumed.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                // ORDERING: Relaxed — a count to stop at; each thread's
                // messages come back through `join`.
                while consumed.load(Ordering::Relaxed) < total {
                    match q.get_timeout(Duration::from_millis(100)) {
                        Ok(m) => {
                            got.push(m);
                            // ORDERING: Relaxed — see the load.
                            consumed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(GetTimeoutError::Timeout) => {}
                        Err(e) => panic!("get: {e}"),
                    }
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().expect("producer");
    }
    let per_host: Vec<Vec<String>> = consumers
        .into_iter()
        .map(|c| c.join().expect("consumer"))
        .collect();
    let elapsed = started.elapsed();
    shutdown.trigger();
    for bridge in bridges {
        runtime.block_on(bridge)??;
    }

    // Exactly once across the hosts, in order per producer within a host.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (host, msgs) in per_host.iter().enumerate() {
        let mut last: HashMap<&str, u64> = HashMap::new();
        for m in msgs {
            *seen.entry(m.clone()).or_default() += 1;
            let (p, i) = m.split_once(' ').ok_or("a malformed message")?;
            let i: u64 = i.parse()?;
            if last.insert(p, i).is_some_and(|prev| prev >= i) {
                return Err(format!("host {host}: producer {p}'s {i} out of order").into());
            }
        }
    }
    let once = seen.values().filter(|&&n| n == 1).count() as u64;
    println!(
        "{total} messages in {elapsed:.2?}: host B got {}, host C got {}; {once} exactly once",
        per_host[0].len(),
        per_host[1].len()
    );
    for (who, c) in ["out (A)", "in (B)", "in (C)"].iter().zip(&counters) {
        println!("bridge {who}: {}", c.snapshot());
    }
    if once != total || seen.len() as u64 != total {
        return Err("some message was lost or duplicated".into());
    }
    Ok(())
}
