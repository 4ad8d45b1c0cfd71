//! The command line: `shmring bridge out|in ...` (the `shmring` binary's
//! `bridge` subcommand, on by default through its `bridge` feature) and
//! the `shmring-bridge` binary, both calling [`main`]. See [`HELP`].

use std::process::ExitCode;
use std::time::Duration;

use crate::{
    stderr_log, BridgeIn, BridgeOut, Counters, Error, InConfig, NatsOptions, OutConfig, Shutdown,
    StreamSettings,
};
use shmring::{OpenError, SegmentError};

/// Stopped by a signal, or the local queue was shut down.
const EXIT_OK: u8 = 0;
/// The bridge stopped on an error (a message too large, a corrupted queue).
const EXIT_ERROR: u8 = 1;
/// Bad command line.
const EXIT_USAGE: u8 = 2;
/// The local queue does not exist.
const EXIT_NOT_FOUND: u8 = 3;
/// NATS refused the credentials, or TLS failed (not retried).
const EXIT_AUTH: u8 = 4;

/// The text of `--help`: usage, options, exit codes.
pub const HELP: &str = "\
shmring-bridge — bridge shmring queues between hosts through NATS JetStream

Usage:
  shmring-bridge out --queue NAME --nats URL --subject S [OPTIONS]
  shmring-bridge in  --nats URL --stream S --consumer C --queue NAME [OPTIONS]
  (also `shmring bridge out|in ...`)

out  drains the local queue NAME into JetStream: each message is copied out
     of the queue, published to subject S with a stable Nats-Msg-Id, and taken
     out of the queue only once JetStream acknowledged it. A bridge killed at
     any point leaves every unacknowledged message queued; the next one
     publishes it again under the same id, which the stream drops as a
     duplicate within its duplicate window.
in   pulls from the durable consumer C of stream S (created if missing;
     shared by the bridges of every host, each message going to one of them)
     into the local queue NAME, acknowledging each message only once it is
     in the queue. A full queue stops the pulling. A bridge killed between a
     put and its ack gets that message delivered again (a duplicate).

Both run until SIGINT or SIGTERM (finishing what is in flight), or until
the local queue is shut down. NATS unreachable, a stream missing, a publish
refused: each is logged and retried with backoff (0.1 s to 5 s), nothing is
lost. Credentials refused, TLS failing, or a permissions violation (the
user may not publish or subscribe where the bridge must) is not retried:
the bridge stops (exit code 4). Messages travel as their bytes, unchanged.

While it runs, a bridge publishes its counters in /dev/shm/.shmring-bridge.*
(removed at its exit): `shmring stat QUEUE` shows them, and whether the
bridge is alive; `shmring gc` removes the record of a bridge that was killed.

Options (out):
  --queue NAME            the local queue (a shmring Queue or ByteQueue)
  --subject S             the subject to publish to
  --content-type T        the Content-Type header (default
                          application/octet-stream)
  --batch N               messages published before awaiting their acks
                          (default 256)
  --batch-bytes N         payload bytes in one batch (default 4194304)

Options (in):
  --stream S              the stream to pull from
  --consumer C            the durable pull consumer (created if missing)
  --queue NAME            the local queue
  --filter-subject S      only this subject (for a consumer created here)
  --batch N               messages pulled at once (default 256)
  --ack-wait SECS         JetStream's redelivery timeout (for a consumer
                          created here; default 30)
  --max-ack-pending N     unacknowledged messages over all bridges (for a
                          consumer created here; default 1024)

Creating the stream (either side):
  --create-stream         create the stream if missing: work-queue retention
                          (each message to one consumer, removed once
                          acknowledged), file storage, and a full stream
                          refuses publishes (they are retried) rather than
                          dropping messages
  --stream S              its name (out; in uses its --stream)
  --subject S             the subject it stores (in; out uses its --subject)
  --max-msgs N            most messages stored (default: no limit)
  --max-bytes N           most bytes stored (default: no limit)
  --max-age SECS          drop messages older than that (default: never;
                          a dropped message is lost)
  --duplicate-window SECS how long message ids are remembered (default 120)
  --replicas N            replicas (clustered servers; default 1)
  --memory                memory storage (lost when the server stops)

NATS connection (passed through to async-nats):
  --nats URL              the server(s), comma-separated (tls://HOST:PORT
                          for TLS)
  --creds FILE            a .creds file (a user JWT and its nkey seed, for
                          a server in operator mode)
  --token TOKEN           a token (or the environment variable NATS_TOKEN)
  --user USER --password PASSWORD
                          a user and password (the password also from the
                          environment variable NATS_PASSWORD)
  --nkey SEED             an nkey user seed, SU... (or the environment
                          variable NATS_NKEY); the server knows its public
                          key, U...
  --tls                   require TLS
  --tls-ca FILE           trust this root certificate (PEM; repeatable)
  --tls-cert FILE --tls-key FILE   a client certificate and its key (PEM),
                          for a server that verifies clients
  Secrets on the command line are visible to other users (ps): prefer the
  environment variables or a .creds file.
  --name NAME             the connection's name
  --timeout SECS          connection, request and ack timeout (default 5)

Other:
  --stats SECS            print the counters every SECS seconds on stderr
                          when they changed (default 10; 0: never)
  -h, --help

Exit codes:
  0  stopped by SIGINT/SIGTERM, or the local queue was shut down
  1  stopped on an error (a message too large for the server or the local
     queue: it was kept, not dropped; a corrupted queue)
  2  usage error (also a bad server URL)
  3  the local queue does not exist
  4  NATS refused the credentials (token, user/password, nkey, .creds
     file unreadable or invalid) or TLS failed (certificate not trusted,
     CA or client certificate file unreadable), or reported a
     permissions violation for the bridge's requests: not retried
";

/// A failure: an exit code and a message.
struct Failure {
    code: u8,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        message: message.into(),
    }
}

/// The arguments after the subcommand, taken option by option.
struct Args {
    items: Vec<String>,
}

impl Args {
    fn flag(&mut self, name: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|a| a != name);
        before != self.items.len()
    }

    /// `name VALUE` or `name=VALUE`; the last one wins.
    fn value(&mut self, name: &str) -> Result<Option<String>, Failure> {
        Ok(self.values(name)?.pop())
    }

    /// Every `name VALUE` or `name=VALUE`, in order.
    fn values(&mut self, name: &str) -> Result<Vec<String>, Failure> {
        let prefix = format!("{name}=");
        let mut found = Vec::new();
        let mut i = 0;
        while i < self.items.len() {
            if self.items[i] == name {
                if i + 1 >= self.items.len() {
                    return Err(usage(format!("{name} needs a value")));
                }
                self.items.remove(i);
                found.push(self.items.remove(i));
            } else if let Some(v) = self.items[i].strip_prefix(&prefix) {
                found.push(v.to_owned());
                self.items.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(found)
    }

    fn required(&mut self, name: &str) -> Result<String, Failure> {
        self.value(name)?
            .ok_or_else(|| usage(format!("{name} is required")))
    }

    fn number<T: std::str::FromStr>(&mut self, name: &str) -> Result<Option<T>, Failure> {
        match self.value(name)? {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| usage(format!("{name}: {v:?} is not a valid number"))),
        }
    }

    fn seconds(&mut self, name: &str) -> Result<Option<Duration>, Failure> {
        match self.number::<f64>(name)? {
            None => Ok(None),
            Some(s) if s.is_finite() && (0.0..=1e9).contains(&s) => {
                Ok(Some(Duration::from_secs_f64(s)))
            }
            Some(s) => Err(usage(format!("{name}: {s} is not a duration in seconds"))),
        }
    }

    fn finish(self) -> Result<(), Failure> {
        match self.items.first() {
            None => Ok(()),
            Some(a) => Err(usage(format!("unexpected argument {a:?}"))),
        }
    }
}

fn nats_options(args: &mut Args) -> Result<NatsOptions, Failure> {
    let mut o = NatsOptions::new(args.required("--nats")?);
    o.credentials_file = args.value("--creds")?.map(Into::into);
    o.token = args
        .value("--token")?
        .or_else(|| std::env::var("NATS_TOKEN").ok());
    let user = args.value("--user")?;
    let password = args
        .value("--password")?
        .or_else(|| user.as_ref().and(std::env::var("NATS_PASSWORD").ok()));
    o.user_password = match (user, password) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => return Err(usage("--user and --password go together")),
    };
    o.nkey_seed = args
        .value("--nkey")?
        .or_else(|| std::env::var("NATS_NKEY").ok());
    o.require_tls = args.flag("--tls");
    o.root_certificates = args
        .values("--tls-ca")?
        .into_iter()
        .map(Into::into)
        .collect();
    o.client_certificate = match (args.value("--tls-cert")?, args.value("--tls-key")?) {
        (Some(c), Some(k)) => Some((c.into(), k.into())),
        (None, None) => None,
        _ => return Err(usage("--tls-cert and --tls-key go together")),
    };
    o.name = args.value("--name")?;
    if let Some(t) = args.seconds("--timeout")? {
        if t.is_zero() {
            return Err(usage("--timeout must be above 0"));
        }
        o.timeout = t;
    }
    Ok(o)
}

/// `--create-stream` and its limits: the stream `name` on `subject`.
fn stream_settings(
    args: &mut Args,
    name: Option<String>,
    subject: Option<String>,
) -> Result<Option<StreamSettings>, Failure> {
    let create = args.flag("--create-stream");
    let mut limits = StreamSettings::new(String::new(), Vec::new());
    let max_messages = args.number::<i64>("--max-msgs")?;
    let max_bytes = args.number::<i64>("--max-bytes")?;
    let max_age = args.seconds("--max-age")?;
    let window = args.seconds("--duplicate-window")?;
    let replicas = args.number::<usize>("--replicas")?;
    let memory = args.flag("--memory");
    let any_limit = max_messages.is_some()
        || max_bytes.is_some()
        || max_age.is_some()
        || window.is_some()
        || replicas.is_some()
        || memory;
    if !create {
        if any_limit {
            return Err(usage("stream limits need --create-stream"));
        }
        return Ok(None);
    }
    let name = name.ok_or_else(|| usage("--create-stream needs --stream"))?;
    let subject = subject.ok_or_else(|| usage("--create-stream needs --subject"))?;
    limits.name = name;
    limits.subjects = vec![subject];
    limits.max_messages = max_messages.unwrap_or(-1);
    limits.max_bytes = max_bytes.unwrap_or(-1);
    limits.max_age = max_age.unwrap_or(Duration::ZERO);
    if let Some(w) = window {
        limits.duplicate_window = w;
    }
    limits.replicas = replicas.unwrap_or(1);
    limits.memory = memory;
    Ok(Some(limits))
}

/// A ready bridge of either direction.
enum Bridge {
    Out(Box<BridgeOut>),
    In(Box<BridgeIn>),
}

fn failure(e: Error) -> Failure {
    let code = match &e {
        Error::Open(OpenError::Segment(SegmentError::NotFound { .. })) => EXIT_NOT_FOUND,
        Error::Config(_) => EXIT_USAGE,
        Error::Auth(_) => EXIT_AUTH,
        _ => EXIT_ERROR,
    };
    Failure {
        code,
        message: e.to_string(),
    }
}

fn parse(argv: Vec<String>) -> Result<Option<(Bridge, Duration)>, Failure> {
    let mut argv = argv.into_iter();
    let command = argv.next();
    let mut args = Args {
        items: argv.collect(),
    };
    if command.is_none()
        || matches!(command.as_deref(), Some("-h" | "--help" | "help"))
        || args.items.iter().any(|a| a == "-h" || a == "--help")
    {
        print!("{HELP}");
        return match command {
            None => Err(usage("no command given (out or in)")),
            Some(_) => Ok(None),
        };
    }
    let stats = args.seconds("--stats")?.unwrap_or(Duration::from_secs(10));
    let bridge = match command.as_deref() {
        Some("out") => {
            let queue = args.required("--queue")?;
            let nats = nats_options(&mut args)?;
            let subject = args.required("--subject")?;
            let stream = args.value("--stream")?;
            let mut config = OutConfig::new(queue, nats, subject.clone());
            config.create_stream = stream_settings(&mut args, stream, Some(subject))?;
            if let Some(t) = args.value("--content-type")? {
                config.content_type = t;
            }
            if let Some(n) = args.number("--batch")? {
                config.batch = n;
            }
            if let Some(n) = args.number("--batch-bytes")? {
                config.batch_bytes = n;
            }
            config.log = Some(stderr_log("shmring-bridge out: "));
            args.finish()?;
            Bridge::Out(Box::new(BridgeOut::new(config).map_err(failure)?))
        }
        Some("in") => {
            let nats = nats_options(&mut args)?;
            let stream = args.required("--stream")?;
            let consumer = args.required("--consumer")?;
            let queue = args.required("--queue")?;
            let subject = args.value("--subject")?;
            let mut config = InConfig::new(nats, stream.clone(), consumer, queue);
            config.create_stream = stream_settings(&mut args, Some(stream), subject)?;
            config.filter_subject = args.value("--filter-subject")?;
            if let Some(n) = args.number("--batch")? {
                config.batch = n;
            }
            if let Some(t) = args.seconds("--ack-wait")? {
                config.ack_wait = t;
            }
            if let Some(n) = args.number("--max-ack-pending")? {
                config.max_ack_pending = n;
            }
            config.log = Some(stderr_log("shmring-bridge in: "));
            args.finish()?;
            Bridge::In(Box::new(BridgeIn::new(config).map_err(failure)?))
        }
        Some(other) => {
            return Err(usage(format!(
                "unknown command {other:?} (out or in; see --help)"
            )))
        }
        None => unreachable!("handled above"),
    };
    Ok(Some((bridge, stats)))
}

/// Triggers `shutdown` at the first SIGINT or SIGTERM.
async fn on_signal(shutdown: Shutdown) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    eprintln!("shmring-bridge: stopping (finishing what is in flight)");
    shutdown.trigger();
}

/// Prints the counters every `every` when they changed.
async fn print_stats(counters: std::sync::Arc<Counters>, every: Duration) {
    let mut last = counters.snapshot();
    loop {
        tokio::time::sleep(every).await;
        let now = counters.snapshot();
        if now != last {
            eprintln!("shmring-bridge: {now}");
            last = now;
        }
    }
}

fn run(argv: Vec<String>) -> Result<(), Failure> {
    let Some((bridge, stats)) = parse(argv)? else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: EXIT_ERROR,
            message: format!("cannot start a tokio runtime: {e}"),
        })?;
    let shutdown = Shutdown::new();
    let result = runtime.block_on(async {
        tokio::spawn(on_signal(shutdown.clone()));
        let counters = match &bridge {
            Bridge::Out(b) => b.counters(),
            Bridge::In(b) => b.counters(),
        };
        if !stats.is_zero() {
            tokio::spawn(print_stats(counters.clone(), stats));
        }
        let result = match bridge {
            Bridge::Out(b) => (*b).run(shutdown).await,
            Bridge::In(b) => (*b).run(shutdown).await,
        };
        eprintln!("shmring-bridge: final counters: {}", counters.snapshot());
        result
    });
    result.map_err(failure)
}

/// Runs the command line `argv` (what follows `shmring bridge`, or
/// `shmring-bridge`: `out ...` or `in ...`) to its end: until SIGINT or
/// SIGTERM, the local queue shut down, or an error. Returns the exit code
/// ([`HELP`] lists them); errors are printed on stderr.
pub fn main(argv: Vec<std::ffi::OsString>) -> ExitCode {
    let argv: Result<Vec<String>, _> = argv.into_iter().map(|a| a.into_string()).collect();
    let result = match argv {
        Ok(argv) => run(argv),
        Err(a) => Err(usage(format!("argument {a:?} is not UTF-8"))),
    };
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(f) => {
            eprintln!("shmring-bridge: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
