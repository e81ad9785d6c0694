//! The supervisor driven in this process: a reload runs the new config and counters carry
//! on; a reload that changes what a function runs, its limits, which functions there are or
//! what they subscribe to keeps every trigger and the queues that stay, so a steady stream
//! of traps and MQTT messages loses nothing; a staged revision is activated,
//! watched and committed, and one whose gate trips is rolled back to the committed one.

use std::path::{Path, PathBuf};

use fogd::config::{self, Config};
use fogd::supervisor::Supervisor;
use fogd::sync::local::{self, StageError};
use fogd::sync::{FleetKey, RevisionStore};
use fogd_tests::agent::{broker, connected};
use fogd_tests::mosquitto::Mosquitto;
use fogd_tests::mqtt_client::TestClient;
use fogd_tests::streams::{
    Sizes, invocations, paced_messages, paced_traps, trap_and_message_functions,
    trap_and_message_functions_sized, v2c_trap,
};
use fogd_tests::{PATIENCE, components, wait_until};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

struct Site {
    dir: tempfile::TempDir,
    key: FleetKey,
}

impl Site {
    fn new() -> Self {
        let (_, key) = FleetKey::generate().unwrap();
        Self {
            dir: tempfile::tempdir().unwrap(),
            key,
        }
    }

    /// The device config: `functions` (TOML) and trust in the site's fleet key.
    fn config(&self, functions: &str) -> Config {
        let text = format!(
            r#"
state_dir = "state"

# No metrics listener: tests in one process must not collide on its port.
[metrics]

[sync]
trusted_keys = ["{key}"]

{functions}
"#,
            key = self.key.public_hex()
        );
        config::parse_str(&text, Path::new("fogd.toml"), self.dir.path())
            .unwrap_or_else(|errors| panic!("{errors}"))
    }

    /// Signs a revision running `component` (as `echo`) on a 20 ms timer named `subject`,
    /// writes its artifact and stages it.
    fn stage(
        &self,
        config: &Config,
        revision: u64,
        component: &Path,
        subject: &str,
        health: Value,
    ) -> Result<u64, StageError> {
        let bytes = std::fs::read(component).unwrap();
        let document = json!({
            "schema": "fogd.deployment/v1",
            "revision": revision,
            "artifacts": {"echo.wasm": {
                "url": "https://artifacts.example/echo.wasm",
                "sha256": hex::encode(Sha256::digest(&bytes)),
                "size": bytes.len()
            }},
            "function": [{
                "name": "echo",
                "component": "echo.wasm",
                "trigger": [{"timer": {"every": "20ms", "name": subject}}]
            }],
            "health": health
        });
        let artifacts = self.dir.path().join(format!("rev{revision}-artifacts"));
        std::fs::create_dir_all(&artifacts).unwrap();
        std::fs::write(artifacts.join("echo.wasm"), &bytes).unwrap();
        let signed = serde_json::to_vec(&self.key.sign(document)).unwrap();
        local::stage(config, &signed, &artifacts)
    }

    fn store(&self) -> RevisionStore {
        RevisionStore::new(&self.dir.path().join("state"))
    }

    fn revision_dir(&self, revision: u64) -> PathBuf {
        self.dir.path().join(format!("state/revisions/{revision}"))
    }
}

fn timer_function(name: &str, component: &Path, subject: &str) -> String {
    format!(
        r#"
[[function]]
name = "{name}"
component = "{component}"
trigger = [{{ timer = {{ every = "20ms", name = "{subject}" }} }}]
"#,
        component = component.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_runs_the_new_config_and_counters_carry_on() {
    let site = Site::new();
    let echo = &components().echo;
    let first = site.config(&timer_function("echo", echo, "before"));
    let supervisor = Supervisor::start(first).await.unwrap();
    wait_until("echo ran 5 times", || invocations(&supervisor, "echo") >= 5).await;

    let second = site.config(&format!(
        "{}{}",
        timer_function("echo", echo, "after"),
        timer_function("added", echo, "added")
    ));
    let supervisor = supervisor.reload(second).await.unwrap();
    let carried = invocations(&supervisor, "echo");
    assert!(carried >= 5, "the counter started again at {carried}");
    wait_until("the added function runs", || {
        invocations(&supervisor, "added") >= 3
    })
    .await;
    wait_until("echo runs on after the reload", || {
        invocations(&supervisor, "echo") >= carried + 3
    })
    .await;
    supervisor.stop("the test ended").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_removes_a_function_that_did_not_load_makes_health_whole_again() {
    let site = Site::new();
    let echo = &components().echo;
    let missing = site.dir.path().join("missing.wasm");
    let first = site.config(&format!(
        "{}{}",
        timer_function("echo", echo, "tick"),
        timer_function("broken", &missing, "never")
    ));
    let supervisor = Supervisor::start(first).await.unwrap();
    let report = supervisor.agent().health.report();
    assert_eq!(report.status, "degraded");
    assert!(!report.components["function/broken"].ok);

    let second = site.config(&timer_function("echo", echo, "tick"));
    let supervisor = supervisor.reload(second).await.unwrap();
    let report = supervisor.agent().health.report();
    assert!(
        !report.components.contains_key("function/broken"),
        "{:?}",
        report.components
    );
    assert_eq!(report.status, "ok", "{:?}", report.components);
    supervisor.stop("the test ended").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_is_watched_and_committed_and_one_whose_gate_trips_is_rolled_back() {
    let site = Site::new();
    let config = site.config("");
    let supervisor = Supervisor::start(config.clone()).await.unwrap();
    assert_eq!(supervisor.watched_revision(), None);

    let revision = site
        .stage(
            &config,
            1,
            &components().echo,
            "rev1",
            json!({"window": "200ms"}),
        )
        .unwrap();
    assert_eq!(revision, 1);
    let supervisor = supervisor.activate(1).await.unwrap();
    assert_eq!(supervisor.watched_revision(), Some(1));
    let supervisor = supervisor.settle_watch().await.unwrap();
    assert_eq!(supervisor.watched_revision(), None);
    assert_eq!(site.store().committed().unwrap(), Some(1));
    let before = invocations(&supervisor, "echo");

    // The probe fails every event whose subject is "fail".
    site.stage(
        &config,
        2,
        &components().probe,
        "fail",
        json!({"window": "30s", "min_events": 5, "max_error_rate": 0.5}),
    )
    .unwrap();
    let supervisor = supervisor.activate(2).await.unwrap();
    assert_eq!(supervisor.watched_revision(), Some(2));
    let supervisor = supervisor.settle_watch().await.unwrap();
    assert_eq!(supervisor.watched_revision(), None);
    assert_eq!(site.store().committed().unwrap(), Some(1));
    assert!(!site.revision_dir(2).exists());
    let refused = site
        .store()
        .refused()
        .expect("revision 2 is recorded as refused");
    assert_eq!(refused.0, 2);
    assert!(refused.1.contains("events failed"), "{}", refused.1);
    let failed = invocations(&supervisor, "echo");
    assert!(failed > before, "revision 2's events count too");
    wait_until("revision 1's echo runs again", || {
        invocations(&supervisor, "echo") >= failed + 3
    })
    .await;
    let errors = supervisor
        .agent()
        .metrics
        .function("echo")
        .error_count("failed");
    assert!(errors >= 5, "{errors} failed events");
    wait_until("no event fails after the rollback", || {
        let now = invocations(&supervisor, "echo");
        now >= failed + 10
            && supervisor
                .agent()
                .metrics
                .function("echo")
                .error_count("failed")
                == errors
    })
    .await;
    supervisor.stop("the test ended").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_signed_by_another_key_is_refused_and_nothing_is_staged() {
    let site = Site::new();
    let config = site.config("");
    let other = Site::new();
    let error = other
        .stage(
            &config,
            1,
            &components().echo,
            "rev1",
            json!({"window": "200ms"}),
        )
        .unwrap_err();
    assert!(matches!(error, StageError::Refused(_)), "{error}");
    assert!(!site.revision_dir(1).exists());
    assert_eq!(site.store().committed().unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_one_function_loses_no_trap_and_no_message() {
    const SENT: u64 = 3_000;
    let mosquitto = Mosquitto::start();
    let site = Site::new();
    let trap = v2c_trap(site.dir.path());
    // The same text in every version: only the trap function's settings change.
    let local = broker("local", &mosquitto.address(), "");
    let version = |generation: u32| {
        site.config(&format!(
            "{local}{}",
            trap_and_message_functions("127.0.0.1:0", generation)
        ))
    };
    let mut supervisor = Supervisor::start(version(1)).await.unwrap();
    connected(supervisor.agent(), "local").await;
    let listening = supervisor.agent().snmp_address.expect("the SNMP receiver");
    let publisher = TestClient::connect(mosquitto.port, "load", &[]).await;

    let traps = tokio::spawn(paced_traps(listening, trap, SENT));
    let messages = tokio::spawn(paced_messages(publisher, "load/in", SENT));
    for (generation, after) in [(2, SENT / 3), (3, 2 * SENT / 3)] {
        wait_until("the stream is under way", || {
            invocations(&supervisor, "traps") >= after
        })
        .await;
        supervisor = supervisor.reload(version(generation)).await.unwrap();
        assert_eq!(
            supervisor.agent().snmp_address,
            Some(listening),
            "the receiver kept its socket"
        );
    }
    every_one_ran(&supervisor, traps, messages, SENT).await;
    supervisor.stop("the test ended").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_that_add_remove_resize_and_subscribe_functions_lose_no_trap_and_no_message() {
    const SENT: u64 = 3_000;
    let mosquitto = Mosquitto::start();
    let site = Site::new();
    let trap = v2c_trap(site.dir.path());
    let local = broker("local", &mosquitto.address(), "");
    let echo = &components().echo;
    let sized = |queue, concurrency| Sizes { queue, concurrency };
    let version = |traps: Sizes, messages: Sizes, extra: &str| {
        site.config(&format!(
            "{local}{}{extra}",
            trap_and_message_functions_sized("127.0.0.1:0", 1, traps, messages)
        ))
    };
    let first = version(sized(8192, 2), sized(8192, 2), "");
    let mut supervisor = Supervisor::start(first).await.unwrap();
    connected(supervisor.agent(), "local").await;
    let listening = supervisor.agent().snmp_address.expect("the SNMP receiver");
    let publisher = TestClient::connect(mosquitto.port, "load", &[]).await;

    let traps = tokio::spawn(paced_traps(listening, trap, SENT));
    let messages = tokio::spawn(paced_messages(publisher, "load/in", SENT));
    wait_until("the stream is under way", || {
        invocations(&supervisor, "traps") >= SENT / 3
    })
    .await;
    // A retained message waits at the broker for the function the reload adds.
    let mut setup = TestClient::connect(mosquitto.port, "setup", &["load/extra"]).await;
    setup.publish_retained("load/extra", "kept").await;
    assert_eq!(setup.next(PATIENCE).await.text(), "kept");
    let added = format!(
        r#"{timer}
            [[function]]
            name = "extra"
            component = "{echo}"
            [[function.trigger]]
            mqtt = {{ topic = "load/extra", qos = 1, retained = "once" }}
        "#,
        timer = timer_function("added", echo, "added"),
        echo = echo.display()
    );
    supervisor = supervisor
        .reload(version(sized(16384, 1), sized(8192, 2), &added))
        .await
        .unwrap();
    assert_eq!(supervisor.agent().snmp_address, Some(listening));
    wait_until("the added function runs", || {
        invocations(&supervisor, "added") >= 3
    })
    .await;
    wait_until(
        "the session subscribed to the added trigger's topic",
        || invocations(&supervisor, "extra") >= 1,
    )
    .await;
    wait_until("the stream goes on", || {
        invocations(&supervisor, "traps") >= 2 * SENT / 3
    })
    .await;
    supervisor = supervisor
        .reload(version(sized(16384, 1), sized(4096, 1), ""))
        .await
        .unwrap();
    assert_eq!(supervisor.agent().snmp_address, Some(listening));
    let components = supervisor.agent().health.report().components;
    assert!(!components.contains_key("function/added"), "{components:?}");
    assert!(!components.contains_key("function/extra"), "{components:?}");
    assert!(components.contains_key("function/traps"), "{components:?}");

    every_one_ran(&supervisor, traps, messages, SENT).await;
    supervisor.stop("the test ended").await;
}

/// Waits for both streams to end and for each of their `sent` traps and messages to have
/// run, none dropped.
async fn every_one_ran(
    supervisor: &Supervisor,
    traps: tokio::task::JoinHandle<()>,
    messages: tokio::task::JoinHandle<()>,
    sent: u64,
) {
    traps.await.unwrap();
    messages.await.unwrap();
    wait_until("every trap and every message ran", || {
        invocations(supervisor, "traps") == sent && invocations(supervisor, "messages") == sent
    })
    .await;
    let metrics = &supervisor.agent().metrics;
    for function in ["traps", "messages"] {
        assert_eq!(metrics.function(function).dropped_count("queue_full"), 0);
    }
}
