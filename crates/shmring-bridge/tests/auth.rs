//! Authentication and TLS pass through to async-nats, against a real
//! `nats-server -js` configured for each (never a mock): user and password,
//! an nkey (a key pair made here), TLS with a CA and server certificate
//! made here (and a client certificate the server verifies). Wrong or
//! missing credentials stop the bridge with `Error::Auth` (exit code 4 from
//! the command line), not an endless retry.
//!
//! A `.creds` file passes against a server in operator mode (an operator,
//! an account and a user JWT signed in a chain here, with nkeys), and a
//! missing or invalid one stops the bridge.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use shmring::queue::Queue;
use shmring_bridge::{
    BridgeOut, CounterSnapshot, Error, NatsOptions, OutConfig, Shutdown, StreamSettings,
};
use shmring_testkit::{unique_name, Watchdog};

#[path = "support/nats.rs"]
mod nats;
use nats::NatsServer;

const N: u64 = 20;

/// Puts `N` messages in a new queue, shuts it down, and runs an outbound
/// bridge with `options` until it drained it (or stopped on an error).
fn drain_with(options: NatsOptions, stream: &str) -> (Result<CounterSnapshot, Error>, Duration) {
    let name = unique_name("br-auth");
    let q = Queue::<Vec<u8>>::builder()
        .maxsize(0)
        .create(&name)
        .expect("create the queue");
    for i in 0..N {
        q.put(i.to_le_bytes().to_vec()).unwrap();
    }
    q.shutdown();
    let subject = format!("{}.jobs", stream.to_lowercase());
    let mut config = OutConfig::new(&name, options, subject.clone());
    config.create_stream = Some(StreamSettings::new(stream, vec![subject]));
    config.log = Some(std::sync::Arc::new(|line: &str| {
        eprintln!("bridge: {line}")
    }));
    let start = Instant::now();
    let bridge = BridgeOut::new(config).expect("open the queue");
    let counters = bridge.counters();
    let result = bridge
        .run_blocking(Shutdown::new())
        .map(|()| counters.snapshot());
    let took = start.elapsed();
    if result.is_ok() {
        assert!(q.is_empty(), "drained");
    } else {
        assert_eq!(q.len(), N, "nothing taken without a connection");
    }
    (result, took)
}

fn assert_drained(r: Result<CounterSnapshot, Error>) {
    let c = r.expect("the bridge drains the queue");
    assert_eq!(c.acked, N, "{c}");
}

/// Wrong credentials: `Error::Auth` at once (well before a few backoffs
/// would have passed), with nothing retried.
fn assert_refused(r: (Result<CounterSnapshot, Error>, Duration), what: &str) -> String {
    let (r, took) = r;
    let e = match r {
        Err(e @ Error::Auth(_)) => e,
        other => panic!("{what}: expected an authentication error, got {other:?}"),
    };
    assert!(took < Duration::from_secs(10), "{what}: took {took:?}");
    let text = e.to_string();
    eprintln!("{what}: {text}");
    assert!(text.contains("not retried"), "{text}");
    text
}

#[test]
fn user_and_password_pass_through_and_a_wrong_password_stops() {
    let Some(server) = NatsServer::start_with_config(
        "user_password",
        "authorization {\n  users = [ { user: \"bridge\", password: \"pa55-word\" } ]\n}",
    ) else {
        return;
    };
    let _watchdog = Watchdog::new(Duration::from_secs(120), "user and password");
    let with = |user: &str, password: &str| {
        let mut o = NatsOptions::new(&server.url);
        o.user_password = Some((user.into(), password.into()));
        o
    };
    assert_drained(drain_with(with("bridge", "pa55-word"), "UP").0);
    let text = assert_refused(drain_with(with("bridge", "wrong"), "UP"), "wrong password");
    assert!(text.contains("refused the credentials"), "{text}");
    assert_refused(
        drain_with(NatsOptions::new(&server.url), "UP"),
        "no credentials",
    );
}

#[test]
fn an_nkey_seed_passes_through_and_an_unknown_key_stops() {
    let user = nkeys::KeyPair::new_user();
    let conf = format!(
        "authorization {{\n  users = [ {{ nkey: {:?} }} ]\n}}",
        user.public_key()
    );
    let Some(server) = NatsServer::start_with_config("nkey", &conf) else {
        return;
    };
    let _watchdog = Watchdog::new(Duration::from_secs(120), "nkey");
    let with = |seed: String| {
        let mut o = NatsOptions::new(&server.url);
        o.nkey_seed = Some(seed);
        o
    };
    assert_drained(drain_with(with(user.seed().unwrap()), "NK").0);
    let stranger = nkeys::KeyPair::new_user();
    assert_refused(
        drain_with(with(stranger.seed().unwrap()), "NK"),
        "unknown key",
    );
    assert_refused(drain_with(with("SUnot-a-seed".into()), "NK"), "not a seed");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in
/// PEM files under `dir`.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    std::fs::create_dir_all(dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "shmring test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let mut p = CertificateParams::new(names).unwrap();
        p.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) =
        leaf(vec!["bridge".into()], ExtendedKeyUsagePurpose::ClientAuth);
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server-key.pem", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client-key.pem", &client_key),
    }
}

fn pki_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("shmring-bridge-pki-{tag}-{}", std::process::id()))
}

#[test]
fn tls_with_the_ca_passes_and_an_untrusted_server_stops() {
    let dir = pki_dir("server");
    let pki = make_pki(&dir);
    let conf = format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}",
        pki.server_cert, pki.server_key
    );
    let Some(server) = NatsServer::start_with_config("tls", &conf) else {
        return;
    };
    let _watchdog = Watchdog::new(Duration::from_secs(120), "tls");
    let url = format!("tls://127.0.0.1:{}", server.port);
    let mut trusted = NatsOptions::new(&url);
    trusted.root_certificates = vec![pki.ca.clone()];
    assert_drained(drain_with(trusted.clone(), "TLS").0);
    // nats:// with --tls: the same.
    let mut required = NatsOptions::new(&server.url);
    required.require_tls = true;
    required.root_certificates = vec![pki.ca.clone()];
    assert_drained(drain_with(required, "TLS").0);
    // Without the CA the server's certificate is not trusted.
    let text = assert_refused(drain_with(NatsOptions::new(&url), "TLS"), "untrusted");
    assert!(text.contains("TLS"), "{text}");
    // A CA file that does not exist.
    let mut missing = NatsOptions::new(&url);
    missing.root_certificates = vec![dir.join("no-such-ca.pem")];
    let text = assert_refused(drain_with(missing, "TLS"), "missing CA file");
    assert!(
        text.contains("TLS CA file") && text.contains("no-such-ca.pem"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_client_certificate_passes_where_the_server_verifies_clients() {
    let dir = pki_dir("client");
    let pki = make_pki(&dir);
    let conf = format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n}}",
        pki.server_cert, pki.server_key, pki.ca
    );
    let Some(server) = NatsServer::start_with_config("tls_client", &conf) else {
        return;
    };
    let _watchdog = Watchdog::new(Duration::from_secs(120), "tls client");
    let url = format!("tls://127.0.0.1:{}", server.port);
    let mut with_cert = NatsOptions::new(&url);
    with_cert.root_certificates = vec![pki.ca.clone()];
    with_cert.client_certificate = Some((pki.client_cert.clone(), pki.client_key.clone()));
    assert_drained(drain_with(with_cert, "TLSC").0);
    let mut without = NatsOptions::new(&url);
    without.root_certificates = vec![pki.ca.clone()];
    assert_refused(drain_with(without, "TLSC"), "no client certificate");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_or_invalid_creds_file_stops_with_a_clear_error() {
    let Some(server) = NatsServer::start("creds", None) else {
        return;
    };
    let _watchdog = Watchdog::new(Duration::from_secs(60), "creds");
    let dir = pki_dir("creds");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.creds");
    std::fs::write(&bad, "not a creds file\n").unwrap();
    for (path, what) in [(dir.join("missing.creds"), "missing"), (bad, "invalid")] {
        let mut o = NatsOptions::new(&server.url);
        o.credentials_file = Some(path.clone());
        let text = assert_refused(drain_with(o, "CR"), what);
        assert!(
            text.contains("credentials file") && text.contains(&path.display().to_string()),
            "{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The command line: wrong credentials exit 4 with a line saying so, and
/// a missing creds file too; each within seconds.
#[test]
fn cli_exits_4_on_refused_credentials() {
    let Some(server) = NatsServer::start_with_config(
        "cli_auth",
        "authorization {\n  users = [ { user: \"bridge\", password: \"right\" } ]\n}",
    ) else {
        return;
    };
    let _watchdog = Watchdog::new(Duration::from_secs(120), "cli auth");
    let name = unique_name("br-auth-cli");
    let q = Queue::<Vec<u8>>::builder()
        .maxsize(0)
        .create(&name)
        .expect("create the queue");
    q.put(vec![1]).unwrap();
    let run = |extra: &[&str]| {
        let start = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_shmring-bridge"))
            .args(["out", "--queue", &name, "--nats", &server.url])
            .args([
                "--subject",
                "cli.jobs",
                "--stream",
                "CLI",
                "--create-stream",
            ])
            .args(extra)
            .env_remove("NATS_TOKEN")
            .env_remove("NATS_PASSWORD")
            .env_remove("NATS_NKEY")
            .output()
            .expect("run the bridge");
        assert!(start.elapsed() < Duration::from_secs(30));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--user", "bridge", "--password", "wrong"]);
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("refused the credentials") && err.contains("not retried"),
        "{err}"
    );
    let (code, err) = run(&["--creds", "/nonexistent/x.creds"]);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("/nonexistent/x.creds"), "{err}");
    assert_eq!(q.len(), 1, "the message stays queued");
}

/// A JWT of `claims` signed by `signer` (NATS's ed25519-nkey JWTs).
fn jwt(mut claims: serde_json::Value, signer: &nkeys::KeyPair) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    claims["iat"] = now.into();
    claims["iss"] = signer.public_key().into();
    claims["jti"] = format!("shmring-test-{now}-{}", claims["sub"]).into();
    let header = B64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = B64.encode(claims.to_string());
    let signed = format!("{header}.{body}");
    let signature = signer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", B64.encode(signature))
}

/// A `.creds` file: a user JWT and the user's seed.
fn write_creds(path: &Path, user_jwt: &str, user: &nkeys::KeyPair) {
    std::fs::write(
        path,
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        ),
    )
    .unwrap();
}

/// A `.creds` file for a user of an account of an operator, and the
/// server configuration (operator mode, the account preloaded, JetStream
/// allowed to it).
fn operator_setup(dir: &Path) -> (PathBuf, String) {
    use serde_json::json;
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = jwt(
        json!({"sub": operator.public_key(), "name": "shmring-test-operator",
               "nats": {"type": "operator", "version": 2}}),
        &operator,
    );
    let account_jwt = jwt(
        json!({"sub": account.public_key(), "name": "bridges",
               "nats": {"type": "account", "version": 2, "limits": {
                   "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                   "wildcards": true, "conn": -1, "leaf": -1,
                   "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}}}),
        &operator,
    );
    // JetStream in operator mode needs a system account.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = jwt(
        json!({"sub": system.public_key(), "name": "SYS",
               "nats": {"type": "account", "version": 2, "limits": {
                   "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                   "wildcards": true, "conn": -1, "leaf": -1}}}),
        &operator,
    );
    let user_jwt = jwt(
        json!({"sub": user.public_key(), "name": "bridge",
               "nats": {"type": "user", "version": 2, "pub": {}, "sub": {},
                        "subs": -1, "data": -1, "payload": -1}}),
        &account,
    );
    std::fs::create_dir_all(dir).unwrap();
    let creds = dir.join("bridge.creds");
    write_creds(&creds, &user_jwt, &user);
    let conf = format!(
        "operator: {operator_jwt:?}\nsystem_account: {sys}\nresolver: MEMORY\n\
         resolver_preload: {{\n  {acc}: {account_jwt:?}\n  {sys}: {system_jwt:?}\n}}",
        acc = account.public_key(),
        sys = system.public_key(),
    );
    (creds, conf)
}

#[test]
fn a_creds_file_passes_against_a_server_in_operator_mode() {
    let dir = pki_dir("operator");
    let (creds, conf) = operator_setup(&dir);
    let Some(server) = NatsServer::start_with_config("operator", &conf) else {
        return;
    };
    let _watchdog = Watchdog::new(Duration::from_secs(120), "operator");
    let mut o = NatsOptions::new(&server.url);
    o.credentials_file = Some(creds);
    let (r, _) = drain_with(o, "OP");
    if r.is_err() {
        eprintln!("{}", server.log());
    }
    assert_drained(r);
    // Without credentials, the same server refuses; and a user of an
    // account the server does not know.
    assert_refused(drain_with(NatsOptions::new(&server.url), "OP"), "no creds");
    let (rogue_account, rogue_user) = (nkeys::KeyPair::new_account(), nkeys::KeyPair::new_user());
    let rogue_jwt = jwt(
        serde_json::json!({"sub": rogue_user.public_key(), "name": "rogue",
            "nats": {"type": "user", "version": 2, "pub": {}, "sub": {}}}),
        &rogue_account,
    );
    let rogue = dir.join("rogue.creds");
    write_creds(&rogue, &rogue_jwt, &rogue_user);
    let mut o = NatsOptions::new(&server.url);
    o.credentials_file = Some(rogue);
    assert_refused(drain_with(o, "OP"), "unknown account");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A user the server accepts but may not publish to JetStream's API: a
/// setting to fix, as a wrong password is, not a retry for ever.
#[test]
fn a_user_without_publish_permission_stops() {
    let Some(server) = NatsServer::start_with_config(
        "no_permission",
        "authorization {\n  users = [ { user: \"ro\", password: \"pw\", \
         permissions: { publish: \"nothing.>\" } } ]\n}",
    ) else {
        return;
    };
    let _watchdog = Watchdog::new(Duration::from_secs(120), "no permission");
    let mut o = NatsOptions::new(&server.url);
    o.user_password = Some(("ro".into(), "pw".into()));
    let stop = Shutdown::new();
    let trigger = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(15));
        trigger.trigger();
    });
    let name = unique_name("br-perm");
    let _q = Queue::<Vec<u8>>::builder()
        .maxsize(0)
        .create(&name)
        .unwrap();
    let mut config = OutConfig::new(&name, o, "perm.jobs");
    config.create_stream = Some(StreamSettings::new("PERM", vec!["perm.jobs".into()]));
    let r = BridgeOut::new(config).unwrap().run_blocking(stop);
    assert!(matches!(r, Err(Error::Auth(_))), "{r:?}");
}

/// Credentials revoked while the bridge runs (the server restarted with
/// another password): the reconnect is refused, and the bridge stops
/// instead of retrying for ever on a client that never comes back.
#[test]
fn credentials_refused_at_a_reconnect_stop_the_bridge() {
    let users = |password: &str| {
        format!("authorization {{\n  users = [ {{ user: \"b\", password: \"{password}\" }} ]\n}}")
    };
    let Some(mut server) = NatsServer::start_with_config("revoked", &users("first")) else {
        return;
    };
    let _watchdog = Watchdog::new(Duration::from_secs(120), "revoked");
    let mut o = NatsOptions::new(&server.url);
    o.user_password = Some(("b".into(), "first".into()));
    let name = unique_name("br-revoked");
    let q = Queue::<Vec<u8>>::builder()
        .maxsize(0)
        .create(&name)
        .unwrap();
    let mut config = OutConfig::new(&name, o, "revoked.jobs");
    config.create_stream = Some(StreamSettings::new("REVOKED", vec!["revoked.jobs".into()]));
    let bridge = BridgeOut::new(config).unwrap();
    let counters = bridge.counters();
    let stop = Shutdown::new();
    let run = std::thread::spawn({
        let stop = stop.clone();
        move || bridge.run_blocking(stop)
    });
    q.put(vec![1]).unwrap();
    let start = Instant::now();
    while counters.snapshot().acked < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "first message acked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    server.extra = Some(users("second"));
    server.restart();
    q.put(vec![2]).unwrap();
    let backstop = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(40));
        stop.trigger();
    });
    let r = run.join().unwrap();
    assert!(matches!(r, Err(Error::Auth(_))), "{r:?}");
    drop(backstop);
}
