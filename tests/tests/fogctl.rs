//! `fogctl keygen`, `sign` and `verify`: the fleet key, signed documents and what a device
//! would refuse.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use fogd_tests::{fogctl_bin, root};
use serde_json::Value;

fn fogctl(dir: &Path, args: &[&str]) -> Output {
    Command::new(fogctl_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("fogctl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn example() -> String {
    root()
        .join("fleet/schema/example-deployment.json")
        .display()
        .to_string()
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_never_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = fogctl(dir.path(), &["keygen", "--out", "fleet.key"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let mode = std::fs::metadata(dir.path().join("fleet.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let public = std::fs::read_to_string(dir.path().join("fleet.key.pub")).unwrap();
    assert_eq!(public.trim().len(), 64, "{public}");

    let before = std::fs::read(dir.path().join("fleet.key")).unwrap();
    let again = fogctl(dir.path(), &["keygen", "--out", "fleet.key"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("never replaced"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(std::fs::read(dir.path().join("fleet.key")).unwrap(), before);
}

#[test]
fn a_signed_document_verifies_and_any_change_or_other_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for key in ["fleet.key", "other.key"] {
        assert!(
            fogctl(dir.path(), &["keygen", "--out", key])
                .status
                .success()
        );
    }
    let signed = fogctl(
        dir.path(),
        &[
            "sign",
            &example(),
            "--key",
            "fleet.key",
            "--out",
            "signed.json",
        ],
    );
    assert!(signed.status.success(), "{}", text(&signed.stderr));
    assert!(text(&signed.stderr).contains("signed revision 12"));

    let verified = fogctl(
        dir.path(),
        &["verify", "signed.json", "--trust", "fleet.key.pub"],
    );
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    assert!(
        text(&verified.stdout).contains("revision 12: 2 functions, 1 models, 4 artifacts"),
        "{}",
        text(&verified.stdout)
    );

    let untrusted = fogctl(
        dir.path(),
        &["verify", "signed.json", "--trust", "other.key.pub"],
    );
    assert!(!untrusted.status.success());
    assert!(
        text(&untrusted.stderr).contains("does not trust"),
        "{}",
        text(&untrusted.stderr)
    );

    let mut document: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("signed.json")).unwrap()).unwrap();
    document["document"]["artifacts"]["echo.wasm"]["url"] = "https://evil.example/echo.wasm".into();
    std::fs::write(dir.path().join("tampered.json"), document.to_string()).unwrap();
    let tampered = fogctl(
        dir.path(),
        &["verify", "tampered.json", "--trust", "fleet.key.pub"],
    );
    assert!(!tampered.status.success());
    assert!(
        text(&tampered.stderr).contains("does not match the document"),
        "{}",
        text(&tampered.stderr)
    );
}

#[test]
fn sign_refuses_a_document_that_cannot_be_deployed_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        fogctl(dir.path(), &["keygen", "--out", "fleet.key"])
            .status
            .success()
    );
    let mut document: Value =
        serde_json::from_str(&std::fs::read_to_string(example()).unwrap()).unwrap();
    document["function"][0]["component"] = "missing.wasm".into();
    std::fs::write(dir.path().join("doc.json"), document.to_string()).unwrap();
    let output = fogctl(dir.path(), &["sign", "doc.json", "--key", "fleet.key"]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("function[0].component"), "{stderr}");
    assert!(
        stderr.contains("\"missing.wasm\" is not in artifacts"),
        "{stderr}"
    );
}
