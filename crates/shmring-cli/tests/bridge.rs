//! `shmring bridge`: the bridge crate's command line behind the default
//! `bridge` feature (its behaviour with a real nats-server is tested in
//! crates/shmring-bridge/tests/jetstream.rs).
#![cfg(feature = "bridge")]

use std::process::{Command, Output};

fn shmring(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmring"))
        .args(args)
        .output()
        .expect("run shmring")
}

#[test]
fn bridge_help_lists_both_directions_and_exits_0() {
    for args in [
        &["bridge", "--help"][..],
        &["help", "bridge"],
        &["bridge", "out", "-h"],
    ] {
        let out = shmring(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("out --queue NAME --nats URL --subject S"),
            "{args:?}: {text}"
        );
        assert!(text.contains("in  --nats URL --stream S --consumer C --queue NAME"));
        assert!(text.contains("Exit codes"));
    }
    let top = shmring(&["--help"]);
    assert!(String::from_utf8_lossy(&top.stdout).contains("bridge"));
}

#[test]
fn bridge_usage_errors_exit_2_and_a_missing_queue_exits_3() {
    for args in [
        &["bridge"][..],
        &["bridge", "sideways"],
        &[
            "bridge",
            "out",
            "--nats",
            "nats://127.0.0.1:1",
            "--subject",
            "s",
        ],
        &[
            "bridge",
            "in",
            "--nats",
            "nats://127.0.0.1:1",
            "--stream",
            "S",
            "--queue",
            "q",
        ],
        &[
            "bridge",
            "out",
            "--queue",
            "q",
            "--nats",
            "nats://x",
            "--subject",
            "s",
            "--max-msgs",
            "5",
        ],
    ] {
        let out = shmring(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = shmring(&[
        "bridge",
        "out",
        "--queue",
        "shmring-test-no-such-queue-for-the-bridge",
        "--nats",
        "nats://127.0.0.1:1",
        "--subject",
        "s",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not found"), "{err}");
}

/// `shmring bridge --help` lists every option the command line accepts,
/// the environment variables it reads and every exit code.
#[test]
fn bridge_help_lists_every_option_and_exit_code() {
    let out = shmring(&["bridge", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--queue",
        "--subject",
        "--content-type",
        "--batch",
        "--batch-bytes",
        "--stream",
        "--consumer",
        "--filter-subject",
        "--ack-wait",
        "--max-ack-pending",
        "--create-stream",
        "--max-msgs",
        "--max-bytes",
        "--max-age",
        "--duplicate-window",
        "--replicas",
        "--memory",
        "--nats",
        "--creds",
        "--token",
        "--user",
        "--password",
        "--nkey",
        "--tls ",
        "--tls-ca",
        "--tls-cert",
        "--tls-key",
        "--name",
        "--timeout",
        "--stats",
        "NATS_TOKEN",
        "NATS_PASSWORD",
        "NATS_NKEY",
        "shmring stat",
    ] {
        assert!(text.contains(option), "{option} missing from --help");
    }
    for code in ["  0  ", "  1  ", "  2  ", "  3  ", "  4  "] {
        assert!(text.contains(code), "exit code {code:?} missing");
    }
}
