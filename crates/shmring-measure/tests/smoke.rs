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
                };
                match round_trip(m, &p) {
                    Ok(l) => {
                        assert_eq!(l.samples, 100, "{m} {mode}");
                        assert!(l.min_ns > 0 && l.p50_ns <= l.p99_ns && l.p999_ns <= l.max_ns);
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
    custom_link();
    println!("smoke: ok in {:.2} s", started.elapsed().as_secs_f64());
}
