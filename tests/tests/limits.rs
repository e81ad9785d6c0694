//! A misbehaving guest fails only its own event, with a typed error; the function and the
//! runtime keep serving.

use std::time::{Duration, Instant};

use fogd::config::Millis;
use fogd::runtime::InvokeError;
use fogd_tests::{Harness, call_text, components, event, logs, spec};

#[test]
fn infinite_loop_is_stopped_at_its_deadline() {
    let harness = Harness::new();
    let mut spec = spec("looper", &components().probe);
    spec.limits.timeout = Millis(100);
    let function = harness.load(&spec).unwrap();
    let started = Instant::now();
    let report = function.call(&event("loop", ""));
    let elapsed = started.elapsed();
    assert_eq!(
        report.outcome,
        Err(InvokeError::Timeout { timeout_ms: 100 })
    );
    // The deadline is enforced at 10 ms epoch ticks: 100 ms plus at most two ticks, with
    // generous room for a loaded CI machine.
    assert!(
        elapsed >= Duration::from_millis(100),
        "stopped early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "stopped late: {elapsed:?}"
    );
    assert_eq!(call_text(&function, "echo", "after loop"), "after loop");
}

#[test]
fn memory_bomb_is_stopped_at_its_limit() {
    let harness = Harness::new();
    let mut spec = spec("hoarder", &components().probe);
    spec.limits.memory_mib = 8;
    let function = harness.load(&spec).unwrap();
    let report = function.call(&event("grow", ""));
    assert_eq!(
        report.outcome,
        Err(InvokeError::MemoryLimit { limit_mib: 8 })
    );
    assert_eq!(call_text(&function, "echo", "after grow"), "after grow");
}

#[test]
fn guest_panic_fails_the_event_and_its_message_is_logged() {
    let harness = Harness::new();
    let function = harness
        .load(&spec("panicker", &components().probe))
        .unwrap();
    assert_eq!(
        function.call(&event("panic", "")).outcome,
        Err(InvokeError::Panic)
    );
    assert_eq!(
        logs::lines_with(&["probe was asked to panic", "panicker", "stderr"]).len(),
        1
    );
    assert_eq!(call_text(&function, "echo", "after panic"), "after panic");
}

#[test]
fn guest_error_is_reported_as_failed() {
    let harness = Harness::new();
    let function = harness.load(&spec("failer", &components().probe)).unwrap();
    assert_eq!(
        function.call(&event("fail", "")).outcome,
        Err(InvokeError::Failed("probe was asked to fail".into()))
    );
}

#[test]
fn failures_are_isolated_between_functions_running_at_once() {
    let harness = Harness::new();
    let mut looper = spec("isolated-loop", &components().probe);
    looper.limits.timeout = Millis(300);
    let looper = harness.load(&looper).unwrap();
    let echo = harness
        .load(&spec("isolated-echo", &components().echo))
        .unwrap();
    std::thread::scope(|scope| {
        let stuck = scope.spawn(|| looper.call(&event("loop", "")).outcome);
        for index in 0..200 {
            let payload = format!("event {index}");
            let output = echo.call(&event("x", payload.clone())).outcome.unwrap();
            assert_eq!(output, Some(payload.into_bytes()));
        }
        assert_eq!(
            stuck.join().unwrap(),
            Err(InvokeError::Timeout { timeout_ms: 300 })
        );
    });
}

#[test]
fn a_trap_is_one_line_at_warn_and_its_backtrace_is_for_debugging() {
    let harness = Harness::new();
    let function = harness.load(&spec("trapper", &components().probe)).unwrap();
    let report = function.call(&event("trap", ""));
    let Err(InvokeError::Trap(message)) = &report.outcome else {
        panic!("{:?}", report.outcome);
    };
    assert!(message.contains("out of bounds"), "{message}");
    assert!(!message.contains('\n'), "one line: {message:?}");
    assert!(!message.contains("wasm backtrace"), "{message:?}");
    assert!(
        !logs::lines_with(&["DEBUG", "trapper", "backtrace="]).is_empty(),
        "the backtrace is logged at debug"
    );
    assert_eq!(call_text(&function, "echo", "after trap"), "after trap");
}
