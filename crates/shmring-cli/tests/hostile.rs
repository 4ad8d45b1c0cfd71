//! Every subcommand over a hostile `/dev/shm`: foreign files (random
//! bytes, the magic followed by garbage, a real header with impossible
//! fields, a real header over garbage peer rows, a truncated segment, an
//! empty file), things that are not regular files (a FIFO, symbolic links,
//! a directory), odd names (escape sequences, a newline, bidirectional
//! overrides, 255 bytes, not UTF-8) and files this user cannot read.
//!
//! For each run: no panic, no raw control byte in the output, valid JSON
//! with `--json`, the documented exit code, and nothing foreign removed.
//! The files carry a unique prefix and are removed at the end (other tests
//! share `/dev/shm`); a real `gc` is only ever given our own names.

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::Duration;

use common::{
    assert_terminal_safe, is_root, json, queue_builder, shmring, shmring_as_nobody, Planted, Run,
};
use shmring_testkit::{shm_path, unique_name, Watchdog};

/// What one planted thing is and the exit code `stat` and `rm` (without
/// `--force`) give for it.
struct Case {
    planted: Planted,
    /// The argument naming it (`/` + its file name, raw bytes).
    arg: OsString,
    stat: i32,
    rm: i32,
}

const OK: i32 = 0;
const ERROR: i32 = 1;
const USAGE: i32 = 2;
const NOT_SHMRING: i32 = 4;
const IN_USE: i32 = 6;

fn arg_of(body: &[u8]) -> OsString {
    let mut arg = b"/".to_vec();
    arg.extend_from_slice(body);
    OsString::from_vec(arg)
}

fn case(planted: Planted, stat: i32, rm: i32) -> Case {
    let body = planted.path.file_name().unwrap().as_bytes().to_vec();
    Case {
        planted,
        arg: arg_of(&body),
        stat,
        rm,
    }
}

/// Plants everything under `prefix` (no leading `/`); `real` is a live
/// segment of this process whose file the corrupted copies start from.
fn plant(prefix: &str, real: &[u8]) -> Vec<Case> {
    let body = |suffix: &str| format!("{prefix}-{suffix}").into_bytes();
    let magic = &real[..8];
    let mut cases = Vec::new();

    let random: Vec<u8> = shmring_testkit::pseudo_random_inputs(11, 64, 4096)
        .flatten()
        .collect();
    cases.push(case(
        Planted::file(&body("random"), &random, 0o600),
        NOT_SHMRING,
        NOT_SHMRING,
    ));
    cases.push(case(
        Planted::file(&body("empty"), b"", 0o600),
        NOT_SHMRING,
        NOT_SHMRING,
    ));
    let mut garbage = magic.to_vec();
    garbage.extend(&random);
    cases.push(case(
        Planted::file(&body("magic-garbage"), &garbage, 0o600),
        ERROR,
        ERROR,
    ));
    // Magic, version and ABI tag intact; every other header field 0xff.
    let mut bad_fields = real.to_vec();
    bad_fields[16..256].fill(0xff);
    cases.push(case(
        Planted::file(&body("bad-fields"), &bad_fields, 0o600),
        ERROR,
        ERROR,
    ));
    // A valid header over a peer table of garbage: inspectable, and every
    // garbage row shows as a dead peer with an odd state.
    let mut bad_rows = real.to_vec();
    let rows_end = real.len().min(4096);
    for (i, b) in bad_rows[256..rows_end].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) ^ 0x1b;
    }
    cases.push(case(
        Planted::file(&body("bad-rows"), &bad_rows, 0o600),
        OK,
        OK,
    ));
    cases.push(case(
        Planted::file(&body("truncated"), &real[..real.len() / 2], 0o600),
        ERROR,
        ERROR,
    ));
    // Mode 000: root reads it anyway; nobody cannot (see the nobody test).
    cases.push(case(
        Planted::file(&body("mode000"), &garbage, 0o000),
        if is_root() { ERROR } else { 5 },
        if is_root() { ERROR } else { 5 },
    ));

    let fifo = Planted::new(&body("fifo"));
    let c_path = std::ffi::CString::new(fifo.path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    cases.push(case(fifo, NOT_SHMRING, NOT_SHMRING));

    let dir = Planted::new(&body("dir"));
    std::fs::create_dir(&dir.path).unwrap();
    cases.push(case(dir, NOT_SHMRING, NOT_SHMRING));

    for (suffix, target) in [
        ("link-to-segment", format!("/dev/shm/{prefix}-real")),
        ("link-dangling", format!("/dev/shm/{prefix}-nowhere")),
    ] {
        let link = Planted::new(&body(suffix));
        std::os::unix::fs::symlink(target, &link.path).unwrap();
        cases.push(case(link, NOT_SHMRING, NOT_SHMRING));
    }

    // Control characters: no segment can have such a name (a usage error
    // to name it), and nothing may reach the terminal raw.
    for odd in [
        "osc-\x1b]0;pwned\x07-clear-\x1b[2J\x1b[H",
        "new\nline-fake-row  mpmc-queue  4KiB",
        "cr\rdel\x7fc1-\u{9b}31m",
        "tab\there",
    ] {
        cases.push(case(
            Planted::file(&body(odd), b"foreign data", 0o600),
            USAGE,
            USAGE,
        ));
    }
    // Invisible and reordering characters are valid in names: escaped.
    cases.push(case(
        Planted::file(
            &body("rtl\u{202e}-zw\u{200b}-iso\u{2066}-back\\x1b"),
            b"foreign data",
            0o600,
        ),
        NOT_SHMRING,
        NOT_SHMRING,
    ));
    // 255 bytes: legal for the file system, too long for a segment name.
    let mut long = body("long-");
    long.resize(255, b'L');
    cases.push(case(
        Planted::file(&long, b"foreign data", 0o600),
        USAGE,
        USAGE,
    ));
    // Not UTF-8: no argument can name it (a usage error).
    let mut non_utf8 = body("bytes-");
    non_utf8.extend_from_slice(b"\xff\xfe\x1b[31m\xc3");
    cases.push(case(
        Planted::file(&non_utf8, b"foreign data", 0o600),
        USAGE,
        USAGE,
    ));
    cases
}

fn check(run: &Run, what: &str, code: i32) {
    assert_ne!(run.code, 101, "{what}: panicked\n{}", run.both());
    assert!(!run.stderr.contains("panicked"), "{what}\n{}", run.both());
    assert_terminal_safe(run, what);
    assert_eq!(run.code, code, "{what}: exit code\n{}", run.both());
}

fn describe(arg: &OsString) -> String {
    format!("{:?}", arg)
}

#[test]
fn every_subcommand_survives_a_hostile_dev_shm() {
    let _dog = Watchdog::new(Duration::from_secs(300), "hostile /dev/shm");
    let prefix = unique_name("cli-hostile")[1..].to_owned();
    // A live segment of ours, under an odd name too.
    let real_name = format!("/{prefix}-real");
    let odd_real_name = format!("/{prefix}-real-\u{202e}row\u{200b}");
    let real = queue_builder().create(&real_name).unwrap();
    let odd_real = queue_builder().create(&odd_real_name).unwrap();
    let real_bytes = std::fs::read(shm_path(&real_name)).unwrap();
    let cases = plant(&prefix, &real_bytes);

    for args in [
        vec!["ls"],
        vec!["ls", "--verbose"],
        vec!["gc", "--dry-run"],
        vec!["gc", "--dry-run", "--verbose", "--include-data"],
    ] {
        let r = shmring(&args);
        check(&r, &format!("{args:?}"), OK);
        // The odd live segment is listed on one line, escaped.
        assert!(
            args[0] != "ls"
                || r.stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("/{prefix}-real-\\u{{202e}}row\\u{{200b}} "))),
            "{args:?}\n{}",
            r.stdout
        );
        // No line starts with the text after a planted newline.
        assert!(!r.stdout.lines().any(|l| l.starts_with("line-fake-row")));
    }
    for args in [
        vec!["ls", "--json"],
        vec!["ls", "--json", "--verbose"],
        vec!["gc", "--dry-run", "--json"],
    ] {
        let r = shmring(&args);
        check(&r, &format!("{args:?}"), OK);
        let out = json(&r, &format!("{args:?}"));
        if args[0] == "ls" {
            let names: Vec<&str> = out["segments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap())
                .collect();
            assert!(names.contains(&odd_real_name.as_str()), "{out}");
            assert!(names.contains(&real_name.as_str()), "{out}");
        }
    }

    for c in &cases {
        let what = describe(&c.arg);
        let stat = shmring(&[OsString::from("stat"), c.arg.clone()]);
        check(&stat, &format!("stat {what}"), c.stat);
        let stat_json = shmring(&[OsString::from("stat"), "--json".into(), c.arg.clone()]);
        check(&stat_json, &format!("stat --json {what}"), c.stat);
        if c.stat == OK {
            json(&stat_json, &format!("stat --json {what}"));
        }
        if c.rm != OK {
            let rm = shmring(&[OsString::from("rm"), c.arg.clone()]);
            check(&rm, &format!("rm {what}"), c.rm);
        }
        assert!(c.planted.exists(), "{what} was removed");
    }
    for (name, code) in [(&real_name, IN_USE), (&odd_real_name, IN_USE)] {
        let rm = shmring(&["rm", name.as_str()]);
        check(&rm, &format!("rm {name:?}"), code);
        assert!(shmring_testkit::shm_exists(name));
        let stat = shmring(&["stat", name.as_str()]);
        check(&stat, &format!("stat {name:?}"), OK);
    }

    // A real gc, with every flag, given only the foreign things' names
    // (the UTF-8 ones that name something): none is removed.
    let mut args: Vec<OsString> = ["gc", "--include-data", "--all-users"]
        .map(OsString::from)
        .to_vec();
    args.extend(
        cases
            .iter()
            .filter(|c| c.stat != USAGE && c.stat != OK)
            .map(|c| c.arg.clone()),
    );
    let gc = shmring(&args);
    assert_ne!(gc.code, 101, "{}", gc.both());
    assert_terminal_safe(&gc, "gc NAME...");
    assert!(!gc.stdout.contains("removed"), "{}", gc.both());
    assert!(
        cases.iter().all(|c| c.planted.exists()),
        "gc removed a foreign file"
    );

    // Help and usage errors stay safe whatever the arguments hold.
    for args in [
        vec![
            OsString::from("stat"),
            "x".into(),
            "--count".into(),
            "\x1b[2J".into(),
        ],
        vec![OsString::from("stat"), "x".into(), "--watch=\x1b[2J".into()],
        vec![OsString::from("ls"), "--\x1b[2J".into()],
        vec![OsString::from("\x1b]0;x\x07")],
        vec![OsString::from("help"), "\x1b[2J".into()],
        vec![
            OsString::from("stat"),
            OsString::from_vec(b"/\xff\x1b".to_vec()),
        ],
    ] {
        let r = shmring(&args);
        check(&r, &format!("{args:?}"), USAGE);
    }
    assert!(shmring_testkit::shm_exists(&real_name));
    drop((real, odd_real));
}

/// The same directory seen by another user (uid 65534, when run as root):
/// our files are unreadable to it, and it may remove none of them.
#[test]
fn another_user_gets_summaries_and_removes_nothing() {
    if !is_root() {
        eprintln!("skipped: needs root to run the binary as another uid");
        return;
    }
    let _dog = Watchdog::new(Duration::from_secs(300), "hostile /dev/shm as nobody");
    let prefix = unique_name("cli-hostile-nobody")[1..].to_owned();
    let real_name = format!("/{prefix}-real");
    let real = queue_builder().create(&real_name).unwrap();
    let real_bytes = std::fs::read(shm_path(&real_name)).unwrap();
    let cases = plant(&prefix, &real_bytes);

    for args in [vec!["ls"], vec!["gc", "--dry-run"], vec!["gc"]] {
        let r = shmring_as_nobody(&args);
        check(&r, &format!("nobody {args:?}"), OK);
        assert!(r.stderr.lines().count() <= 3, "{args:?}\n{}", r.stderr);
        assert!(!r.stdout.contains(&prefix), "{args:?}\n{}", r.stdout);
    }
    for args in [vec!["ls", "--json"], vec!["gc", "--json", "--all-users"]] {
        let r = shmring_as_nobody(&args);
        check(&r, &format!("nobody {args:?}"), OK);
        json(&r, &format!("nobody {args:?}"));
    }
    for c in cases.iter().filter(|c| c.stat != USAGE) {
        let what = describe(&c.arg);
        let file_type = std::fs::symlink_metadata(&c.planted.path)
            .unwrap()
            .file_type();
        // Regular files and the FIFO are 0600 or 000: permission denied.
        // The directory and the links are visibly not segments.
        let code = if file_type.is_dir() || file_type.is_symlink() {
            NOT_SHMRING
        } else {
            5
        };
        for sub in ["stat", "rm", "gc"] {
            let r = shmring_as_nobody(&[OsString::from(sub), c.arg.clone()]);
            check(&r, &format!("nobody {sub} {what}"), code);
        }
        let r = shmring_as_nobody(&[OsString::from("rm"), "--force".into(), c.arg.clone()]);
        assert_ne!(r.code, 0, "nobody rm --force {what}\n{}", r.both());
        assert_terminal_safe(&r, &format!("nobody rm --force {what}"));
        assert!(c.planted.exists(), "{what} was removed by another user");
    }
    let r = shmring_as_nobody(&["rm", "--force", real_name.as_str()]);
    assert_eq!(r.code, 5, "{}", r.both());
    assert!(shmring_testkit::shm_exists(&real_name));
    drop(real);
}
