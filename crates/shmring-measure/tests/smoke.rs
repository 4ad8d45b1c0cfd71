//! Every mechanism, in every mode it supports, with tiny counts: the two
//! processes agree on the protocol and the figures are sane. Also a custom
//! link (two shmring rings with a handshake) through the public driver.

use shmring::core::wait::Until;
use std::process::Command;

use std::time::Duration;

use shmring::spsc::{self, Ring};
use shmring_measure::custom::{self, check, stamp, Link, LinkSpec, Peer};
use shmring_measure::{
    dict_update, round_trip, stream, stream_with, MeasureError, Mechanism, Mode, Params, Tuning,
};

/// The custom link's name.
const RINGS: &str = "test-rings";
/// The sequence number of the peer's handshake message.
const HELLO: u64 = u64::MAX;
/// Longest a blocking call of the custom link waits.
const WAIT: Duration = Duration::from_secs(60);

/// A custom link: one SPSC ring per direction, blocking calls.
struct Rings {
    tx: spsc::Producer,
    rx: spsc::Consumer,
    payload: usize,
    is_peer: bool,
}

fn transport(e: impl std::fmt::Display) -> MeasureError {
    MeasureError::Transport(e.to_string())
}

impl Rings {
    fn parent(spec: &LinkSpec, cmd: &mut Command) -> Result<Rings, MeasureError> {
        let there = Ring::builder()
            .ring_bytes(1 << 20)
            .max_message(64 << 10)
            .anonymous()
            .map_err(transport)?;
        let back = Ring::builder()
            .ring_bytes(1 << 20)
            .max_message(64 << 10)
            .anonymous()
            .map_err(transport)?;
        there
            .share_with_child(cmd, "SMOKE_THERE")
            .map_err(transport)?;
        back.share_with_child(cmd, "SMOKE_BACK")
            .map_err(transport)?;
        Ok(Rings {
            tx: there.producer().map_err(transport)?,
            rx: back.consumer().map_err(transport)?,
            payload: spec.payload,
            is_peer: false,
        })
    }

    fn child(spec: &LinkSpec) -> Result<Rings, MeasureError> {
        let there = Ring::builder()
            .open_inherited("SMOKE_THERE")
            .map_err(transport)?;
        let back = Ring::builder()
            .open_inherited("SMOKE_BACK")
            .map_err(transport)?;
        Ok(Rings {
            tx: back.producer().map_err(transport)?,
            rx: there.consumer().map_err(transport)?,
            payload: spec.payload,
            is_peer: true,
        })
    }
}

impl Link for Rings {
    fn connect(&mut self) -> Result<(), MeasureError> {
        let mut hello = vec![0u8; self.payload];
        stamp(&mut hello, HELLO);
        if self.is_peer {
            return self.send(&hello);
        }
        let mut buf = Vec::new();
        self.recv(&mut buf)?;
        check(&buf, self.payload, HELLO)
    }

    fn send(&mut self, msg: &[u8]) -> Result<(), MeasureError> {
        self.tx.push(msg, Until::after(WAIT)).map_err(transport)
    }

    /// Sleeps in the ring's blocking pop; the deadline stands in for
    /// [`custom::Spin`]'s watchdog.
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<(), MeasureError> {
        self.rx
            .pop(buf, Until::after(WAIT))
            .map(drop)
            .map_err(transport)
    }
}

fn serve(peer: &Peer<'_>) -> Result<(), MeasureError> {
    assert_eq!(peer.spec().name, RINGS);
    peer.serve(&mut Rings::child(peer.spec())?)
}

fn custom_link() {
    let p = Params {
        payload: 64,
        messages: 300,
        round_trips: 100,
        ..Params::default()
    };
    let l = custom::round_trip(RINGS, &p, Rings::parent).expect("custom round trip");
    assert_eq!(l.samples, 100);
    assert!(l.min_ns > 0 && l.p50_ns <= l.p99_ns);
    let t = custom::stream(RINGS, &p, Rings::parent).expect("custom stream");
    assert!(t.msgs_per_s > 0.0 && t.bytes_per_s > 0.0);
    let bad = custom::round_trip("two words", &p, Rings::parent);
    assert!(matches!(bad, Err(MeasureError::InvalidParams(_))));
}

fn main() {
    custom::run_peer_if_child(serve);
    let started = std::time::Instant::now();
    for payload in [8, 1024, 64 << 10] {
        for mode in Mode::ALL {
            for m in Mechanism::ALL {
                let p = Params {
                    payload,
                    messages: 300,
                    round_trips: 100,
                    mode,
                    pin: payload == 8,
                    busy: 0,
                };
                match round_trip(m, &p) {
                    Ok(l) => {
                        assert_eq!(l.samples, 100, "{m} {mode}");
                        assert!(l.min_ns > 0 && l.p50_ns <= l.p99_ns && l.p999_ns <= l.max_ns);
                        assert!(l.slow_run <= l.slow_count && l.slow_count <= l.samples);
                        assert_eq!(l.curve[0], l.p50_ns);
                    }
                    Err(e) if !m.supports(mode) => assert!(e.is_not_applicable(), "{e}"),
                    Err(e) => panic!("round trip {m} {mode} {payload} B: {e}"),
                }
                match stream(m, &p) {
                    Ok(t) => assert!(t.msgs_per_s > 0.0 && t.bytes_per_s > 0.0, "{m} {mode}"),
                    Err(e) if !m.supports_stream(mode) => assert!(e.is_not_applicable(), "{e}"),
                    Err(e) => panic!("stream {m} {mode} {payload} B: {e}"),
                }
            }
        }
    }
    let p = Params {
        messages: 1000,
        ..Params::default()
    };
    let batched = Tuning {
        batch: 32,
        ..Tuning::default()
    };
    stream_with(Mechanism::ShmringSpsc, &p, &batched).expect("batched stream");
    let sleeping = Tuning {
        spin_ns: Some(0),
        ..Tuning::default()
    };
    let blocking = Params {
        mode: Mode::Blocking,
        round_trips: 100,
        ..p.clone()
    };
    shmring_measure::round_trip_with(Mechanism::ShmringSpsc, &blocking, &sleeping)
        .expect("sleeping round trip");
    // The spinning futex floor with no spin: every receive sleeps (the
    // sleeper bit and the conditional wake on every message).
    let l = shmring_measure::round_trip_with(Mechanism::FutexSpin, &blocking, &sleeping)
        .expect("futex-spin without a spin");
    assert_eq!(l.samples, 100);
    // A spin budget means nothing to the typed queue (no policy setter).
    for m in [Mechanism::ShmringQueueVec, Mechanism::ShmringQueueVecInto] {
        assert!(shmring_measure::round_trip_with(m, &blocking, &sleeping)
            .is_err_and(|e| e.is_not_applicable()));
    }
    assert!(stream_with(Mechanism::Pipe, &p, &batched).is_err_and(|e| e.is_not_applicable()));
    let d = dict_update(&Params {
        messages: 500,
        ..Params::default()
    })
    .expect("dict");
    assert!(d.msgs_per_s > 0.0);
    assert_eq!(
        "futex".parse::<Mechanism>().unwrap(),
        Mechanism::FutexPingPong
    );
    assert_eq!(Mechanism::UnixSocket.to_string(), "unix-socket");
    assert_eq!("blocking".parse::<Mode>().unwrap(), Mode::Blocking);
    assert_eq!(
        "futex-spin".parse::<Mechanism>().unwrap(),
        Mechanism::FutexSpin
    );
    assert_eq!(
        "shmring-queue-vec".parse::<Mechanism>().unwrap(),
        Mechanism::ShmringQueueVec
    );
    assert_eq!(
        "shmring-queue-vec-into".parse::<Mechanism>().unwrap(),
        Mechanism::ShmringQueueVecInto
    );
    custom_link();
    busy_loops();
    println!("smoke: ok in {:.2} s", started.elapsed().as_secs_f64());
}

/// The live (or unreaped) child processes of this process, from `/proc`.
fn children() -> Vec<u32> {
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue; // gone meanwhile
        };
        // pid (comm) state ppid ...: the command may hold spaces and
        // parentheses, so split after its last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me) {
            pids.push(pid);
        }
    }
    pids
}

/// The CPUs a process may run on (`Cpus_allowed_list`, as the kernel
/// writes it: `0-1`, `3`).
fn cpus_allowed(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list")
        .trim()
        .to_string()
}

/// The CPUs this process may run on, as indices.
fn my_cpus() -> Vec<usize> {
    let list = cpus_allowed(std::process::id());
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

/// `--busy`: the busy loops run during the measurement, pinned to the
/// peer's CPU when pinning is on (unpinned otherwise), and none is left
/// after it, whether it succeeded, failed or panicked.
fn busy_loops() {
    assert!(children().is_empty(), "children before: {:?}", children());
    let p = Params {
        payload: 8,
        round_trips: 100,
        messages: 300,
        mode: Mode::Blocking,
        pin: true,
        busy: 2,
    };
    let l = round_trip(Mechanism::FutexSpin, &p).expect("round trip beside busy loops");
    assert_eq!(l.samples, 100);
    assert!(children().is_empty(), "left behind: {:?}", children());
    let t = stream(Mechanism::ShmringSpsc, &p).expect("stream beside busy loops");
    assert!(t.msgs_per_s > 0.0);
    assert!(children().is_empty(), "left behind: {:?}", children());

    // Inside a measurement (the custom link's `open` runs after the busy
    // loops started and before the peer): exactly `busy` children, where
    // they belong; then an error ends the measurement.
    let cpus = my_cpus();
    for pin in [true, false] {
        let p = Params { pin, ..p.clone() };
        let failed = custom::round_trip(RINGS, &p, |_: &LinkSpec, _: &mut Command| {
            let kids = children();
            assert_eq!(kids.len(), 2, "busy loops running: {kids:?}");
            for kid in kids {
                let allowed = cpus_allowed(kid);
                if pin && cpus.len() >= 2 {
                    assert_eq!(allowed, cpus[1].to_string(), "pinned to the peer's CPU");
                } else {
                    assert_eq!(allowed, cpus_allowed(std::process::id()), "unpinned");
                }
            }
            Err::<Rings, _>(MeasureError::Transport("planted failure".into()))
        });
        assert!(
            matches!(&failed, Err(MeasureError::Transport(m)) if m == "planted failure"),
            "{failed:?}"
        );
        assert!(children().is_empty(), "left behind: {:?}", children());
    }

    // A panic inside the measurement unwinds through the busy loops' guard.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let panicked = std::panic::catch_unwind(|| {
        let _ = custom::round_trip(RINGS, &p, |_: &LinkSpec, _: &mut Command| {
            assert_eq!(children().len(), 2);
            panic!("planted panic");
            #[allow(unreachable_code)]
            Err::<Rings, _>(MeasureError::Timeout)
        });
    });
    std::panic::set_hook(hook);
    assert!(panicked.is_err());
    assert!(children().is_empty(), "left behind: {:?}", children());

    let too_many = Params {
        busy: shmring_measure::MAX_BUSY + 1,
        ..p
    };
    assert!(matches!(
        round_trip(Mechanism::FutexSpin, &too_many),
        Err(MeasureError::InvalidParams(_))
    ));
}
