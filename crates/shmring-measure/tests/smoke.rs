//! Every mechanism, in every mode it supports, with tiny counts: the two
//! processes agree on the protocol and the figures are sane.

use shmring_measure::{
    dict_update, round_trip, stream, stream_with, Mechanism, Mode, Params, Tuning,
};

fn main() {
    shmring_measure::run_peer_if_child();
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
    println!("smoke: ok in {:.2} s", started.elapsed().as_secs_f64());
}
