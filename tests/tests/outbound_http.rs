//! Functions' outbound HTTP (`wasi:http/outgoing-handler`) against a real nginx over HTTPS with
//! certificates made here: granted requests arrive with the grant's secret header, anything
//! ungranted is refused before a connection, and deadlines and size limits hold.

use std::net::TcpListener;
use std::path::Path;

use fogd::config::{FunctionSpec, HttpGrant, Millis};
use fogd::runtime::InvokeError;
use fogd::telemetry::RequestOutcome;
use fogd_tests::certs::Pki;
use fogd_tests::nginx::Nginx;
use fogd_tests::{Harness, call_json, components, event, logs, spec, wait_until_blocking};
use serde_json::{Value, json};

const TOKEN: &str = "Bearer s3cret-api-token";

/// A grant of `url`'s origin trusting the test CA written to `dir`.
fn grant(url: &str, dir: &Path) -> HttpGrant {
    HttpGrant {
        ca_file: Some(dir.join("ca.pem")),
        ..HttpGrant::for_origin(url)
    }
}

/// A probe granted `grants`, with the test CA written to `dir`.
fn probe(name: &str, grants: Vec<HttpGrant>) -> FunctionSpec {
    let mut spec = spec(name, &components().probe);
    spec.grants.outbound_http = grants;
    spec
}

fn request(method: &str, url: &str, headers: Value, body: &str) -> String {
    json!({"method": method, "url": url, "headers": headers, "body": body}).to_string()
}

#[test]
fn a_granted_post_arrives_with_its_secret_header_and_anything_ungranted_is_refused() {
    logs::capture();
    let pki = Pki::generate("http");
    let files = tempfile::tempdir().unwrap();
    pki.write_server_files(files.path());
    std::fs::write(files.path().join("big.bin"), vec![b'x'; 2 * 1024 * 1024]).unwrap();
    // Hex of a pseudo-random sequence: still over 1 MiB once gzipped.
    let mut state = 0x9e37_79b9_u32;
    let noise: String = (0..4 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            char::from_digit(state % 16, 16).unwrap_or('0')
        })
        .collect();
    std::fs::write(files.path().join("noise.txt"), noise).unwrap();
    let token_file = files.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let nginx = Nginx::api(files.path(), &pki, false);
    let origin = format!("https://127.0.0.1:{}", nginx.port);
    let mut granted = grant(&origin, files.path());
    granted
        .secret_headers
        .insert("authorization".into(), token_file.clone());
    let harness = Harness::new();
    let function = harness.load(&probe("api-client", vec![granted])).unwrap();

    // The guest's own Authorization is replaced by the grant's; the body arrives as sent.
    let body = r#"{"prefix":"203.0.113.0/24","action":"drop"}"#;
    let answer = call_json(
        &function,
        "http",
        &request(
            "POST",
            &format!("{origin}/api/rules"),
            json!({"content-type": "application/json", "authorization": "Bearer guest"}),
            body,
        ),
    );
    assert_eq!(answer["status"], 201, "{answer}");
    assert_eq!(answer["body"], r#"{"accepted":true}"#);
    let expected = format!(
        "POST /api/rules 201 auth=[{TOKEN}] body=[{}]",
        body.replace('"', "\\x22")
    );
    wait_until_blocking("nginx logs the POST", || {
        nginx
            .requests()
            .iter()
            .any(|line| line.starts_with(&expected))
    });

    let refused = [
        format!("https://localhost:{}/api/rules", nginx.port),
        format!("http://127.0.0.1:{}/api/rules", nginx.port),
        format!("https://127.0.0.1:{}/api/rules", nginx.port + 1),
    ];
    for url in &refused {
        let answer = call_json(&function, "http", &request("POST", url, json!({}), body));
        assert_eq!(answer, json!({"error": "NotGranted"}), "{url}");
    }

    // A redirect comes back to the guest; following it is a request like any other.
    let answer = call_json(
        &function,
        "http",
        &request("GET", &format!("{origin}/redirect"), json!({}), ""),
    );
    assert_eq!(answer["status"], 302, "{answer}");
    let location = answer["location"].as_str().unwrap().to_owned();
    assert!(
        location.starts_with("https://elsewhere.example:"),
        "{location}"
    );
    let followed = call_json(&function, "http", &request("GET", &location, json!({}), ""));
    assert_eq!(followed, json!({"error": "NotGranted"}));

    // A body past limits.http_response_bytes (1 MiB by default) is cut there.
    let answer = call_json(
        &function,
        "http",
        &request("GET", &format!("{origin}/big.bin"), json!({}), ""),
    );
    assert_eq!(answer, json!({"error": "ResponseTooLarge(Some(1048576))"}));
    // Gzipped, the body has no length: it is cut as it streams past the limit.
    let answer = call_json(
        &function,
        "http",
        &request(
            "GET",
            &format!("{origin}/noise.txt"),
            json!({"accept-encoding": "gzip"}),
            "",
        ),
    );
    assert_eq!(answer, json!({"error": "ResponseTooLarge(Some(1048576))"}));

    let grants = &function.caps().grants.http;
    assert_eq!(grants.request_count("none", RequestOutcome::NotGranted), 4);
    let label = format!("https://127.0.0.1:{}", nginx.port);
    assert_eq!(grants.request_count(&label, RequestOutcome::Answered), 4);
    // The cut response is logged when its connection closes.
    wait_until_blocking("nginx logs the cut responses", || {
        nginx.requests().len() == 4
    });
    let served = nginx.requests();
    for path in ["GET /big.bin ", "GET /noise.txt "] {
        assert!(
            served.iter().any(|line| line.starts_with(path)),
            "{served:?}"
        );
    }
    let connection = |line: &str| line.rsplit_once("connection=").map(|(_, n)| n.to_owned());
    assert_eq!(
        connection(&served[0]),
        connection(&served[1]),
        "the second request reused the kept-alive connection: {served:?}"
    );
    assert!(
        logs::lines_with(&["s3cret-api-token"]).is_empty(),
        "the token was logged"
    );
    assert!(!logs::lines_with(&["HTTP request refused", "api-client"]).is_empty());
}

#[test]
fn a_server_that_never_answers_fails_only_that_event_at_its_deadline() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let harness = Harness::new();
    let mut spec = probe(
        "slow-api",
        vec![HttpGrant::for_origin(format!("http://127.0.0.1:{port}"))],
    );
    spec.limits.timeout = Millis(300);
    let function = harness.load(&spec).unwrap();
    let payload = request("GET", &format!("http://127.0.0.1:{port}/"), json!({}), "");
    let report = function.call(&event("http", payload));
    assert!(
        matches!(
            report.outcome,
            Err(InvokeError::Timeout { timeout_ms: 300 })
        ),
        "{:?}",
        report.outcome
    );
    let grants = &function.caps().grants.http;
    assert_eq!(
        grants.request_count(&format!("http://127.0.0.1:{port}"), RequestOutcome::Timeout),
        1
    );
    // The next event is on time again.
    assert_eq!(
        String::from_utf8(
            function
                .call(&event("echo", "ok"))
                .outcome
                .unwrap()
                .unwrap()
        )
        .unwrap(),
        "ok"
    );
    drop(silent);
}

#[test]
fn mutual_tls_presents_the_grants_client_certificate() {
    let pki = Pki::generate("mtls");
    let files = tempfile::tempdir().unwrap();
    let client = pki.write_client_files(files.path(), "device");
    let nginx = Nginx::api(files.path(), &pki, true);
    let origin = format!("https://127.0.0.1:{}", nginx.port);
    let harness = Harness::new();
    let with_certificate = HttpGrant {
        ca_file: Some(client.ca.clone()),
        client_cert: Some(client.cert.clone()),
        client_key: Some(client.key.clone()),
        ..grant(&origin, files.path())
    };
    let without_certificate = HttpGrant {
        ca_file: Some(client.ca.clone()),
        ..grant(&origin, files.path())
    };
    let url = format!("{origin}/api/status");
    for (name, granted, status) in [
        ("with-cert", with_certificate, 201),
        ("without-cert", without_certificate, 400),
    ] {
        let function = harness.load(&probe(name, vec![granted])).unwrap();
        let answer = call_json(&function, "http", &request("POST", &url, json!({}), "{}"));
        assert_eq!(answer["status"], status, "{name}: {answer}");
    }
}

#[test]
fn a_grant_whose_files_cannot_be_read_stops_the_function_from_loading() {
    let harness = Harness::new();
    let mut granted = grant("https://api.example.net", Path::new("/nonexistent"));
    granted
        .secret_headers
        .insert("authorization".into(), "/nonexistent/token".into());
    let error = harness
        .load(&probe("broken", vec![granted]))
        .err()
        .expect("refused");
    let message = error.to_string();
    assert!(message.contains("/nonexistent/ca.pem"), "{message}");
}

#[test]
fn a_function_has_at_most_its_http_concurrency_in_flight() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let harness = Harness::new();
    let mut spec = probe(
        "one-at-a-time",
        vec![HttpGrant::for_origin(format!("http://127.0.0.1:{port}"))],
    );
    spec.limits.timeout = Millis(20_000);
    spec.limits.http_concurrency = 1;
    let function = harness.load(&spec).unwrap();
    let payload = request("GET", &format!("http://127.0.0.1:{port}/"), json!({}), "");
    let grants = &function.caps().grants.http;
    std::thread::scope(|scope| {
        let first = scope.spawn(|| function.call(&event("http", payload.clone())).outcome);
        let (mut connection, _) = server.accept().unwrap();
        read_request(&mut connection);
        // The first request holds the only place: the second waits for it, unconnected.
        let second = scope.spawn(|| function.call(&event("http", payload.clone())).outcome);
        fogd_tests::wait_until_blocking("the second request waits", || grants.waiting() == 1);
        server.set_nonblocking(true).unwrap();
        assert!(server.accept().is_err(), "the second request connected");
        // Answered, the first gives its place (and its kept-alive connection) to the second.
        answer(&mut connection);
        read_request(&mut connection);
        answer(&mut connection);
        for call in [first, second] {
            let output = call.join().unwrap().expect("the event succeeds").unwrap();
            let answer: serde_json::Value = serde_json::from_slice(&output).unwrap();
            assert_eq!(answer["status"], 200, "{answer}");
        }
    });
    assert!(server.accept().is_err(), "one connection served both");
}

/// Reads one request head (these requests have no body).
fn read_request(connection: &mut std::net::TcpStream) {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            connection.read(&mut byte).unwrap(),
            1,
            "the request ended early"
        );
        head.push(byte[0]);
    }
}

fn answer(connection: &mut std::net::TcpStream) {
    use std::io::Write;
    connection
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        .unwrap();
}
