//! The bridge end to end, with a real `nats-server -js` (never a mock) and
//! real processes: producers, consumers and bridges are children (this
//! test binary re-executed with an entry point, or the `shmring-bridge`
//! binary itself); the test process plays the "hosts" around them.
//!
//! Without `nats-server` the tests print a loud SKIP and pass, except under
//! `CI`, where they fail (CI installs it: `.ci/run`).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use shmring::process::EntryResult;
use shmring::queue::{GetError, Queue};
use shmring_bridge::{
    BridgeIn, BridgeOut, Error, InConfig, NatsOptions, OutConfig, Shutdown, StreamSettings,
};
use shmring_testkit::{child, run_child, signal, unique_name, wait_child, Watchdog};

#[path = "support/nats.rs"]
mod nats;
use nats::NatsServer;

// ---------------------------------------------------------------- messages

/// Message `seq` of producer `who`: both numbers, then `len - 8` filler
/// bytes derived from them (a torn or mixed-up message fails `check`).
fn message(who: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut m = who.to_le_bytes().to_vec();
    m.extend_from_slice(&seq.to_le_bytes());
    let fill = who.wrapping_mul(131).wrapping_add(seq) as u8;
    m.resize(len.max(8), fill);
    m
}

/// `(who, seq)` of a message, checking its filler.
fn check(m: &[u8]) -> (u32, u32) {
    assert!(m.len() >= 8, "short message {m:?}");
    let who = u32::from_le_bytes(m[..4].try_into().unwrap());
    let seq = u32::from_le_bytes(m[4..8].try_into().unwrap());
    assert_eq!(m, message(who, seq, m.len()), "message {who}/{seq} damaged");
    (who, seq)
}

/// The length of message `seq`: 8 to about 300 bytes.
fn len_of(seq: u32) -> usize {
    8 + (seq as usize * 37) % 293
}

fn queue(prefix: &str, maxsize: u64) -> (String, Queue<Vec<u8>>) {
    let name = unique_name(prefix);
    let q = Queue::<Vec<u8>>::builder()
        .maxsize(maxsize)
        .producers(8)
        .ring_bytes(64 * 1024)
        .max_message(4096)
        .create(&name)
        .expect("create the queue");
    (name, q)
}

// ---------------------------------------------------------------- children

/// Puts `n` messages of producer `who` into queue `name`.
fn producer((name, who, n): (String, u32, u32)) -> EntryResult {
    let q = Queue::<Vec<u8>>::open(&name)?;
    for seq in 0..n {
        q.put(message(who, seq, len_of(seq)))?;
    }
    Ok(())
}
static PRODUCER: shmring::process::Entry<(String, u32, u32)> = shmring::entry!(producer);

/// Gets from queue `name` until it is shut down and drained, printing
/// `GOT who seq` for each message, in order.
fn consumer((name,): (String,)) -> EntryResult {
    use std::io::Write;
    let q = Queue::<Vec<u8>>::open(&name)?;
    let out = std::io::stdout();
    loop {
        match q.get() {
            Ok(m) => {
                let (who, seq) = check(&m);
                let mut out = out.lock();
                writeln!(out, "GOT {who} {seq}")?;
                out.flush()?;
            }
            Err(GetError::ShutDown) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}
static CONSUMER: shmring::process::Entry<(String,)> = shmring::entry!(consumer);

/// The outbound bridge (the library, on a runtime of its own) from queue
/// `name` into `subject`, creating stream `stream`; runs until the queue
/// is shut down and drained.
fn bridge_out(
    (name, url, subject, stream, batch): (String, String, String, String, u64),
) -> EntryResult {
    let mut config = OutConfig::new(name, NatsOptions::new(url), subject.clone());
    config.create_stream = Some(StreamSettings::new(stream, vec![subject]));
    config.batch = batch as usize;
    BridgeOut::new(config)?.run_blocking(Shutdown::new())?;
    Ok(())
}
static BRIDGE_OUT: shmring::process::Entry<(String, String, String, String, u64)> =
    shmring::entry!(bridge_out);

#[test]
fn child_entry() {
    run_child(&[&PRODUCER, &CONSUMER, &BRIDGE_OUT]);
}

/// Children killed (SIGKILL) and reaped when the test ends, however.
#[derive(Default)]
struct Kids(Vec<Child>);

impl Kids {
    fn add(&mut self, c: Child) -> u32 {
        let pid = c.id();
        self.0.push(c);
        pid
    }

    /// Takes child `pid` out (to wait for it).
    fn take(&mut self, pid: u32) -> Child {
        let i = self
            .0
            .iter()
            .position(|c| c.id() == pid)
            .expect("a child of ours");
        self.0.swap_remove(i)
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_entry<A: shmring::process::Args>(
    entry: &shmring::process::Entry<A>,
    args: impl shmring::process::IntoArgs<A>,
    stdout: Stdio,
) -> Child {
    child("child_entry", entry, args)
        .into_command()
        .expect("hand the child its arguments")
        .stdout(stdout)
        .spawn()
        .expect("spawn the child")
}

/// A consumer child on queue `name` whose `GOT` lines go to `tx` tagged
/// with `host`.
fn spawn_consumer(
    kids: &mut Kids,
    name: &str,
    host: usize,
    tx: mpsc::Sender<(usize, u32, u32)>,
) -> u32 {
    let mut c = spawn_entry(&CONSUMER, (name.to_owned(),), Stdio::piped());
    let stdout = c.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The harness's own lines are skipped; its "test child_entry
            // ... " (no newline) comes before the first GOT of the line.
            let Some(at) = line.find("GOT ") else {
                continue;
            };
            let mut words = line[at..].split(' ');
            words.next();
            let who = words.next().and_then(|w| w.parse().ok()).expect("who");
            let seq = words.next().and_then(|w| w.parse().ok()).expect("seq");
            if tx.send((host, who, seq)).is_err() {
                return;
            }
        }
    });
    kids.add(c)
}

fn bridge_binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmring-bridge"))
}

/// Waits until `cond` holds, polling every 10 ms; panics after `limit`.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sorted `(who, seq)` pairs expected from `producers` producers of `n`.
fn expected(producers: u32, n: u32) -> Vec<(u32, u32)> {
    (0..producers)
        .flat_map(|w| (0..n).map(move |s| (w, s)))
        .collect()
}

// ---------------------------------------------------------------- tests

/// Host A: three producer processes → queue A → `shmring-bridge out` →
/// JetStream (a work-queue stream the bridge creates) → `shmring-bridge
/// in` on hosts B and C (one durable consumer shared) → queues B and C →
/// a consumer process each. Every message is consumed exactly once across
/// B and C, and within each host each producer's messages come in order.
/// Then the bridges stop: `out` by itself once queue A is shut down and
/// drained, the `in`s on SIGTERM, each with exit code 0.
#[test]
fn two_hosts_consume_every_message_once_in_order_per_producer() {
    let Some(server) = NatsServer::start("two_hosts", None) else {
        return;
    };
    let _watchdog = Watchdog::new(Duration::from_secs(240), "two hosts");
    const PRODUCERS: u32 = 3;
    const N: u32 = 2000;
    let (a_name, a) = queue("br-a", 0);
    let (b_name, b) = queue("br-b", 0);
    let (c_name, c) = queue("br-c", 0);
    let mut kids = Kids::default();
    let out = kids.add(
        bridge_binary()
            .args(["out", "--queue", &a_name, "--nats", &server.url])
            .args([
                "--subject",
                "work.jobs",
                "--stream",
                "WORK",
                "--create-stream",
            ])
            .args(["--batch", "64", "--stats", "0"])
            .spawn()
            .expect("start bridge out"),
    );
    let ins: Vec<u32> = [&b_name, &c_name]
        .into_iter()
        .map(|q| {
            kids.add(
                bridge_binary()
                    .args(["in", "--nats", &server.url, "--stream", "WORK"])
                    .args(["--consumer", "hosts", "--queue", q])
                    .args(["--create-stream", "--subject", "work.jobs"])
                    .args(["--batch", "50", "--stats", "0"])
                    .spawn()
                    .expect("start bridge in"),
            )
        })
        .collect();
    let (tx, rx) = mpsc::channel();
    let consumers = [
        spawn_consumer(&mut kids, &b_name, 0, tx.clone()),
        spawn_consumer(&mut kids, &c_name, 1, tx),
    ];
    let producers: Vec<u32> = (0..PRODUCERS)
        .map(|who| {
            kids.add(spawn_entry(
                &PRODUCER,
                (a_name.clone(), who, N),
                Stdio::null(),
            ))
        })
        .collect();
    for p in producers {
        assert!(wait_child(kids.take(p), Duration::from_secs(120)).success());
    }
    let total = (PRODUCERS * N) as usize;
    let mut got: Vec<(usize, u32, u32)> = Vec::with_capacity(total);
    let start = Instant::now();
    while got.len() < total {
        let left = Duration::from_secs(150).saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(m) => got.push(m),
            Err(_) => panic!(
                "only {} of {total} messages arrived (queue A holds {}, B {}, C {}):\n{}",
                got.len(),
                a.len(),
                b.len(),
                c.len(),
                server.log()
            ),
        }
    }
    // Nothing more comes: no duplicate on the way.
    std::thread::sleep(Duration::from_millis(500));
    got.extend(rx.try_iter());
    a.shutdown();
    assert!(
        wait_child(kids.take(out), Duration::from_secs(30)).success(),
        "bridge out exit"
    );
    for pid in ins {
        signal(pid, libc::SIGTERM);
        assert!(
            wait_child(kids.take(pid), Duration::from_secs(30)).success(),
            "bridge in exit"
        );
    }
    b.shutdown();
    c.shutdown();
    for pid in consumers {
        assert!(wait_child(kids.take(pid), Duration::from_secs(30)).success());
    }
    got.extend(rx.try_iter());
    for host in 0..2 {
        let mut last: HashMap<u32, u32> = HashMap::new();
        for &(_, who, seq) in got.iter().filter(|g| g.0 == host) {
            if let Some(&prev) = last.get(&who) {
                assert!(
                    seq > prev,
                    "host {host}, producer {who}: {seq} after {prev}"
                );
            }
            last.insert(who, seq);
        }
    }
    let per_host: Vec<usize> = (0..2)
        .map(|h| got.iter().filter(|g| g.0 == h).count())
        .collect();
    eprintln!("messages per host: {per_host:?}");
    let mut all: Vec<(u32, u32)> = got.iter().map(|&(_, w, s)| (w, s)).collect();
    all.sort_unstable();
    assert_eq!(all, expected(PRODUCERS, N), "each message exactly once");
    assert!(a.is_empty() && b.is_empty() && c.is_empty());
}

/// The outbound bridge is started before the server (it retries until it
/// comes up), then SIGKILLed three times mid-run (while it has messages
/// published and not yet acknowledged or committed) and started again each
/// time. Nothing is lost, nothing arrives twice (the inbound bridge never
/// dies, so it redelivers nothing), and the stream stored each message
/// once: every re-publish of a message a killed bridge had published was
/// dropped by its `Nats-Msg-Id`.
#[test]
fn outbound_bridge_sigkilled_mid_run_loses_nothing_and_duplicates_nothing() {
    let Some(_) = nats::binary_or_skip("outbound_bridge_sigkilled") else {
        return;
    };
    let _watchdog = Watchdog::new(Duration::from_secs(300), "outbound crash");
    const N: u32 = 10_000;
    let port = nats::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let (a_name, a) = queue("br-crash-a", 0);
    let (b_name, b) = queue("br-crash-b", 0);
    let mut kids = Kids::default();
    let out_args = || {
        (
            a_name.clone(),
            url.clone(),
            "crash.jobs".to_owned(),
            "CRASH".to_owned(),
            64u64,
        )
    };
    // NATS is not there yet: the bridge retries.
    let mut out = kids.add(spawn_entry(&BRIDGE_OUT, out_args(), Stdio::null()));
    let producer = kids.add(spawn_entry(
        &PRODUCER,
        (a_name.clone(), 7, N),
        Stdio::null(),
    ));
    std::thread::sleep(Duration::from_millis(700));
    let server = NatsServer::start_on(port, None);

    // Host B: the inbound bridge in this process, and a consumer thread.
    let shutdown = Shutdown::new();
    let mut in_config = InConfig::new(NatsOptions::new(&url), "CRASH", "b", b_name.clone());
    in_config.create_stream = Some(StreamSettings::new("CRASH", vec!["crash.jobs".into()]));
    let inbound = BridgeIn::new(in_config).expect("bridge in");
    let in_counters = inbound.counters();
    let in_thread = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || inbound.run_blocking(shutdown))
    };
    let received = Arc::new(AtomicUsize::new(0));
    let reader = {
        let received = received.clone();
        let b = Queue::<Vec<u8>>::open(&b_name).expect("open B");
        std::thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                match b.get() {
                    Ok(m) => {
                        got.push(check(&m));
                        // ORDERING: Relaxed — a progress count for the
                        // kill points; the messages go back by `join`.
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(GetError::ShutDown) => return got,
                    Err(e) => panic!("{e}"),
                }
            }
        })
    };
    for k in 1..=3 {
        let at = N as usize * k / 5;
        // ORDERING: Relaxed — see the reader.
        wait_for(Duration::from_secs(120), "progress", || {
            received.load(Ordering::Relaxed) >= at
        });
        signal(out, libc::SIGKILL);
        let status = wait_child(kids.take(out), Duration::from_secs(30));
        assert!(!status.success(), "killed");
        out = kids.add(spawn_entry(&BRIDGE_OUT, out_args(), Stdio::null()));
    }
    assert!(wait_child(kids.take(producer), Duration::from_secs(120)).success());
    a.shutdown();
    assert!(
        wait_child(kids.take(out), Duration::from_secs(120)).success(),
        "the last bridge drains queue A and exits"
    );
    // ORDERING: Relaxed — see the reader.
    wait_for(Duration::from_secs(120), "every message at B", || {
        received.load(Ordering::Relaxed) >= N as usize
    });
    std::thread::sleep(Duration::from_millis(500));
    shutdown.trigger();
    in_thread.join().unwrap().expect("bridge in stops cleanly");
    b.shutdown();
    let mut got = reader.join().unwrap();
    let counters = in_counters.snapshot();
    eprintln!("bridge in: {counters}");
    let unique: HashSet<(u32, u32)> = got.iter().copied().collect();
    let duplicates = got.len() - unique.len();
    assert_eq!(duplicates as u64, 0, "no duplicate without a redelivery");
    assert_eq!(counters.redelivered, 0);
    got.sort_unstable();
    assert_eq!(
        got,
        expected(1, N)
            .into_iter()
            .map(|(_, s)| (7, s))
            .collect::<Vec<_>>()
    );
    assert!(a.is_empty() && b.is_empty());
    // The stream stored each message once: its last sequence is N.
    let last = stream_last_sequence(&server.url, "CRASH");
    assert_eq!(
        last,
        u64::from(N),
        "re-published messages were deduplicated"
    );
    // Each bridge killed mid-run left its stats record whole, marked by
    // nothing but a free lock: read as dead, then removed as gc would.
    assert_eq!(remove_dead_records(&[&a_name]), 3, "one per SIGKILL");
}

/// Checks that the stats records left in `/dev/shm` by the bridges of
/// `queues` are all valid records of dead bridges (a bridge SIGKILLed in
/// the middle of a counter update leaves a whole record), removes them as
/// `shmring gc` would, and returns how many.
fn remove_dead_records(queues: &[&str]) -> usize {
    use shmring_bridge::stats;
    let mut removed = 0;
    for q in queues {
        let (records, errors) = stats::records_of(q);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(
            records.iter().all(|r| r.liveness == stats::Liveness::Dead),
            "{records:?}"
        );
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let (dead, errors) = stats::dead(uid, Some(&[q.to_string()]));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(dead.len(), records.len());
        for c in &dead {
            assert_eq!(stats::remove_if_dead(c).unwrap(), stats::Removal::Removed);
        }
        removed += dead.len();
    }
    removed
}

/// The stream's state, for a failure's message.
fn stream_state(url: &str, stream: &str) -> String {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let client = async_nats::connect(url).await.expect("connect");
            let js = async_nats::jetstream::new(client);
            let mut s = js.get_stream(stream).await.expect("stream");
            let state = format!("{:?}", s.info().await.expect("stream info").state);
            // The durable consumers' delivery state too: what a stall
            // after a server restart needs to be told apart.
            let mut consumers = Vec::new();
            let names: Vec<String> = {
                use futures_util::StreamExt;
                s.consumer_names()
                    .filter_map(|n| async { n.ok() })
                    .collect()
                    .await
            };
            for name in names {
                let consumer: Result<
                    async_nats::jetstream::consumer::Consumer<
                        async_nats::jetstream::consumer::pull::Config,
                    >,
                    _,
                > = s.get_consumer(&name).await;
                if let Ok(mut c) = consumer {
                    if let Ok(info) = c.info().await {
                        consumers.push(format!(
                            "{name}: delivered {:?}, ack floor {:?}, pending {}, ack pending {}, \
                             redelivered {}, waiting {}",
                            info.delivered,
                            info.ack_floor,
                            info.num_pending,
                            info.num_ack_pending,
                            info.num_redelivered,
                            info.num_waiting
                        ));
                    }
                }
            }
            format!("{state}; consumers: {}", consumers.join("; "))
        })
}

/// The stream's last sequence number (how many messages it ever stored).
fn stream_last_sequence(url: &str, stream: &str) -> u64 {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let client = async_nats::connect(url).await.expect("connect");
            let js = async_nats::jetstream::new(client);
            let mut s = js.get_stream(stream).await.expect("stream");
            s.info().await.expect("stream info").state.last_sequence
        })
}

/// A message larger than the server's `max_payload` stops the outbound
/// bridge with `Error::Oversize`, and stays in the queue, behind the
/// messages before it (published and taken) and before the one after it.
#[test]
fn oversize_message_stops_the_bridge_and_stays_queued() {
    let Some(server) = NatsServer::start("oversize", Some(1024)) else {
        return;
    };
    let _watchdog = Watchdog::new(Duration::from_secs(120), "oversize");
    let (a_name, a) = queue("br-big", 0);
    a.put(message(1, 0, 100)).unwrap();
    a.put(message(1, 1, 2000)).unwrap();
    a.put(message(1, 2, 100)).unwrap();
    let mut config = OutConfig::new(a_name, NatsOptions::new(&server.url), "big.jobs");
    config.create_stream = Some(StreamSettings::new("BIG", vec!["big.jobs".into()]));
    let bridge = BridgeOut::new(config).unwrap();
    let counters = bridge.counters();
    match bridge.run_blocking(Shutdown::new()) {
        Err(Error::Oversize { len, max, .. }) => {
            assert_eq!((len, max), (2000, 1024));
        }
        other => panic!("expected Oversize, got {other:?}"),
    }
    assert_eq!(counters.snapshot().acked, 1);
    assert_eq!(a.len(), 2, "the large message and the one after it stay");
    assert_eq!(check(&a.get().unwrap()), (1, 1));
    assert_eq!(check(&a.get().unwrap()), (1, 2));
    assert_eq!(stream_last_sequence(&server.url, "BIG"), 1);
}

/// A full local queue stops the inbound bridge's pulling: it never holds
/// more than one pull's batch beyond what the queue took (no unbounded
/// buffering), the queue stays at its `maxsize`, and once a consumer
/// drains it every message arrives.
#[test]
fn full_local_queue_applies_back_pressure() {
    let Some(server) = NatsServer::start("back_pressure", None) else {
        return;
    };
    let _watchdog = Watchdog::new(Duration::from_secs(120), "back pressure");
    const N: u32 = 300;
    const MAXSIZE: u64 = 20;
    const BATCH: usize = 16;
    let (a_name, a) = queue("br-bp-a", 0);
    let (b_name, b) = queue("br-bp-b", MAXSIZE);
    for seq in 0..N {
        a.put(message(3, seq, len_of(seq))).unwrap();
    }
    let shutdown = Shutdown::new();
    let mut out = OutConfig::new(a_name, NatsOptions::new(&server.url), "bp.jobs");
    out.create_stream = Some(StreamSettings::new("BP", vec!["bp.jobs".into()]));
    let out = BridgeOut::new(out).unwrap();
    let out_thread = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || out.run_blocking(shutdown))
    };
    let mut inc = InConfig::new(NatsOptions::new(&server.url), "BP", "b", b_name);
    inc.create_stream = Some(StreamSettings::new("BP", vec!["bp.jobs".into()]));
    inc.batch = BATCH;
    let inbound = BridgeIn::new(inc).unwrap();
    let counters = inbound.counters();
    let in_thread = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || inbound.run_blocking(shutdown))
    };
    wait_for(Duration::from_secs(60), "queue A drained", || a.is_empty());
    wait_for(Duration::from_secs(60), "queue B full", || {
        b.len() >= MAXSIZE
    });
    // Held there: the bridge waits for room and pulls nothing more.
    std::thread::sleep(Duration::from_secs(2));
    let c = counters.snapshot();
    assert_eq!(c.put, MAXSIZE, "{c}");
    assert!(
        c.received <= MAXSIZE + BATCH as u64,
        "buffered beyond one batch: {c}"
    );
    assert_eq!(b.len(), MAXSIZE);
    let mut got = Vec::new();
    while got.len() < N as usize {
        got.push(check(
            &b.get_timeout(Duration::from_secs(30)).expect("a message"),
        ));
    }
    assert_eq!(
        got,
        (0..N).map(|s| (3, s)).collect::<Vec<_>>(),
        "all, in order"
    );
    shutdown.trigger();
    out_thread.join().unwrap().unwrap();
    in_thread.join().unwrap().unwrap();
    let c = counters.snapshot();
    assert_eq!(
        (c.put, c.acked_in, c.redelivered),
        (u64::from(N), u64::from(N), 0),
        "{c}"
    );
}

/// A small xorshift generator: the crash test's kill points and targets.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A number from the environment variable `var`, else `default`.
fn env_number(var: &str, default: u64) -> u64 {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// `shmring-bridge in` for host queue `queue` (a short `--ack-wait`, so
/// that what a killed bridge put and did not acknowledge comes back soon).
fn spawn_bridge_in(kids: &mut Kids, url: &str, queue: &str) -> u32 {
    kids.add(
        bridge_binary()
            .args(["in", "--nats", url, "--stream", "CHAOS"])
            .args(["--consumer", "hosts", "--queue", queue])
            .args(["--create-stream", "--subject", "chaos.jobs"])
            .args(["--batch", "64", "--ack-wait", "3", "--stats", "0"])
            .stderr(Stdio::null())
            .spawn()
            .expect("start bridge in"),
    )
}

/// Two producers on host A → `shmring-bridge out` → JetStream →
/// `shmring-bridge in` on hosts B and C, while the outbound bridge, either
/// inbound bridge and the nats-server are SIGKILLed at random points of
/// the run (six kills, each restarted after a random pause). Every message
/// arrives at B or C (none lost); duplicates are counted and reported, and
/// come only from redelivery: the stream stored each message once (its
/// last sequence is the message count), so no re-publish by a restarted
/// outbound bridge got through its `Nats-Msg-Id`.
///
/// `SHMRING_BRIDGE_CRASH_MESSAGES` sets the message count (default 20,000,
/// under a minute on two cores; the issue asks for runs of 100,000, which
/// this takes with the variable set), `SHMRING_BRIDGE_CRASH_SEED` replays
/// a run's kill points (each run prints its seed).
#[test]
fn bridges_and_server_sigkilled_at_random_lose_nothing() {
    let Some(_) = nats::binary_or_skip("bridges_and_server_sigkilled") else {
        return;
    };
    let total = env_number("SHMRING_BRIDGE_CRASH_MESSAGES", 20_000).max(2) as u32;
    let seed = env_number(
        "SHMRING_BRIDGE_CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    ) | 1;
    eprintln!("crash run: {total} messages, SHMRING_BRIDGE_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let limit = Duration::from_secs(120 + u64::from(total) / 100);
    let _watchdog = Watchdog::new(limit + Duration::from_secs(60), "crash run");
    let per_producer = total / 2;
    let total = per_producer * 2;
    let mut server = NatsServer::start_on(nats::free_port(), None);
    let url = server.url.clone();
    let (a_name, a) = queue("br-chaos-a", 0);
    let (b_name, b) = queue("br-chaos-b", 0);
    let (c_name, c) = queue("br-chaos-c", 0);
    let mut kids = Kids::default();
    let spawn_out = |kids: &mut Kids| {
        kids.add(
            bridge_binary()
                .args(["out", "--queue", &a_name, "--nats", &url])
                .args(["--subject", "chaos.jobs", "--stream", "CHAOS"])
                .args(["--create-stream", "--batch", "64", "--stats", "0"])
                .stderr(Stdio::null())
                .spawn()
                .expect("start bridge out"),
        )
    };
    let mut out = spawn_out(&mut kids);
    let mut ins = [
        spawn_bridge_in(&mut kids, &url, &b_name),
        spawn_bridge_in(&mut kids, &url, &c_name),
    ];
    let (tx, rx) = mpsc::channel();
    let consumers = [
        spawn_consumer(&mut kids, &b_name, 0, tx.clone()),
        spawn_consumer(&mut kids, &c_name, 1, tx),
    ];
    let producers: Vec<u32> = (0..2)
        .map(|who| {
            kids.add(spawn_entry(
                &PRODUCER,
                (a_name.clone(), who, per_producer),
                Stdio::null(),
            ))
        })
        .collect();
    let start = Instant::now();
    let mut got: Vec<(usize, u32, u32)> = Vec::with_capacity(total as usize);
    // Receives until `got` holds `at` messages; false at the time limit.
    let receive_until = |got: &mut Vec<(usize, u32, u32)>, at: usize, deadline: Instant| {
        while got.len() < at {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(m) => got.push(m),
                Err(_) => return false,
            }
        }
        true
    };
    let lengths = || format!("queue A holds {}, B {}, C {}", a.len(), b.len(), c.len());
    const KILLS: u64 = 6;
    let mut kills = Vec::new();
    for k in 0..KILLS {
        // The k-th kill lands somewhere in the k-th eighth of the run.
        let span = u64::from(total) / (KILLS + 2);
        let at = (span * (k + 1) + rng.below(span)) as usize;
        assert!(
            receive_until(&mut got, at, start + limit),
            "only {} of {at} messages before kill {k} ({}; kills {kills:?}; seed {seed})",
            got.len(),
            lengths()
        );
        let pause = Duration::from_millis(rng.below(400));
        match rng.below(3) {
            0 => {
                signal(out, libc::SIGKILL);
                assert!(!wait_child(kids.take(out), Duration::from_secs(30)).success());
                std::thread::sleep(pause);
                out = spawn_out(&mut kids);
                kills.push(format!("out@{at}"));
            }
            1 => {
                let host = rng.below(2) as usize;
                signal(ins[host], libc::SIGKILL);
                assert!(!wait_child(kids.take(ins[host]), Duration::from_secs(30)).success());
                std::thread::sleep(pause);
                let q = if host == 0 { &b_name } else { &c_name };
                ins[host] = spawn_bridge_in(&mut kids, &url, q);
                kills.push(format!("in-{}@{at}", ["b", "c"][host]));
            }
            _ => {
                server.kill();
                std::thread::sleep(pause);
                server.restart();
                kills.push(format!("server@{at}"));
            }
        }
    }
    eprintln!("kills: {}", kills.join(" "));
    for p in producers {
        assert!(wait_child(kids.take(p), limit).success(), "producer");
    }
    a.shutdown();
    assert!(
        wait_child(kids.take(out), limit).success(),
        "the last outbound bridge drains queue A and exits 0"
    );
    // Every message at least once; then what redeliveries are pending
    // (a killed inbound bridge's puts, after the 3 s ack wait) come too.
    // Queue A is drained: what is missing now can only be on its way
    // (a redelivery comes within the 3 s ack wait, a retry within 5 s).
    let drained = Instant::now() + Duration::from_secs(30);
    let mut unique: HashSet<(u32, u32)> = got.iter().map(|&(_, w, s)| (w, s)).collect();
    while unique.len() < total as usize {
        let before = got.len();
        if !receive_until(&mut got, before + 1, drained) {
            let missing: Vec<(u32, u32)> = expected(2, per_producer)
                .into_iter()
                .filter(|m| !unique.contains(m))
                .take(20)
                .collect();
            panic!(
                "{} of {total} messages arrived; missing (first 20): {missing:?} ({}; \
                 kills {kills:?}; seed {seed}; stream {})",
                unique.len(),
                lengths(),
                stream_state(&server.url, "CHAOS")
            );
        }
        unique.extend(got[before..].iter().map(|&(_, w, s)| (w, s)));
    }
    std::thread::sleep(Duration::from_secs(4));
    for pid in ins {
        signal(pid, libc::SIGTERM);
        assert!(
            wait_child(kids.take(pid), Duration::from_secs(30)).success(),
            "bridge in exits 0 on SIGTERM"
        );
    }
    b.shutdown();
    c.shutdown();
    for pid in consumers {
        assert!(wait_child(kids.take(pid), Duration::from_secs(30)).success());
    }
    got.extend(rx.try_iter());
    let duplicates = got.len() - unique.len();
    eprintln!(
        "crash run: {} messages, {} received, {duplicates} duplicates (redeliveries), {:?}",
        total,
        got.len(),
        start.elapsed()
    );
    let mut all: Vec<(u32, u32)> = unique.into_iter().collect();
    all.sort_unstable();
    assert_eq!(all, expected(2, per_producer), "none lost");
    assert!(a.is_empty(), "queue A drained");
    assert_eq!(
        stream_last_sequence(&server.url, "CHAOS"),
        u64::from(total),
        "the stream stored each message once: no duplicate from re-publishing"
    );
    // Every record left is a killed bridge's, whole; the clean exits
    // removed their own.
    remove_dead_records(&[&a_name, &b_name, &c_name]);
}

/// Authentication passes through to async-nats: against a server that
/// requires a token, an inbound bridge with the wrong one stops at once
/// with an authentication error (a setting to fix: not retried) having
/// received nothing; with the right one both bridges carry every message.
/// (User and password, nkeys and TLS: tests/auth.rs.)
#[test]
fn a_token_is_passed_through_and_a_wrong_one_stops_the_bridge() {
    let Some(server) = NatsServer::start_with_token("token", "s3cret-token") else {
        return;
    };
    let _watchdog = Watchdog::new(Duration::from_secs(120), "token");
    const N: u32 = 50;
    let (a_name, a) = queue("br-tok-a", 0);
    let (b_name, b) = queue("br-tok-b", 0);
    let with = |token: &str| {
        let mut o = NatsOptions::new(&server.url);
        o.token = Some(token.to_owned());
        o
    };
    let settings = StreamSettings::new("TOK", vec!["tok.jobs".into()]);

    let mut wrong = InConfig::new(with("not-it"), "TOK", "b", b_name.clone());
    wrong.create_stream = Some(settings.clone());
    let wrong = BridgeIn::new(wrong).unwrap();
    let wrong_counters = wrong.counters();
    match wrong.run_blocking(Shutdown::new()) {
        Err(Error::Auth(m)) => assert!(m.contains("refused the credentials"), "{m}"),
        other => panic!("expected an authentication error, got {other:?}"),
    }
    assert_eq!(wrong_counters.snapshot().received, 0);
    assert_eq!(wrong_counters.snapshot().retries, 0, "not retried");

    for seq in 0..N {
        a.put(message(5, seq, len_of(seq))).unwrap();
    }
    a.shutdown();
    let mut out = OutConfig::new(a_name, with("s3cret-token"), "tok.jobs");
    out.create_stream = Some(settings.clone());
    let out = BridgeOut::new(out).unwrap();
    let out_counters = out.counters();
    out.run_blocking(Shutdown::new())
        .expect("drains the shut-down queue and stops");
    assert_eq!(out_counters.snapshot().acked, u64::from(N));

    let mut inc = InConfig::new(with("s3cret-token"), "TOK", "b", b_name);
    inc.create_stream = Some(settings);
    let inbound = BridgeIn::new(inc).unwrap();
    let shutdown = Shutdown::new();
    let in_thread = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || inbound.run_blocking(shutdown))
    };
    let got: Vec<(u32, u32)> = (0..N)
        .map(|_| check(&b.get_timeout(Duration::from_secs(30)).expect("a message")))
        .collect();
    assert_eq!(got, (0..N).map(|s| (5, s)).collect::<Vec<_>>());
    shutdown.trigger();
    in_thread.join().unwrap().unwrap();
}

/// `shmring-bridge out` on a message above the server's `max_payload`:
/// exit code 1, a line naming the limit, and the message still queued.
#[test]
fn cli_exits_1_on_an_oversize_message_and_keeps_it() {
    let Some(server) = NatsServer::start("cli_oversize", Some(1024)) else {
        return;
    };
    let _watchdog = Watchdog::new(Duration::from_secs(120), "cli oversize");
    let (a_name, a) = queue("br-cli-big", 0);
    a.put(message(2, 0, 3000)).unwrap();
    let out = bridge_binary()
        .args(["out", "--queue", &a_name, "--nats", &server.url])
        .args([
            "--subject",
            "clibig.jobs",
            "--stream",
            "CLIBIG",
            "--create-stream",
        ])
        .output()
        .expect("run bridge out");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("exceeds the limit of 1024 bytes"), "{err}");
    assert_eq!(a.len(), 1, "kept");
    assert_eq!(check(&a.get().unwrap()), (2, 0));
}

/// NATS unreachable: the bridge retries with backoff, no busy loop (a
/// handful of attempts in two seconds, not thousands), and stops cleanly
/// on shutdown while retrying.
#[test]
fn unreachable_nats_is_retried_with_backoff() {
    let _watchdog = Watchdog::new(Duration::from_secs(60), "unreachable");
    let (b_name, _b) = queue("br-unreach-b", 0);
    let url = format!("nats://127.0.0.1:{}", nats::free_port());
    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut config = InConfig::new(NatsOptions::new(&url), "NONE", "c", b_name);
    config.log = Some({
        let lines = lines.clone();
        Arc::new(move |l: &str| lines.lock().unwrap().push(l.to_owned()))
    });
    let inbound = BridgeIn::new(config).unwrap();
    let counters = inbound.counters();
    let shutdown = Shutdown::new();
    let thread = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || inbound.run_blocking(shutdown))
    };
    std::thread::sleep(Duration::from_secs(2));
    shutdown.trigger();
    thread
        .join()
        .unwrap()
        .expect("stops cleanly while retrying");
    let retries = counters.snapshot().retries;
    assert!((2..=12).contains(&retries), "{retries} attempts in 2 s");
    let lines = lines.lock().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cannot connect") && l.contains("retrying in")),
        "{lines:?}"
    );
}
