//! Blocking wake-up between two threads: a consumer asleep in `pop` (spin
//! budget 0, so it really sleeps on the futex) woken by a push; each
//! iteration is one such hand-off and the echo back. Beside it, the same
//! ping-pong with the default policy (spin 5 µs, then sleep).

use shmring::core::wait::Until;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use shmring::spsc::Ring;
use shmring::WaitPolicy;

/// A 64 KiB ring, messages up to 1 KiB.
fn ring() -> Ring {
    Ring::builder()
        .ring_bytes(1 << 16)
        .max_message(1024)
        .anonymous()
        .expect("ring")
}

fn ping_pong(c: &mut Criterion, name: &str, policy: WaitPolicy) {
    let there = ring();
    let back = ring();
    let mut tx = there.producer().expect("producer");
    let mut rx = back.consumer().expect("consumer");
    let mut peer_rx = there.consumer().expect("consumer");
    let mut peer_tx = back.producer().expect("producer");
    for p in [
        &mut peer_rx as &mut dyn SetPolicy,
        &mut peer_tx,
        &mut tx,
        &mut rx,
    ] {
        p.set(policy);
    }
    let echo = std::thread::spawn(move || {
        let mut buf = Vec::new();
        while peer_rx
            .pop(&mut buf, Until::after(Duration::from_secs(30)))
            .is_ok()
        {
            if buf.is_empty() {
                break;
            }
            peer_tx.push(&buf, Until::Never).expect("echo");
        }
    });
    let mut buf = Vec::new();
    c.bench_function(name, |b| {
        b.iter(|| {
            tx.push(b"wake up!", Until::Never).expect("push");
            rx.pop(&mut buf, Until::Never).expect("pop");
        })
    });
    tx.push(b"", Until::Never).expect("stop");
    echo.join().expect("echo thread");
}

trait SetPolicy {
    fn set(&mut self, p: WaitPolicy);
}

impl SetPolicy for shmring::spsc::Producer {
    fn set(&mut self, p: WaitPolicy) {
        self.set_wait_policy(p);
    }
}

impl SetPolicy for shmring::spsc::Consumer {
    fn set(&mut self, p: WaitPolicy) {
        self.set_wait_policy(p);
    }
}

fn wake_up(c: &mut Criterion) {
    let sleep = WaitPolicy {
        spin_ns: 0,
        max_spin_ns: 0,
        ..WaitPolicy::default()
    };
    ping_pong(c, "blocking round trip, sleeper woken (spin 0)", sleep);
    ping_pong(
        c,
        "blocking round trip, default policy",
        WaitPolicy::default(),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = wake_up
}
criterion_main!(benches);
