//! A real nginx per test, serving a directory over HTTPS on a free port with the test's
//! generated server certificate.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::certs::Pki;
use crate::mosquitto::free_port;

pub struct Nginx {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Serves `root` at `https://127.0.0.1:<port>/`.
    pub fn serve(root: &Path, pki: &Pki) -> Self {
        Self::serve_limited(root, pki, None)
    }

    /// Like [`serve`](Self::serve), sending each response at most `bytes_per_second`.
    pub fn serve_limited(root: &Path, pki: &Pki, bytes_per_second: Option<u32>) -> Self {
        let rate = bytes_per_second.unwrap_or(0);
        Self::start(pki, |prefix, port| {
            format!(
                "  access_log {prefix}/access.log;\n  \
                 server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {prefix}/server.pem;\n    \
                 ssl_certificate_key {prefix}/server.key;\n    root {root};\n    limit_rate {rate};\n  }}\n",
                root = root.display(),
            )
        })
    }

    /// A remote API over HTTPS: `POST /api/...` is answered `201` with `{"accepted":true}` (its
    /// method, path, `Authorization` header, body and connection number logged), `/redirect` sends a `302` to
    /// `https://elsewhere.example:<port>/api/`, and other paths serve files from `root`
    /// (gzipped, so without a length, to clients that accept it). With
    /// `client_auth`, only clients with a certificate from the test's CA are served.
    pub fn api(root: &Path, pki: &Pki, client_auth: bool) -> Self {
        let backend = free_port();
        Self::start(pki, |prefix, port| {
            let verify = if client_auth {
                format!("    ssl_client_certificate {prefix}/ca.pem;\n    ssl_verify_client on;\n")
            } else {
                String::new()
            };
            format!(
                "  log_format api '$request_method $uri $status auth=[$http_authorization] body=[$request_body] connection=$connection';\n  \
                 server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {prefix}/server.pem;\n    \
                 ssl_certificate_key {prefix}/server.key;\n{verify}    access_log {prefix}/access.log api;\n    \
                 root {root};\n    gzip on;\n    gzip_types *;\n    gzip_min_length 0;\n    \
                 location /api/ {{ proxy_pass http://127.0.0.1:{backend}/; }}\n    \
                 location /redirect {{ return 302 https://elsewhere.example:{port}/api/; }}\n  }}\n  \
                 server {{\n    listen 127.0.0.1:{backend};\n    access_log off;\n    \
                 location / {{ default_type application/json; return 201 '{{\"accepted\":true}}'; }}\n  }}\n",
                root = root.display(),
            )
        })
    }

    /// Runs nginx with the `http` block's contents that `servers` writes for the prefix
    /// directory and the port it listens on.
    fn start(pki: &Pki, servers: impl FnOnce(&str, u16) -> String) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        pki.write_server_files(dir.path());
        let port = free_port();
        let prefix = dir.path().display().to_string();
        // One process, so that killing it stops it all. Running as root, nginx would switch
        // to an unprivileged user, which cannot read the test's files.
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;\n"
        } else {
            ""
        };
        let config = format!(
            "{user}daemon off;\nmaster_process off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  client_body_temp_path {prefix}/body;\n  \
             proxy_temp_path {prefix}/proxy;\n  fastcgi_temp_path {prefix}/fastcgi;\n  \
             uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n{servers}}}\n",
            servers = servers(&prefix, port),
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config).expect("nginx config written");
        let child = Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx runs (Debian package `nginx`)");
        let mut nginx = Self { port, child, dir };
        let deadline = Instant::now() + crate::PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!(
                    "nginx exited ({status}): {}",
                    std::fs::read_to_string(nginx.dir.path().join("error.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 10 s"
            );
            std::thread::yield_now();
        }
        nginx
    }

    /// Lines of the access log: one per request served.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
