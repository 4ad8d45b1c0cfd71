//! A real `nats-server` with JetStream for the tests: on a free loopback
//! port, with a store directory of its own, killed (and its directory
//! removed) when dropped. Included with `#[path]` by each test file.
//!
//! Without the binary a test cannot run: under `CI` that fails loudly (CI
//! installs it, see `.ci/run`); elsewhere the test prints a loud SKIP and
//! returns.

#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nats-server -js`.
pub struct NatsServer {
    child: Option<Child>,
    dir: PathBuf,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    max_payload: Option<u32>,
    /// A token clients must present (`authorization { token }`).
    pub token: Option<String>,
    /// More configuration (authorization, TLS), appended as it is.
    pub extra: Option<String>,
}

/// The `nats-server` binary: `$NATS_SERVER`, else the first on `PATH`, in
/// `/usr/sbin` or `/usr/bin`.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// The binary, or `None` after a loud SKIP line; panics under `CI`.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    let found = binary();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "nats-server not found (PATH, /usr/sbin, /usr/bin, $NATS_SERVER): CI must install it \
             (apt-get install nats-server; see .ci/run)"
        );
        eprintln!(
            "\n*** SKIP {test}: nats-server not found (apt-get install nats-server, or set \
             NATS_SERVER) ***\n"
        );
    }
    found
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

impl NatsServer {
    /// Starts a server on a free port; `None` (after a SKIP) without the
    /// binary.
    pub fn start(test: &str, max_payload: Option<u32>) -> Option<NatsServer> {
        binary_or_skip(test)?;
        Some(NatsServer::start_on(free_port(), max_payload))
    }

    /// Starts a server on `port` (whose store directory is new).
    pub fn start_on(port: u16, max_payload: Option<u32>) -> NatsServer {
        let dir = std::env::temp_dir().join(format!(
            "shmring-nats-{}-{port}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ));
        fs::create_dir_all(dir.join("store")).expect("create the server's directory");
        let mut server = NatsServer {
            child: None,
            dir,
            port,
            url: format!("nats://127.0.0.1:{port}"),
            max_payload,
            token: None,
            extra: None,
        };
        server.launch();
        server
    }

    /// Starts a server on a free port that accepts only clients with
    /// `token`; `None` (after a SKIP) without the binary.
    pub fn start_with_token(test: &str, token: &str) -> Option<NatsServer> {
        binary_or_skip(test)?;
        let mut server = NatsServer::start_on(free_port(), None);
        server.kill();
        server.token = Some(token.to_owned());
        server.launch();
        Some(server)
    }

    /// Starts a server on a free port with `extra` appended to its
    /// configuration (an `authorization` or `tls` block); `None` (after a
    /// SKIP) without the binary.
    pub fn start_with_config(test: &str, extra: &str) -> Option<NatsServer> {
        binary_or_skip(test)?;
        let mut server = NatsServer::start_on(free_port(), None);
        server.kill();
        server.extra = Some(extra.to_owned());
        server.launch();
        Some(server)
    }

    fn launch(&mut self) {
        let bin = binary().expect("nats-server binary");
        let mut conf = format!(
            "listen: 127.0.0.1:{}\njetstream {{\n  store_dir: {:?}\n}}\n",
            self.port,
            self.dir.join("store")
        );
        if let Some(m) = self.max_payload {
            conf.push_str(&format!("max_payload: {m}\n"));
        }
        if let Some(t) = &self.token {
            conf.push_str(&format!("authorization {{\n  token: {t:?}\n}}\n"));
        }
        if let Some(extra) = &self.extra {
            conf.push_str(extra);
            conf.push('\n');
        }
        let conf_path = self.dir.join("server.conf");
        fs::write(&conf_path, conf).expect("write the server's configuration");
        let log = fs::File::create(self.dir.join("server.log")).expect("create the server log");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if self.log().contains("Server is ready")
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("nats-server exited at start ({status}):\n{}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "nats-server not ready after 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(self.dir.join("server.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Kills the server (SIGKILL) and waits for it; its store stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and store (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
