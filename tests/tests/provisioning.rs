//! The device side: systemd unit, notify protocol, reload, install script, identity.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fogd_tests::daemon::Daemon;
use fogd_tests::{components, fogd_bin, root};

fn run(command: &mut Command) -> Output {
    command.output().expect("command runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn unit_file_verifies_and_its_exposure_is_at_most_2() {
    let dir = tempfile::tempdir().unwrap();
    // verify insists that ExecStart's binary exists: point it at this build.
    let unit = std::fs::read_to_string(root().join("provisioning/fogd.service"))
        .unwrap()
        .replace("/usr/bin/fogd", &fogd_bin().display().to_string());
    let path = dir.path().join("fogd.service");
    std::fs::write(&path, unit).unwrap();
    let verify = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(
        text(&verify).trim().is_empty(),
        "verify warns: {}",
        text(&verify)
    );

    let security = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path));
    let report = text(&security);
    let exposure: f64 = report
        .lines()
        .find_map(|line| {
            line.split("Overall exposure level for fogd.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    eprintln!("systemd-analyze security exposure: {exposure}");
    assert!(exposure <= 2.0, "exposure {exposure}:\n{report}");
}

#[test]
fn default_config_is_valid() {
    let output = run(Command::new(fogd_bin())
        .args(["check", "--no-compile", "--config"])
        .arg(root().join("provisioning/fogd.toml")));
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn install_script_is_idempotent_and_uninstall_keeps_state_unless_purged() {
    components();
    let stage = tempfile::tempdir().unwrap();
    let staged = |path: &str| stage.path().join(path.trim_start_matches('/'));
    let install = |extra: &[&str]| {
        let output = run(Command::new(root().join("provisioning/install.sh"))
            .args(["--root"])
            .arg(stage.path())
            .args(["--binary"])
            .arg(fogd_bin())
            .args(extra));
        assert!(output.status.success(), "{}", text(&output));
    };
    install(&[]);
    for path in [
        "/usr/bin/fogd",
        "/lib/systemd/system/fogd.service",
        "/etc/fogd/fogd.toml",
        "/usr/share/fogd/functions/echo.wasm",
        "/var/lib/fogd",
    ] {
        assert!(staged(path).exists(), "{path} installed");
    }
    std::fs::write(staged("/etc/fogd/fogd.toml"), "# edited by the operator\n").unwrap();
    std::fs::write(staged("/var/lib/fogd/kept"), "state").unwrap();
    install(&[]);
    assert_eq!(
        std::fs::read_to_string(staged("/etc/fogd/fogd.toml")).unwrap(),
        "# edited by the operator\n"
    );

    install(&["--uninstall"]);
    assert!(
        !staged("/usr/bin/fogd").exists() && !staged("/lib/systemd/system/fogd.service").exists()
    );
    assert!(
        staged("/etc/fogd/fogd.toml").exists() && staged("/var/lib/fogd/kept").exists(),
        "config and state kept"
    );
    install(&["--uninstall", "--purge"]);
    assert!(!staged("/etc/fogd").exists() && !staged("/var/lib/fogd").exists());
}

/// Reads systemd notifications sent to `socket` until one contains `wanted`.
fn wait_notification(socket: &UnixDatagram, wanted: &str) -> String {
    let deadline = Instant::now() + fogd_tests::PATIENCE;
    let mut buffer = [0u8; 4096];
    loop {
        assert!(Instant::now() < deadline, "no {wanted} notification");
        if let Ok(length) = socket.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..length]).into_owned();
            if message.contains(wanted) {
                return message;
            }
        }
    }
}

fn write_config(dir: &Path, functions: &str) -> std::path::PathBuf {
    let path = dir.join("fogd.toml");
    std::fs::write(
        &path,
        format!(
            r#"state_dir = "state"
[metrics]
{functions}"#
        ),
    )
    .unwrap();
    path
}

fn echo_on_timer(name: &str) -> String {
    format!(
        r#"[[function]]
name = "{name}"
component = "{}"
[[function.trigger]]
timer = {{ every = "50ms" }}
"#,
        components().echo.display()
    )
}

#[test]
fn notifies_ready_feeds_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let config = write_config(dir.path(), &echo_on_timer("beat"));
    let mut child = Command::new(fogd_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_notification(&socket, "READY=1").contains("READY=1"));
    wait_notification(&socket, "WATCHDOG=1");
    wait_notification(&socket, "WATCHDOG=1");
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_notification(&socket, "STOPPING=1");
    assert!(child.wait().unwrap().success());
}

#[test]
fn reload_applies_a_valid_config_and_refuses_an_invalid_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &echo_on_timer("first"));
    let mut daemon = Daemon::start(&config);
    daemon.wait_for(&["fogd ready", "functions=1"]);
    let reload = || {
        let output = run(Command::new(fogd_bin())
            .args(["reload", "--config"])
            .arg(&config));
        assert!(output.status.success(), "{}", text(&output));
    };

    // The async runtime is built once; a changed size is named, not silently ignored.
    write_config(
        dir.path(),
        &format!(
            "{}{}[runtime]\nasync_threads = 97\n",
            echo_on_timer("first"),
            echo_on_timer("second")
        ),
    );
    reload();
    daemon.wait_for(&[
        "async_threads takes effect at the next start",
        "configured=97",
    ]);
    daemon.wait_for(&["function loaded", "second"]);
    daemon.wait_for(&["fogd ready", "functions=2"]);

    std::fs::write(
        &config,
        r#"state_dir = "state"
[runtime]
workerz = 1
"#,
    )
    .unwrap();
    // The daemon keeps the valid config; `fogd reload` itself refuses to read the bad one.
    let output = run(Command::new(fogd_bin())
        .args(["reload", "--config"])
        .arg(&config));
    assert!(!output.status.success());
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.pid(), libc::SIGHUP) };
    daemon.wait_for(&["reload refused", "workerz"]);
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{}", log.join("\n"));
}

#[test]
fn reload_keeps_the_embedded_broker_serving() {
    let dir = tempfile::tempdir().unwrap();
    let port = fogd_tests::mosquitto::free_port();
    let broker = format!(
        r#"[embedded_broker]
listen = "127.0.0.1:{port}"
[[broker]]
name = "local"
address = "127.0.0.1:{port}"
protocol = "3.1.1"
"#
    );
    let config = write_config(dir.path(), &format!("{broker}{}", echo_on_timer("first")));
    let mut daemon = Daemon::start(&config);
    daemon.wait_for(&["broker connected", "broker=local"]);
    // Another worker count (and a second function): the agent restarts, the broker it
    // serves stays.
    write_config(
        dir.path(),
        &format!(
            "{broker}[runtime]\nworkers = 3\n{}{}",
            echo_on_timer("first"),
            echo_on_timer("second")
        ),
    );
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.pid(), libc::SIGHUP) };
    daemon.wait_for_next(&["restarting the agent"]);
    daemon.wait_for_next(&["fogd ready", "functions=2", "brokers=1"]);
    daemon.wait_for_after(
        &["restarting the agent"],
        &["broker connected", "broker=local"],
    );
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{}", log.join("\n"));
    assert!(
        log.iter().all(|line| !line.contains("cannot listen")),
        "{}",
        log.join("\n")
    );
}

#[test]
fn identity_init_and_install_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("identity");
    let output = run(Command::new(fogd_bin())
        .args(["identity", "init", "--device-id", "gw-0017", "--dir"])
        .arg(&identity));
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        !text(&output).contains("PRIVATE KEY"),
        "the key is never printed"
    );

    // A CA issues a certificate for the device key (standing in for the fleet's CA, which
    // would sign the CSR; the key never leaves `identity`).
    let key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(identity.join("device.key")).unwrap())
            .unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    let install = |cert: &str| {
        run(Command::new(fogd_bin())
            .args(["identity", "install", "--cert"])
            .arg(dir.path().join(cert))
            .arg("--ca")
            .arg(dir.path().join("ca.pem"))
            .arg("--dir")
            .arg(&identity))
    };
    let output = install("cert.pem");
    assert!(output.status.success(), "{}", text(&output));
    assert!(identity.join("device.pem").exists());

    let stranger = rcgen::KeyPair::generate().unwrap();
    let foreign = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .signed_by(&stranger, &issuer)
        .unwrap();
    std::fs::write(dir.path().join("foreign.pem"), foreign.pem()).unwrap();
    let output = install("foreign.pem");
    assert!(!output.status.success());
    assert!(
        text(&output).contains("does not belong to the device key"),
        "{}",
        text(&output)
    );
}

#[test]
fn deb_package_holds_the_install_and_creates_the_user() {
    components();
    let output = run(Command::new(root().join("cross/deb.sh"))
        .arg("amd64")
        .arg("--binary")
        .arg(fogd_bin()));
    assert!(output.status.success(), "{}", text(&output));
    let package = std::path::PathBuf::from(text(&output).trim());
    let info = text(&run(Command::new("dpkg-deb").arg("--info").arg(&package)));
    for field in [
        "Package: fogd",
        "Architecture: amd64",
        "Depends: adduser, systemd",
    ] {
        assert!(info.contains(field), "{field} in {info}");
    }
    let contents = text(&run(Command::new("dpkg-deb")
        .arg("--contents")
        .arg(&package)));
    for path in [
        "./usr/bin/fogd",
        "./lib/systemd/system/fogd.service",
        "./etc/fogd/fogd.toml",
        "./usr/share/fogd/functions/ddos_detector.wasm",
        "./usr/share/fogd/models/flow-anomaly.tflite",
    ] {
        assert!(contents.contains(path), "{path} in {contents}");
    }
    assert!(!contents.contains("libLiteRt"), "LiteRT is not bundled");
    let control = tempfile::tempdir().unwrap();
    assert!(
        run(Command::new("dpkg-deb")
            .arg("--control")
            .arg(&package)
            .arg(control.path()))
        .status
        .success()
    );
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/fogd/fogd.toml");
    let postinst = std::fs::read_to_string(control.path().join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system") && postinst.contains("/var/lib/fogd"));

    let extracted = tempfile::tempdir().unwrap();
    assert!(
        run(Command::new("dpkg-deb")
            .arg("-x")
            .arg(&package)
            .arg(extracted.path()))
        .status
        .success()
    );
    let version = run(Command::new(extracted.path().join("usr/bin/fogd")).arg("--version"));
    assert!(text(&version).starts_with("fogd "), "{}", text(&version));
}
