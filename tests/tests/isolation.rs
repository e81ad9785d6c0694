//! What a function leaves outside its sandbox is bounded: its result, its publishes and its
//! kv writes per event, and what it keeps in kv. A failed event leaves nothing behind unless
//! the function keeps its effects (`effects = "keep"`).

use fogd::config::{Effects, FunctionSpec, Millis};
use fogd::runtime::{InvokeError, LoadedFunction};
use fogd_tests::{Harness, call_text, components, event, spec};

fn probe(name: &str) -> FunctionSpec {
    let mut spec = spec(name, &components().probe);
    spec.grants.publish = vec!["flood/#".into()];
    spec
}

fn kind(function: &LoadedFunction, subject: &str, payload: &str) -> &'static str {
    match function.call(&event(subject, payload)).outcome {
        Ok(_) => "ok",
        Err(error) => error.kind(),
    }
}

#[test]
fn a_result_over_the_limit_fails_the_event_and_is_not_published() {
    let mut harness = Harness::new();
    let mut spec = probe("big-result");
    spec.output = Some("results/{function}".into());
    spec.limits.result_bytes = 1000;
    let function = harness.load(&spec).unwrap();
    let report = function.call(&event("big", "1001"));
    assert!(
        matches!(&report.outcome, Err(InvokeError::OutputLimit(reason)) if reason.contains("1001 bytes")),
        "{:?}",
        report.outcome
    );
    assert_eq!(call_text(&function, "big", "1000").len(), 1000);
    assert!(harness.drain_published().is_empty());
}

#[test]
fn a_publish_flood_fails_its_event_and_publishes_nothing_of_it() {
    let mut harness = Harness::new();
    let mut spec = probe("publish-flood");
    spec.limits.publishes = 10;
    let function = harness.load(&spec).unwrap();
    let flood = r#"{"publish": 1000, "topic": "flood/x", "bytes": 10}"#;
    // The probe stops at the refusal and returns normally: the event fails all the same.
    assert_eq!(kind(&function, "flood", flood), "output_limit");
    assert!(harness.drain_published().is_empty());

    let within = r#"{"publish": 10, "topic": "flood/x", "bytes": 10}"#;
    assert_eq!(kind(&function, "flood", within), "ok");
    assert_eq!(harness.drain_published().len(), 10);
}

#[test]
fn published_bytes_per_event_are_bounded() {
    let mut harness = Harness::new();
    let mut spec = probe("publish-bytes");
    spec.limits.publish_bytes = 1000;
    let function = harness.load(&spec).unwrap();
    let flood = r#"{"publish": 11, "topic": "flood/x", "bytes": 100}"#;
    assert_eq!(kind(&function, "flood", flood), "output_limit");
    assert!(harness.drain_published().is_empty());
}

#[test]
fn a_kv_flood_stops_at_the_quota_and_the_failed_event_writes_nothing() {
    let harness = Harness::new();
    let mut spec = probe("kv-flood");
    spec.limits.kv_keys = 50;
    spec.limits.kv_bytes = 1_000_000;
    let function = harness.load(&spec).unwrap();
    let kv = harness.state.kv("kv-flood").unwrap();
    assert_eq!(kind(&function, "flood", r#"{"kv": 40, "size": 100}"#), "ok");
    assert_eq!(kv.usage().keys(), 40);
    let flood = r#"{"kv": 1000, "size": 100}"#;
    let report = function.call(&event("flood", flood));
    assert!(
        matches!(&report.outcome, Err(InvokeError::StorageQuota(reason)) if reason.contains("50 keys")),
        "{:?}",
        report.outcome
    );
    assert_eq!(kv.usage().keys(), 40, "the failed event added nothing");
    assert_eq!(kv.scan("flood/", 1000).unwrap().len(), 40);
}

#[test]
fn the_kv_bytes_quota_holds_across_events() {
    let harness = Harness::new();
    let mut spec = probe("kv-bytes");
    spec.limits.kv_bytes = 10_000;
    let function = harness.load(&spec).unwrap();
    let kv = harness.state.kv("kv-bytes").unwrap();
    let mut kinds = Vec::new();
    for round in 0..3 {
        let request = format!(r#"{{"kv": 1, "size": 4000, "round": {round}}}"#);
        // The same key each round: rewriting it frees what it held.
        kinds.push(kind(&function, "flood", &request));
    }
    assert_eq!(kinds, ["ok", "ok", "ok"]);
    assert!(kv.usage().bytes() <= 10_000);
    assert_eq!(
        kind(
            &function,
            "kv",
            r#"[{"op": "set_size", "key": "more", "size": 7000}]"#
        ),
        "storage_quota"
    );
    assert!(kv.usage().bytes() <= 10_000, "{}", kv.usage().bytes());
}

#[test]
fn kv_bytes_written_per_event_are_bounded() {
    let harness = Harness::new();
    let mut spec = probe("kv-budget");
    spec.limits.kv_write_bytes = 1000;
    let function = harness.load(&spec).unwrap();
    assert_eq!(
        kind(&function, "flood", r#"{"kv": 20, "size": 100}"#),
        "output_limit"
    );
    assert_eq!(harness.state.kv("kv-budget").unwrap().usage().keys(), 0);
}

#[test]
fn a_flood_that_then_times_out_leaves_nothing_behind() {
    let mut harness = Harness::new();
    let mut spec = probe("flood-timeout");
    spec.limits.timeout = Millis(100);
    let function = harness.load(&spec).unwrap();
    let flood =
        r#"{"publish": 50, "topic": "flood/x", "bytes": 10, "kv": 50, "size": 10, "then": "loop"}"#;
    assert_eq!(kind(&function, "flood", flood), "timeout");
    assert!(harness.drain_published().is_empty());
    assert_eq!(harness.state.kv("flood-timeout").unwrap().usage().keys(), 0);
}

#[test]
fn with_kept_effects_a_failed_event_keeps_what_it_did() {
    let mut harness = Harness::new();
    let mut spec = probe("kept");
    spec.limits.timeout = Millis(100);
    spec.effects = Effects::Keep;
    let function = harness.load(&spec).unwrap();
    let flood =
        r#"{"publish": 5, "topic": "flood/x", "bytes": 10, "kv": 5, "size": 10, "then": "loop"}"#;
    assert_eq!(kind(&function, "flood", flood), "timeout");
    assert_eq!(harness.drain_published().len(), 5);
    assert_eq!(harness.state.kv("kept").unwrap().usage().keys(), 5);
}

#[test]
fn a_refused_memory_grow_fails_the_event_even_when_the_guest_carries_on() {
    let harness = Harness::new();
    let mut spec = probe("grow-handled");
    spec.limits.memory_mib = 16;
    let function = harness.load(&spec).unwrap();
    assert_eq!(
        function.call(&event("grow-handled", "")).outcome,
        Err(InvokeError::MemoryLimit { limit_mib: 16 })
    );
    assert_eq!(call_text(&function, "echo", "after"), "after");
}

#[test]
fn the_sdk_update_helper_loses_no_update_to_state_shared_across_keys() {
    let harness = Harness::new();
    let mut spec = probe("shared-counter");
    spec.limits.concurrency = 4;
    let function = std::sync::Arc::new(harness.load(&spec).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let function = function.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let outcome = function.call(&event("kv-update", "shared")).outcome;
                    assert!(outcome.is_ok(), "{outcome:?}");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let kv = harness.state.kv("shared-counter").unwrap();
    assert_eq!(kv.get("shared").unwrap().as_deref(), Some(&b"200"[..]));
}

#[test]
fn events_that_touch_the_same_keys_at_once_lose_no_update() {
    let harness = Harness::new();
    let function = std::sync::Arc::new(harness.load(&probe("counter")).unwrap());
    let steps =
        r#"[{"op": "get", "key": "n"}, {"op": "incr", "key": "n"}, {"op": "incr", "key": "m"}]"#;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let function = function.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let outcome = function.call(&event("kv", steps)).outcome;
                    assert!(outcome.is_ok(), "{outcome:?}");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let kv = harness.state.kv("counter").unwrap();
    assert_eq!(kv.get("n").unwrap().as_deref(), Some(&b"200"[..]));
    assert_eq!(kv.get("m").unwrap().as_deref(), Some(&b"200"[..]));
}
