//! `shmring stat` shows the bridges of a queue from their stats records,
//! with real `shmring bridge out` processes and a real `nats-server -js`;
//! `shmring gc` removes only a dead bridge's record.
#![cfg(feature = "bridge")]

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use shmring::queue::Queue;
use shmring_testkit::{signal, unique_name, wait_until, Watchdog};

#[path = "../../shmring-bridge/tests/support/nats.rs"]
mod nats;
use nats::NatsServer;

fn shmring(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmring"))
        .args(args)
        .output()
        .expect("run shmring")
}

fn stat_json(name: &str) -> serde_json::Value {
    let out = shmring(&["stat", name, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stat --json is JSON")
}

/// The bridges of `stat --json`, by pid.
fn bridges(name: &str) -> Vec<serde_json::Value> {
    stat_json(name)["bridges"]
        .as_array()
        .expect("a bridges array")
        .clone()
}

fn of_pid(list: &[serde_json::Value], pid: u32) -> Option<serde_json::Value> {
    list.iter().find(|b| b["pid"] == pid).cloned()
}

/// Children killed when the test ends, however it ends.
struct Kids(Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn bridge_out(queue: &str, url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_shmring"))
        .args(["bridge", "out", "--queue", queue, "--nats", url])
        .args(["--subject", "st.jobs", "--stream", "ST", "--create-stream"])
        .args(["--stats", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start shmring bridge out")
}

fn counter(b: &serde_json::Value, name: &str) -> u64 {
    b["counters"][name].as_u64().expect("a counter")
}

/// Two outbound bridges on one queue: stat shows both alive, their acked
/// counts adding up to what was sent; SIGKILL one: stat says it is dead;
/// gc removes its record and not the live one's; the live one stopped by
/// SIGTERM removes its own record.
#[test]
fn stat_shows_live_and_dead_bridges_and_gc_removes_only_dead_records() {
    let Some(server) = NatsServer::start("stat_bridges", None) else {
        return;
    };
    let _watchdog = Watchdog::new(Duration::from_secs(180), "stat bridges");
    const N: u64 = 300;
    let name = unique_name("st-br");
    let q = Queue::<Vec<u8>>::builder()
        .maxsize(0)
        .producers(4)
        .create(&name)
        .expect("create the queue");
    // One bridge: its counts are exactly what was sent.
    let mut kids = Kids(vec![bridge_out(&name, &server.url)]);
    let first = kids.0[0].id();
    for i in 0..N {
        q.put(i.to_le_bytes().to_vec()).unwrap();
    }
    let of_first = |key: &str| of_pid(&bridges(&name), first).map(|b| counter(&b, key));
    assert!(
        wait_until(Duration::from_secs(60), || of_first("acked") == Some(N)),
        "acked {:?} of {N}",
        of_first("acked")
    );
    assert!(q.is_empty());
    let b = of_pid(&bridges(&name), first).unwrap();
    assert_eq!(b["state"], "alive", "{b}");
    assert_eq!(b["direction"], "out");
    assert_eq!(counter(&b, "published"), N, "{b}");
    assert_eq!(counter(&b, "deduplicated"), 0, "{b}");
    assert_eq!(counter(&b, "retries"), 0, "{b}");
    let text = String::from_utf8_lossy(&shmring(&["stat", &name]).stdout).into_owned();
    assert!(text.contains(&format!("pid {first:<8} alive")), "{text}");
    assert!(
        text.contains(&format!("published {N} acked {N} deduplicated 0")),
        "{text}"
    );

    // A second bridge on the same queue: both peek the same messages, so
    // both may publish one; JetStream stores it once (the same message id)
    // and one commit takes it. Over both: acks less duplicates = stored =
    // N more, acks less taken-elsewhere = taken from the queue = N more.
    kids.0.push(bridge_out(&name, &server.url));
    let pids: Vec<u32> = kids.0.iter().map(Child::id).collect();
    assert!(
        wait_until(Duration::from_secs(30), || of_pid(&bridges(&name), pids[1])
            .is_some()),
        "the second bridge shows up"
    );
    for i in 0..N {
        q.put(i.to_le_bytes().to_vec()).unwrap();
    }
    let sums = || {
        bridges(&name).iter().fold((0, 0), |(stored, taken), b| {
            (
                stored + counter(b, "acked") - counter(b, "deduplicated"),
                taken + counter(b, "acked") - counter(b, "taken_elsewhere"),
            )
        })
    };
    assert!(
        wait_until(Duration::from_secs(60), || sums() == (2 * N, 2 * N)
            && q.is_empty()),
        "stored and taken {:?} of {}",
        sums(),
        2 * N
    );
    // The queue is empty, but a bridge may still await the acks of a
    // batch it published (messages the other one had taken meanwhile):
    // every publish is acknowledged soon after.
    assert!(
        wait_until(Duration::from_secs(30), || bridges(&name)
            .iter()
            .all(|b| counter(b, "published") == counter(b, "acked"))),
        "every publish acknowledged: {:?}",
        bridges(&name)
    );
    let list = bridges(&name);
    assert_eq!(list.len(), 2, "{list:?}");
    for b in &list {
        assert_eq!(b["state"], "alive", "{b}");
    }
    let text = String::from_utf8_lossy(&shmring(&["stat", &name]).stdout).into_owned();
    assert!(text.contains("bridges (2 alive, 0 not)"), "{text}");
    assert!(
        text.contains(&format!("pid {:<8} alive", pids[0])),
        "{text}"
    );

    // SIGKILL the first: dead, and said so.
    signal(pids[0], libc::SIGKILL);
    let _ = kids.0[0].wait();
    let list = bridges(&name);
    let dead = of_pid(&list, pids[0]).expect("the dead bridge's record stays");
    assert_eq!(dead["state"], "dead", "{dead}");
    assert_eq!(dead["alive"], false);
    assert_eq!(of_pid(&list, pids[1]).unwrap()["state"], "alive");
    let text = String::from_utf8_lossy(&shmring(&["stat", &name]).stdout).into_owned();
    assert!(text.contains("DEAD (killed;"), "{text}");
    eprintln!("{text}");
    let dead_record = dead["record"].as_str().unwrap().to_owned();

    // gc: the dead record goes, the live one stays (also on a dry run
    // first, which removes nothing).
    let dry = shmring(&["gc", "--dry-run", &name]);
    let dry_text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry_text.contains(&format!("would remove bridge record {dead_record}")),
        "{dry_text}"
    );
    assert!(std::path::Path::new(&dead_record).exists());
    let gc = shmring(&["gc", "--json", &name]);
    assert_eq!(gc.status.code(), Some(0));
    let gc: serde_json::Value = serde_json::from_slice(&gc.stdout).unwrap();
    let removed = gc["bridge_records"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{gc}");
    assert_eq!(removed[0]["record"], dead_record.as_str());
    assert_eq!(removed[0]["outcome"], "removed");
    assert!(!std::path::Path::new(&dead_record).exists());
    let list = bridges(&name);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["pid"], pids[1]);

    // SIGTERM the second: a clean exit removes its own record.
    signal(pids[1], libc::SIGTERM);
    let status = kids.0[1].wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(bridges(&name).is_empty(), "{:?}", bridges(&name));
    drop(q);
    let _ = shmring(&["rm", &name]);
}

/// A corrupted record under a queue's record name: `stat` reports it (text
/// and JSON) and exits 0, no panic; `gc` keeps it (not a proven record).
#[test]
fn a_corrupted_record_is_reported_and_kept() {
    let name = unique_name("st-bad");
    let q = Queue::<Vec<u8>>::builder()
        .maxsize(0)
        .create(&name)
        .expect("create the queue");
    let body = name.trim_start_matches('/');
    let path = format!("/dev/shm/.shmring-bridge.out.4000000-0.{body}");
    let mut bytes = vec![0xa5u8; 448];
    bytes[..8].copy_from_slice(b"SHMRBRDG");
    bytes[8..12].copy_from_slice(&1u32.to_ne_bytes());
    bytes[12..16].copy_from_slice(&448u32.to_ne_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let out = shmring(&["stat", &name]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text.contains("invalid record") && text.contains("unknown direction"),
        "{text}"
    );
    let json = stat_json(&name);
    assert_eq!(json["bridges"].as_array().unwrap().len(), 0);
    let errors = json["bridge_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{json}");
    let gc = shmring(&["gc", &name]);
    assert!(
        String::from_utf8_lossy(&gc.stderr).contains("not a valid record"),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    assert!(std::path::Path::new(&path).exists(), "gc keeps it");

    // A valid record of a dead bridge (nobody holds its lock) goes with
    // the queue at `rm`; the invalid one stays.
    let dead = format!("/dev/shm/.shmring-bridge.in.4000001-0.{body}");
    bytes[20..24].copy_from_slice(&2u32.to_ne_bytes()); // in
    bytes[24..28].copy_from_slice(&9u32.to_ne_bytes()); // counters
    bytes[28..32].copy_from_slice(&(name.len() as u32).to_ne_bytes());
    bytes[40..48].copy_from_slice(&1u64.to_ne_bytes()); // running
    bytes[192..192 + name.len()].copy_from_slice(name.as_bytes());
    std::fs::write(&dead, &bytes).unwrap();
    let b = bridges(&name);
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0]["state"], "dead");
    assert_eq!(b[0]["pid"], 0xa5a5_a5a5u32);
    drop(q);
    // The queue's creator removed it at its drop: rm says so (3), and
    // still removes the dead bridge's record.
    let rm = shmring(&["rm", &name]);
    let rm_text = String::from_utf8_lossy(&rm.stdout);
    assert_eq!(rm.status.code(), Some(3), "{rm_text}");
    assert!(
        rm_text.contains(&format!("removed bridge record {dead}")),
        "{rm_text}"
    );
    assert!(!std::path::Path::new(&dead).exists());
    assert!(
        std::path::Path::new(&path).exists(),
        "rm keeps the invalid one"
    );
    std::fs::remove_file(&path).unwrap();
}
