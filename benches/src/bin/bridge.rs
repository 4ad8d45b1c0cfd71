//! The bridge across hosts (issue 13): messages/s and latency (p50, p99)
//! through local queue → `BridgeOut` → JetStream → `BridgeIn` → local
//! queue, beside a plain `async-nats` JetStream publisher and pull consumer
//! with the same batching and guarantee (publish a batch, await its acks;
//! pull a batch, ack each message), and beside core NATS (publish and
//! subscribe, no persistence, no acks).
//!
//! ```text
//! cargo run --release -p shmring-benches --bin bridge -- [--nats URL] [--messages N]
//!     [--sizes 8,1024] [--batch 256] [--paths bridge,jetstream,core]
//! ```
//!
//! Without `--nats` it starts its own `nats-server -js` (Debian's) on a
//! free loopback port with a temporary file store, and stops it. Every
//! path runs in this one process: the sender stamps each message with the
//! time since the run began (its first 8 bytes), the receiver reads the
//! stamp, so latency is send-to-receive under full load (every message
//! offered at once, as fast as the sender goes): a loaded latency, not an
//! idle round trip. Throughput is messages over the time from the first
//! send to the last receive. Each (path, size) gets a stream of its own.
//! One line per (path, size), and a ratio of the bridge's time per message
//! to the plain JetStream client's (the issue's target: ≤ 1.25).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt;
use shmring::queue::Queue;
use shmring_bridge::{
    BridgeIn, BridgeOut, InConfig, NatsOptions, OutConfig, Shutdown, StreamSettings,
};

type Failure = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    nats: Option<String>,
    messages: u64,
    sizes: Vec<usize>,
    batch: usize,
    paths: Vec<String>,
}

const HELP: &str = "\
bridge: messages/s and p50/p99 latency through the shmring JetStream bridge,
beside a plain async-nats JetStream client and core NATS

Options:
  --nats URL        a server with JetStream (default: start nats-server -js)
  --messages N      messages per (path, size) (default 100000)
  --sizes LIST      message sizes in bytes, at least 8 (default 8,1024)
  --batch N         publish/pull batch (default 256)
  --paths LIST      bridge,jetstream,core (default all three)
";

fn parse() -> Result<Args, Failure> {
    let mut args = Args {
        nats: None,
        messages: 100_000,
        sizes: vec![8, 1024],
        batch: 256,
        paths: vec!["bridge".into(), "jetstream".into(), "core".into()],
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--nats" => args.nats = Some(value()?),
            "--messages" => args.messages = value()?.parse()?,
            "--sizes" => {
                args.sizes = value()?
                    .split(',')
                    .map(|s| s.parse::<usize>().map(|n| n.max(8)))
                    .collect::<Result<_, _>>()?
            }
            "--batch" => args.batch = value()?.parse()?,
            "--paths" => args.paths = value()?.split(',').map(str::to_owned).collect(),
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{HELP}").into()),
        }
    }
    if args.messages == 0 || args.batch == 0 {
        return Err("--messages and --batch must be above 0".into());
    }
    Ok(args)
}

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
    let dir = std::env::temp_dir().join(format!("bridge-bench-nats-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let binary = ["nats-server", "/usr/sbin/nats-server"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .ok_or("nats-server not found: apt-get install nats-server, or pass --nats")?;
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
    Ok((server, format!("nats://127.0.0.1:{port}")))
}

/// A message of `size` bytes stamped with the time since `base`.
fn stamped(base: Instant, size: usize) -> Vec<u8> {
    let mut m = vec![0u8; size];
    m[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_le_bytes());
    m
}

/// Nanoseconds from a message's stamp to now.
fn latency(base: Instant, m: &[u8]) -> u64 {
    let sent = u64::from_le_bytes(m[..8].try_into().expect("a stamped message"));
    (base.elapsed().as_nanos() as u64).saturating_sub(sent)
}

/// What one (path, size) measured.
struct Outcome {
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
}

fn outcome(mut latencies: Vec<u64>, elapsed: Duration) -> Outcome {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1e3;
    Outcome {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_us: at(0.50),
        p99_us: at(0.99),
    }
}

/// Queue A → bridge out → JetStream → bridge in → queue B.
fn bridge_path(
    url: &str,
    n: u64,
    size: usize,
    batch: usize,
    tag: &str,
) -> Result<Outcome, Failure> {
    let make = |host: &str| {
        let name = format!("/bridge-bench-{host}-{tag}-{}", std::process::id());
        Queue::<Vec<u8>>::builder()
            .producers(4)
            .ring_bytes(4 << 20)
            .max_message(size as u64 + 64)
            .create(&name)
            .map(|q| (name, q))
    };
    let ((a_name, a), (b_name, b)) = (make("a")?, make("b")?);
    let stream = format!("BENCH_BRIDGE_{tag}");
    let subject = format!("bench.bridge.{tag}");
    let quiet: shmring_bridge::Log = std::sync::Arc::new(|_: &str| {});
    let mut out = OutConfig::new(&a_name, NatsOptions::new(url), &subject);
    out.create_stream = Some(StreamSettings::new(&stream, vec![subject.clone()]));
    out.batch = batch;
    out.log = Some(quiet.clone());
    let mut inbound = InConfig::new(NatsOptions::new(url), &stream, "bench", &b_name);
    inbound.create_stream = Some(StreamSettings::new(&stream, vec![subject.clone()]));
    inbound.batch = batch;
    inbound.max_ack_pending = (4 * batch) as i64;
    inbound.log = Some(quiet);
    let (out, inbound) = (BridgeOut::new(out)?, BridgeIn::new(inbound)?);
    let shutdown = Shutdown::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let bridges = [
        runtime.spawn(out.run(shutdown.clone())),
        runtime.spawn(inbound.run(shutdown.clone())),
    ];
    let base = Instant::now();
    let sender = std::thread::spawn(move || -> Result<(), shmring::queue::PutError<Vec<u8>>> {
        for _ in 0..n {
            a.put(stamped(base, size))?;
        }
        Ok(())
    });
    let mut latencies = Vec::with_capacity(n as usize);
    for _ in 0..n {
        latencies.push(latency(base, &b.get()?));
    }
    let elapsed = base.elapsed();
    sender.join().expect("sender")?;
    shutdown.trigger();
    for bridge in bridges {
        runtime.block_on(bridge)??;
    }
    Ok(outcome(latencies, elapsed))
}

async fn work_queue(js: &jetstream::Context, name: &str, subject: &str) -> Result<(), Failure> {
    js.get_or_create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        retention: stream::RetentionPolicy::WorkQueue,
        discard: stream::DiscardPolicy::New,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// A plain async-nats JetStream publisher (a batch of publishes, then
/// their acks, each with a `Nats-Msg-Id` as the bridge sends) and pull
/// consumer (batches, each message acked).
async fn jetstream_path(
    url: &str,
    n: u64,
    size: usize,
    batch: usize,
    tag: &str,
) -> Result<Outcome, Failure> {
    let stream_name = format!("BENCH_JS_{tag}");
    let subject = format!("bench.js.{tag}");
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client.clone());
    work_queue(&js, &stream_name, &subject).await?;
    let consumer = js
        .get_stream(&stream_name)
        .await?
        .get_or_create_consumer(
            "bench",
            pull::Config {
                durable_name: Some("bench".into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                max_ack_pending: (4 * batch) as i64,
                ..Default::default()
            },
        )
        .await?;
    let base = Instant::now();
    let publisher = {
        let js = js.clone();
        let subject = subject.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            while sent < n {
                let mut acks = Vec::with_capacity(batch);
                while sent < n && acks.len() < batch {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", format!("bench.{sent}").as_str());
                    let payload = stamped(base, size).into();
                    acks.push(
                        js.publish_with_headers(subject.clone(), headers, payload)
                            .await?,
                    );
                    sent += 1;
                }
                for ack in acks {
                    ack.await?;
                }
            }
            Ok::<(), Failure>(())
        })
    };
    let mut latencies = Vec::with_capacity(n as usize);
    while (latencies.len() as u64) < n {
        let mut messages = consumer
            .batch()
            .max_messages(batch)
            .expires(Duration::from_secs(1))
            .messages()
            .await?;
        while let Some(m) = messages.next().await {
            let m = m?;
            latencies.push(latency(base, &m.payload));
            m.ack().await?;
        }
    }
    let elapsed = base.elapsed();
    publisher.await??;
    Ok(outcome(latencies, elapsed))
}

/// Core NATS: publish (flushed per batch) and a subscription; nothing
/// persisted, nothing acknowledged.
async fn core_path(
    url: &str,
    n: u64,
    size: usize,
    batch: usize,
    tag: &str,
) -> Result<Outcome, Failure> {
    let subject = format!("bench.core.{tag}");
    let receiver = async_nats::connect(url).await?;
    let mut subscription = receiver.subscribe(subject.clone()).await?;
    receiver.flush().await?;
    let sender = async_nats::connect(url).await?;
    let base = Instant::now();
    let publisher = tokio::spawn(async move {
        for i in 0..n {
            sender
                .publish(subject.clone(), stamped(base, size).into())
                .await?;
            if (i + 1) % batch as u64 == 0 {
                sender.flush().await?;
            }
        }
        sender.flush().await?;
        Ok::<(), Failure>(())
    });
    let mut latencies = Vec::with_capacity(n as usize);
    while (latencies.len() as u64) < n {
        match tokio::time::timeout(Duration::from_secs(10), subscription.next()).await {
            Ok(Some(m)) => latencies.push(latency(base, &m.payload)),
            _ => {
                return Err(format!(
                    "core NATS dropped messages: {} of {n} arrived (a slow subscriber)",
                    latencies.len()
                )
                .into())
            }
        }
    }
    let elapsed = base.elapsed();
    publisher.await??;
    Ok(outcome(latencies, elapsed))
}

fn main() -> Result<(), Failure> {
    let args = parse()?;
    let (_server, url) = match &args.nats {
        Some(url) => (None, url.clone()),
        None => {
            let (s, url) = start_server()?;
            (Some(s), url)
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "{:<10} {:>6} {:>10} {:>12} {:>10} {:>10}",
        "path", "bytes", "messages", "msgs/s", "p50 µs", "p99 µs"
    );
    for &size in &args.sizes {
        let mut per_message = std::collections::HashMap::new();
        for path in &args.paths {
            let tag = format!("{size}_{}", std::process::id());
            let o = match path.as_str() {
                "bridge" => bridge_path(&url, args.messages, size, args.batch, &tag)?,
                "jetstream" => {
                    runtime.block_on(jetstream_path(&url, args.messages, size, args.batch, &tag))?
                }
                "core" => {
                    runtime.block_on(core_path(&url, args.messages, size, args.batch, &tag))?
                }
                other => return Err(format!("unknown path {other:?}").into()),
            };
            println!(
                "{path:<10} {size:>6} {:>10} {:>12.0} {:>10.1} {:>10.1}",
                args.messages, o.per_second, o.p50_us, o.p99_us
            );
            per_message.insert(path.as_str(), 1.0 / o.per_second);
        }
        if let (Some(b), Some(j)) = (per_message.get("bridge"), per_message.get("jetstream")) {
            println!(
                "bridge ÷ plain JetStream time per message at {size} B: {:.2}× (target ≤ 1.25×)",
                b / j
            );
        }
    }
    Ok(())
}
