//! The operator's view of `shmring`, one test per finding of a review:
//! `rm` of a live segment, names that carry terminal escapes, numeric
//! options that panicked, warnings that flooded, and a `gc` that removed
//! data, other users' files and files that merely start with the magic.
//! Children are this test binary re-executed to run an entry point (see
//! `shmring_testkit`).

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use common::{
    assert_terminal_safe, entry_as_nobody, euid, is_root, json, queue_builder, retry_busy, shmring,
    shmring_as_nobody, Planted, NOBODY,
};
use shmring::process::{Entry, EntryResult};
use shmring::segment::{self, SegmentInfo};
use shmring::{mpmc, UnlinkPolicy};
use shmring_testkit::{
    run_child, shm_exists, sleep_forever, spawn_child, unique_name, wait_child, wait_until,
    Watchdog,
};

/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";

/// Creates the queue `name`, pushes `count` messages ("0", "1", ...) and
/// waits for its SIGKILL.
fn queue_with_messages((name, count): (String, u32)) -> EntryResult {
    let _dog = Watchdog::new(Duration::from_secs(60), "child queue_with_messages");
    let q = queue_builder().create(&name)?;
    let mut p = q.producer()?;
    for i in 0..count {
        p.try_push(i.to_string().as_bytes())?;
    }
    sleep_forever();
}
static QUEUE_WITH_MESSAGES: Entry<(String, u32)> = shmring::entry!(queue_with_messages);

/// Runs the children (returns at once in a normal run).
#[test]
fn child_entry() {
    run_child(&[&QUEUE_WITH_MESSAGES]);
}

fn queue_child(name: &str, messages: u32) -> Child {
    let child = spawn_child(
        CHILD_TEST,
        &QUEUE_WITH_MESSAGES,
        (name.to_owned(), messages),
    );
    wait_ready(name, messages);
    child
}

/// Waits until `name` has one live peer and `messages` queued.
fn wait_ready(name: &str, messages: u32) {
    let ready = |i: &SegmentInfo| {
        i.alive_peers() == 1 && i.object.as_ref().and_then(|o| o.depth) == Some(messages.into())
    };
    let seen = wait_until(Duration::from_secs(30), || {
        segment::inspect(name).is_ok_and(|i| ready(&i))
    });
    assert!(seen, "the child never got {name} ready");
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    wait_child(child, Duration::from_secs(30));
}

/// Review: "`shmring rm` removes a live segment silently (exit 0); the next
/// create makes a second, empty queue while the service keeps using the
/// old one."
#[test]
fn rm_refuses_a_segment_with_live_peers_and_names_them() {
    let _dog = Watchdog::new(Duration::from_secs(120), "rm live");
    let name = unique_name("cli-rm-live");
    let child = queue_child(&name, 3);
    let child_pid = child.id();

    let refused = shmring(&["rm", &name]);
    assert_eq!(refused.code, 6, "{}", refused.both());
    assert!(
        refused.stderr.contains("in use by 1 live peer")
            && refused.stderr.contains(&format!("pid {child_pid}"))
            && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    assert_eq!(refused.stdout, "");
    assert!(shm_exists(&name), "a live segment was removed");

    // A second live peer (this process): both pids are named.
    let ours = mpmc::ByteQueue::open(&name).unwrap();
    let refused = shmring(&["rm", &name]);
    assert_eq!(refused.code, 6, "{}", refused.both());
    for pid in [child_pid, std::process::id()] {
        assert!(
            refused.stderr.contains(&pid.to_string()),
            "{pid} in {}",
            refused.stderr
        );
    }
    assert!(
        refused.stderr.contains("2 live peers"),
        "{}",
        refused.stderr
    );
    drop(ours);

    // Dead peers only: an ordinary rm removes it.
    kill(child);
    let removed = shmring(&["rm", &name]);
    assert_eq!(removed.code, 0, "{}", removed.both());
    assert!(!shm_exists(&name));

    // --force removes a live one (and says so).
    let name = unique_name("cli-rm-force");
    let q = queue_builder().create(&name).unwrap();
    let forced = shmring(&["rm", "--force", &name]);
    assert_eq!(forced.code, 0, "{}", forced.both());
    assert!(forced.stdout.contains(&format!("removed {name}")));
    assert!(!shm_exists(&name));
    drop(q);

    // The help says what 6 means.
    assert!(shmring(&["--help"]).stdout.contains("  6  segment in use"));
    assert!(shmring(&["rm", "--help"]).stdout.contains("exit code 6"));
}

/// Review: "Control characters in names reach the terminal raw (`ls`,
/// `stat`, `rm`, `gc`): an escape sequence or a newline forges table rows."
/// Segment names may not hold control characters any more, but they may
/// hold bidirectional overrides and invisible characters, and any user can
/// plant a file under any name: every name printed is escaped.
#[test]
fn names_with_control_characters_are_escaped_in_every_output() {
    let _dog = Watchdog::new(Duration::from_secs(120), "escapes");
    // Valid segment names that reorder or hide text, and a backslash.
    let odd = "-\u{202e}desrever\u{202c}-zw\u{200b}-iso\u{2066}-back\\x1b";
    let escaped = "-\\u{202e}desrever\\u{202c}-zw\\u{200b}-iso\\u{2066}-back\\\\x1b";
    let live = format!("{}{odd}", unique_name("cli-esc-live"));
    let dead = format!("{}{odd}", unique_name("cli-esc-dead"));
    let q = queue_builder().create(&live).unwrap();
    q.producer().unwrap().try_push(b"x").unwrap();
    kill(queue_child(&dead, 0));
    // Files no segment can be, under names with escape sequences and a
    // newline.
    let planted: Vec<Planted> = ["-\x1b[31mRED\x1b[0m", "-\nforged-row", "-\x1b]0;title\x07"]
        .iter()
        .map(|suffix| {
            let body = format!("{}{suffix}", &unique_name("cli-esc-foreign")[1..]);
            Planted::file(body.as_bytes(), b"foreign", 0o600)
        })
        .collect();

    let ls = shmring(&["ls"]);
    assert_eq!(ls.code, 0, "{}", ls.both());
    assert_terminal_safe(&ls, "ls");
    let line = ls
        .stdout
        .lines()
        .find(|l| l.contains("cli-esc-live"))
        .expect("listed");
    assert!(line.contains(escaped), "{line}");
    assert!(!ls.stdout.lines().any(|l| l.starts_with("forged-row")));

    let ls_json = shmring(&["ls", "--json"]);
    assert_terminal_safe(&ls_json, "ls --json");
    let listed = json(&ls_json, "ls --json");
    let names: Vec<&str> = listed["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&live.as_str()), "the JSON name decodes back");
    assert!(names.contains(&dead.as_str()));

    let stat = shmring(&["stat", &live]);
    assert_eq!(stat.code, 0, "{}", stat.both());
    assert_terminal_safe(&stat, "stat");
    assert!(stat
        .stdout
        .starts_with("segment /shmring-test-cli-esc-live"));
    assert!(stat.stdout.lines().next().unwrap().ends_with(escaped));
    let stat_json = shmring(&["stat", "--json", &live]);
    assert_terminal_safe(&stat_json, "stat --json");
    assert_eq!(json(&stat_json, "stat --json")["name"], live.as_str());
    let watch = shmring(&["stat", "--json", "--count", "2", "--watch", "0.01", &live]);
    assert_terminal_safe(&watch, "stat --watch --json");
    assert_eq!(common::json_lines(&watch, "watch").len(), 2);

    // rm refuses the live one (its name in the message is escaped)...
    let rm = shmring(&["rm", &live]);
    assert_eq!(rm.code, 6, "{}", rm.both());
    assert_terminal_safe(&rm, "rm");
    assert!(rm.stderr.contains(escaped), "{}", rm.stderr);
    // ...and gc lists and removes the dead one.
    for args in [vec!["gc", "--dry-run", &dead], vec!["gc", "--json", &dead]] {
        let gc = shmring(&args);
        assert_eq!(gc.code, 0, "{}", gc.both());
        assert_terminal_safe(&gc, "gc");
    }
    assert!(!shm_exists(&dead));
    let rm = shmring(&["rm", "--force", &live]);
    assert_eq!(rm.code, 0, "{}", rm.both());
    assert_terminal_safe(&rm, "rm --force");
    assert!(rm.stdout.contains(escaped), "{}", rm.stdout);
    drop(q);

    // The planted files: every subcommand naming them says so safely.
    for p in &planted {
        let name = p.path.file_name().unwrap().to_str().unwrap().to_owned();
        for args in [
            vec!["stat", name.as_str()],
            vec!["stat", "--json", name.as_str()],
            vec!["rm", name.as_str()],
            vec!["rm", "--force", name.as_str()],
            vec!["gc", name.as_str()],
        ] {
            let r = shmring(&args);
            assert_eq!(r.code, 2, "{args:?}: {}", r.both());
            assert_terminal_safe(&r, &format!("{args:?}"));
        }
        assert!(p.exists());
    }
}

/// Review: "`stat --watch 1e20` panics (exit 101): a usage error instead",
/// and every other numeric option of the same class.
#[test]
fn numeric_options_out_of_range_are_usage_errors() {
    let name = unique_name("cli-numeric");
    let mut cases: Vec<Vec<String>> = Vec::new();
    for watch in [
        "1e20", "1e400", "inf", "-inf", "nan", "-1", "0", "1e-300", "86401",
    ] {
        cases.push(vec!["--watch".into(), watch.into()]);
        cases.push(vec![format!("--watch={watch}")]);
    }
    for watch in ["", "x", "0x10"] {
        cases.push(vec![format!("--watch={watch}")]);
    }
    for count in [
        "0",
        "-1",
        "1e3",
        "1.5",
        "nan",
        "",
        "18446744073709551616",
        "99999999999999999999999999",
    ] {
        cases.push(vec!["--count".into(), count.into()]);
    }
    for case in cases {
        let mut args = vec!["stat".to_owned(), name.clone()];
        args.extend(case.iter().cloned());
        let r = shmring(&args);
        assert_eq!(r.code, 2, "{case:?}: {}", r.both());
        assert_eq!(r.stderr.lines().count(), 1, "{case:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("shmring: "), "{case:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{case:?}: {}", r.stderr);
    }
    // A value in range is taken (and then the segment is missing: 3).
    assert_eq!(
        shmring(&["stat", &name, "--watch", "0.01", "--count", "1"]).code,
        3
    );
}

/// Review: "Unreadable files that are not shmring's flood `ls` and `gc`
/// with one warning each, every run: summarise."
#[test]
fn unreadable_files_are_summarised_in_one_line() {
    if !is_root() {
        eprintln!("skipped: needs root to run the binary as another uid");
        return;
    }
    let prefix = unique_name("cli-unreadable");
    let planted: Vec<Planted> = (0..40)
        .map(|i| {
            let body = format!("{}-{i}", &prefix[1..]);
            Planted::file(body.as_bytes(), b"not readable by nobody", 0o600)
        })
        .collect();
    for args in [vec!["ls"], vec!["gc", "--dry-run"]] {
        let r = shmring_as_nobody(&args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.both());
        assert!(
            r.stderr.lines().count() <= 3,
            "{args:?}: one line per kind of skipped file, not one per file:\n{}",
            r.stderr
        );
        assert!(
            r.stderr
                .contains("skipped: permission denied; --verbose lists them"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains(&prefix[1..]), "{}", r.stderr);

        let mut verbose = args.clone();
        verbose.push("--verbose");
        let r = shmring_as_nobody(&verbose);
        assert_eq!(r.code, 0, "{verbose:?}: {}", r.both());
        for p in &planted {
            assert!(
                r.stderr
                    .contains(&format!("skipped {}: permission denied", p.name())),
                "{verbose:?}: {} in {}",
                p.name(),
                r.stderr
            );
        }

        let mut with_json = args.clone();
        with_json.push("--json");
        let r = shmring_as_nobody(&with_json);
        let out = json(&r, "--json");
        let skipped = out["skipped"].as_array().unwrap();
        for p in &planted {
            assert!(
                skipped
                    .iter()
                    .any(|s| s["name"] == p.name().as_str() && s["why"] == "permission-denied"),
                "{} in {out}",
                p.name()
            );
        }
    }
    assert!(planted.iter().all(Planted::exists));
}

/// Review: "`shmring gc` shows the depth and removes data only with an
/// explicit flag." The queue of a killed service keeps its messages for the
/// restarted service.
#[test]
fn gc_keeps_an_abandoned_queue_that_holds_data_unless_told() {
    let _dog = Watchdog::new(Duration::from_secs(120), "gc data");
    let name = unique_name("cli-gc-data");
    kill(queue_child(&name, 100));

    let dry = shmring(&["gc", "--dry-run", &name]);
    assert_eq!(dry.code, 0, "{}", dry.both());
    assert!(
        dry.stdout.starts_with(&format!(
            "kept {name} (mpmc-queue, 100 messages): it holds data"
        )),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("--include-data"), "{}", dry.stdout);

    let gc = shmring(&["gc", "--json", &name]);
    assert_eq!(gc.code, 0, "{}", gc.both());
    let out = json(&gc, "gc --json");
    let entry = &out["segments"][0];
    assert_eq!(entry["name"], name.as_str());
    assert_eq!(entry["kind"], "mpmc-queue");
    assert_eq!(entry["depth"], 100);
    assert_eq!(entry["holds_data"], true);
    assert_eq!(entry["outcome"], "kept");
    assert!(shm_exists(&name), "gc removed undelivered messages");

    let dry = shmring(&["gc", "--dry-run", "--include-data", &name]);
    assert!(
        dry.stdout
            .starts_with(&format!("would remove {name} (mpmc-queue, 100 messages)")),
        "{}",
        dry.stdout
    );
    assert!(shm_exists(&name));

    // The restarted service gets every message (and its clean drop, the
    // last live peer's, removes the name).
    let q = mpmc::ByteQueue::open(&name).unwrap();
    let mut c = q.consumer();
    let mut buf = Vec::new();
    let mut got = Vec::new();
    while c.try_pop(&mut buf).is_ok() {
        got.push(String::from_utf8(buf.clone()).unwrap());
    }
    let want: Vec<String> = (0..100).map(|i: u32| i.to_string()).collect();
    assert_eq!(got, want);
    drop((c, q));

    // Told to, gc removes data.
    let other = unique_name("cli-gc-data-lost");
    kill(queue_child(&other, 5));
    let gc = shmring(&["gc", "--include-data", &other]);
    assert_eq!(gc.code, 0, "{}", gc.both());
    assert!(
        gc.stdout
            .starts_with(&format!("removed {other} (mpmc-queue, 5 messages)")),
        "{}",
        gc.stdout
    );
    assert!(!shm_exists(&other));
}

/// Review: "root's `gc` removes other users' files."
#[test]
fn gc_leaves_other_users_segments_alone_unless_all_users() {
    if !is_root() {
        eprintln!("skipped: needs root to create a segment as another uid");
        return;
    }
    let _dog = Watchdog::new(Duration::from_secs(120), "gc other users");
    let name = unique_name("cli-gc-nobody");
    let child = retry_busy(
        &mut entry_as_nobody(&QUEUE_WITH_MESSAGES, (name.clone(), 0)),
        Command::spawn,
    );
    wait_ready(&name, 0);
    kill(child);
    let info = segment::inspect(&name).unwrap();
    assert_eq!(info.owner_uid, NOBODY);
    assert!(info.is_abandoned());
    assert_ne!(euid(), NOBODY);

    let gc = shmring(&["gc", &name]);
    assert_eq!(gc.code, 0, "{}", gc.both());
    assert!(
        gc.stdout.starts_with(&format!(
            "kept {name} (mpmc-queue, 0 messages): owned by uid {NOBODY}"
        )),
        "{}",
        gc.stdout
    );
    assert!(gc.stdout.contains("--all-users"), "{}", gc.stdout);
    assert!(
        shm_exists(&name),
        "root's gc removed another user's segment"
    );
    let dry_all = shmring(&["gc", "--dry-run"]);
    assert!(
        !dry_all.stdout.contains(&format!("would remove {name} ")),
        "{}",
        dry_all.stdout
    );

    let gc = shmring(&["gc", "--all-users", &name]);
    assert_eq!(gc.code, 0, "{}", gc.both());
    assert!(
        gc.stdout.starts_with(&format!("removed {name} ")),
        "{}",
        gc.stdout
    );
    assert!(!shm_exists(&name));
}

/// The first 8 bytes of a real segment.
fn magic() -> Vec<u8> {
    let name = unique_name("cli-magic");
    let q = queue_builder()
        .unlink(UnlinkPolicy::OnCreatorDrop)
        .create(&name)
        .unwrap();
    let bytes = std::fs::read(shmring_testkit::shm_path(&name)).unwrap();
    drop(q);
    bytes[..8].to_vec()
}

/// Review: "Remove only what is proven to be a shmring segment (full
/// header checks)": a file that merely starts with the magic is never
/// removed by gc.
#[test]
fn gc_never_removes_a_file_that_only_starts_with_the_magic() {
    let magic = magic();
    let prefix = unique_name("cli-gc-magic");
    let mut zeros = magic.clone();
    zeros.resize(8192, 0);
    let mut garbage = magic.clone();
    garbage.extend(shmring_testkit::pseudo_random_inputs(7, 1, 2).flat_map(|_| [0xa5u8; 8184]));
    let zeros = Planted::file(format!("{}-zeros", &prefix[1..]).as_bytes(), &zeros, 0o600);
    let garbage = Planted::file(
        format!("{}-garbage", &prefix[1..]).as_bytes(),
        &garbage,
        0o600,
    );

    let dry = shmring(&["gc", "--dry-run", "--include-data"]);
    assert!(!dry.stdout.contains(&prefix), "{}", dry.both());
    let gc = shmring(&["gc", "--include-data", &zeros.name(), &garbage.name()]);
    assert_eq!(gc.stdout, "no abandoned segments\n", "{}", gc.both());
    // Both headers fail validation: an error naming each, exit 1.
    assert_eq!(gc.code, 1, "{}", gc.both());
    assert!(gc.stderr.contains(&zeros.name()), "{}", gc.stderr);
    assert!(gc.stderr.contains(&garbage.name()), "{}", gc.stderr);
    assert!(
        zeros.exists() && garbage.exists(),
        "gc removed a foreign file"
    );
}
