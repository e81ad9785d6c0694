//! Functions built against an earlier release of the contract keep loading and running.

use fogd::config::{SyslogTrigger, TriggerSpec};
use fogd::contract::ContractVersion;
use fogd::event::{Source, new_event};
use fogd::runtime::{InvokeError, LoadError};
use fogd_tests::{Harness, call_text, components, spec};

#[test]
fn a_function_built_against_0_1_0_runs_with_its_state_and_log() {
    let harness = Harness::new();
    let legacy = harness
        .load(&spec("legacy", &components().legacy_echo))
        .unwrap();
    assert_eq!(legacy.contract(), ContractVersion::V0_1_0);
    assert_eq!(call_text(&legacy, "a", "hello"), "1:hello");
    assert_eq!(call_text(&legacy, "a", "again"), "2:again");

    let current = harness.load(&spec("current", &components().echo)).unwrap();
    assert_eq!(current.contract(), ContractVersion::Current);
}

#[test]
fn an_event_from_a_source_0_1_0_lacks_fails_only_that_event() {
    let harness = Harness::new();
    let legacy = harness
        .load(&spec("legacy", &components().legacy_echo))
        .unwrap();
    let outcome = legacy
        .call(&new_event(Source::Syslog, "sshd", b"{}".to_vec()))
        .outcome;
    match outcome {
        Err(InvokeError::Trap(reason)) => assert!(
            reason.contains("fogd:function@0.1.0") && reason.contains("syslog"),
            "{reason}"
        ),
        other => panic!("expected the event to fail, got {other:?}"),
    }
    assert_eq!(call_text(&legacy, "a", "still"), "1:still");
}

#[test]
fn a_0_1_0_function_cannot_take_a_trigger_its_contract_lacks() {
    let harness = Harness::new();
    let mut legacy = spec("legacy", &components().legacy_echo);
    legacy
        .triggers
        .push(TriggerSpec::Syslog(SyslogTrigger::default()));
    let error = harness.load(&legacy).err().expect("load refused");
    assert!(
        matches!(
            error,
            LoadError::Contract {
                events: Source::Syslog,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("rebuild it"), "{error}");
}
