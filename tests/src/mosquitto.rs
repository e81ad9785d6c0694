//! A real Mosquitto broker per test, on a free port with its own generated config.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::certs::Pki;

/// How a test's broker is set up.
#[derive(Default)]
pub struct BrokerOptions {
    /// Serve TLS with this PKI's server certificate.
    pub tls: Option<Pki>,
    /// With `tls`: require a client certificate signed by the CA (mutual TLS).
    pub require_client_certificate: bool,
    /// Keep sessions and queued messages across broker restarts.
    pub persistence: bool,
    /// Access rules for every client (a Mosquitto `acl_file`'s text).
    pub acl: Option<String>,
    /// Further lines for the broker's config (e.g. `message_size_limit 1000`).
    pub extra: String,
}

pub struct Mosquitto {
    /// Plain MQTT, for test clients.
    pub port: u16,
    /// TLS listener, when the options asked for one.
    pub tls_port: Option<u16>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn binary() -> PathBuf {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("mosquitto"))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

impl Mosquitto {
    pub fn start() -> Self {
        Self::with(BrokerOptions::default())
    }

    pub fn with(options: BrokerOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut config = format!(
            "per_listener_settings false\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 100\nset_tcp_nodelay true\nlistener {port} 127.0.0.1\n"
        );
        // Running as root, mosquitto would switch to its own user, which cannot read the
        // test's files.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            config.push_str("user root\n");
        }
        if options.persistence {
            config.push_str(&format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\n",
                dir.path().display()
            ));
        }
        if let Some(acl) = &options.acl {
            let path = dir.path().join("acl");
            std::fs::write(&path, acl).expect("acl written");
            config.push_str(&format!("acl_file {}\n", path.display()));
        }
        config.push_str(&options.extra);
        config.push('\n');
        let tls_port = options.tls.as_ref().map(|pki| {
            let tls_port = free_port();
            pki.write_server_files(dir.path());
            config.push_str(&format!(
                "listener {tls_port} 127.0.0.1\ncafile {dir}/ca.pem\ncertfile {dir}/server.pem\nkeyfile {dir}/server.key\nrequire_certificate {}\n",
                options.require_client_certificate,
                dir = dir.path().display()
            ));
            tls_port
        });
        std::fs::write(dir.path().join("mosquitto.conf"), config).expect("config written");
        let mut broker = Self {
            port,
            tls_port,
            dir,
            child: None,
        };
        broker.run();
        broker
    }

    fn run(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).expect("log file");
        let child = Command::new(binary())
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("mosquitto starts (Debian package `mosquitto`)");
        self.child = Some(child);
        self.wait_until_listening();
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + crate::PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("mosquitto exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen within 10 s:\n{}",
                self.log()
            );
            std::thread::yield_now();
        }
    }

    /// Stops the broker (SIGTERM, so a persistent one saves its state).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing is answered, the way a
    /// hung broker or a black-holed link looks to a client.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a frozen broker go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.thaw();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
