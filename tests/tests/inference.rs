//! The model registry against the real LiteRT runtime: exact reference outputs, refusal of
//! bad files and wrong shapes, hot swap under load, shadow reports, a missing runtime.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fogd::config::InferenceConfig;
use fogd::inference::{
    Availability, InferenceError, ModelError, ModelFileError, ModelRegistry, SyncAction,
};
use fogd_tests::{ReferenceVectors, flow_anomaly as spec, model_path, model_registry as registry};

#[test]
fn reproduces_the_python_interpreter_exactly() {
    let registry = registry();
    let mut with_reference = spec("1", "flow-anomaly/flow-anomaly.tflite");
    with_reference.reference = Some(model_path("flow-anomaly/reference.json"));
    let result = registry.activate(&with_reference);
    assert!(
        matches!(&result, Ok(SyncAction::Loaded { version }) if version == "1"),
        "{result:?}"
    );
    let cases = ReferenceVectors::load().cases;
    assert_eq!(cases.len(), 32);
    for (index, case) in cases.iter().enumerate() {
        let outputs = registry.run("flow-anomaly", &[&case.input]).unwrap();
        assert_eq!(outputs, vec![case.output.clone()], "case {index}");
    }
    let status = &registry.status()[0];
    assert_eq!(status.inputs[0].shape, vec![1, 8]);
    assert_eq!(status.outputs[0].shape, vec![1, 4]);
    let q = status.inputs[0]
        .quantization
        .expect("int8 input is quantized");
    assert!(q.scale > 0.0 && q.zero_point == -128, "{q:?}");
}

#[test]
fn refuses_corrupt_truncated_and_foreign_files() {
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(model_path("flow-anomaly/flow-anomaly.tflite")).unwrap();
    let mut flipped = good.clone();
    for byte in flipped.iter_mut().skip(64).step_by(7) {
        *byte ^= 0x5a;
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("corrupt", flipped),
        ("foreign", b"\x7fELF not a model at all".to_vec()),
        ("empty", Vec::new()),
    ];
    for (name, bytes) in cases {
        let path: PathBuf = dir.path().join(format!("{name}.tflite"));
        std::fs::write(&path, bytes).unwrap();
        let mut bad = spec("1", "unused");
        bad.path = path;
        let error = registry.activate(&bad).expect_err(name);
        assert!(
            matches!(error, ModelError::File { .. } | ModelError::Load { .. }),
            "{name}: {error}"
        );
        assert!(
            error.to_string().contains(&format!("{name}.tflite")),
            "{name}: {error}"
        );
    }
    let mut tampered = spec("1", "flow-anomaly/flow-anomaly.tflite");
    tampered.sha256 = Some("0".repeat(64));
    let error = registry.activate(&tampered).unwrap_err();
    assert!(
        matches!(
            error,
            ModelError::File {
                source: ModelFileError::Sha256Mismatch { .. },
                ..
            }
        ),
        "{error}"
    );
    assert!(matches!(
        registry.run("flow-anomaly", &[&[0u8; 8]]),
        Err(InferenceError::UnknownModel(_))
    ));
}

#[test]
fn wrong_input_is_an_error_not_a_crash() {
    let registry = registry();
    registry
        .activate(&spec("1", "flow-anomaly/flow-anomaly.tflite"))
        .unwrap();
    let error = registry.run("flow-anomaly", &[&[0u8; 7]]).unwrap_err();
    assert!(
        error.to_string().contains("(8 bytes), got 7 bytes"),
        "{error}"
    );
    let error = registry.run("flow-anomaly", &[]).unwrap_err();
    assert!(error.to_string().contains("takes 1 input"), "{error}");
}

#[test]
fn a_version_with_another_signature_is_refused_and_the_old_one_stays() {
    let registry = registry();
    registry
        .activate(&spec("1", "flow-anomaly/flow-anomaly.tflite"))
        .unwrap();
    let error = registry
        .activate(&spec("2", "testdata/wrong-shape.tflite"))
        .unwrap_err();
    assert!(matches!(error, ModelError::SignatureChanged(_)), "{error}");
    assert_eq!(registry.status()[0].version, "1");
    let error = registry
        .check_shapes("flow-anomaly", &[vec![1, 4]], &[])
        .unwrap_err();
    assert!(
        error.to_string().contains("the function expects [[1, 4]]"),
        "{error}"
    );
    assert!(
        registry
            .check_shapes("flow-anomaly", &[vec![1, 8]], &[vec![1, 4]])
            .is_ok()
    );
}

#[test]
fn hot_swap_under_load_fails_no_call() {
    let registry = Arc::new(registry());
    registry
        .activate(&spec("1", "flow-anomaly/flow-anomaly.tflite"))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicU64::new(0));
    let cases = Arc::new(ReferenceVectors::load().cases);
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (registry, stop, runs, cases) =
                (registry.clone(), stop.clone(), runs.clone(), cases.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    for case in cases.iter() {
                        match registry.run("flow-anomaly", &[&case.input]) {
                            Ok(outputs) if outputs.len() == 1 && outputs[0].len() == 4 => {}
                            other => failures.push(format!("{other:?}")),
                        }
                        runs.fetch_add(1, Ordering::Relaxed);
                    }
                }
                failures
            })
        })
        .collect();
    let mut swaps = 0;
    for round in 0..20 {
        let (version, file) = if round % 2 == 0 {
            ("2", "flow-anomaly/flow-anomaly-v2.tflite")
        } else {
            ("1", "flow-anomaly/flow-anomaly.tflite")
        };
        let before = runs.load(Ordering::Relaxed);
        assert!(matches!(
            registry.activate(&spec(version, file)),
            Ok(SyncAction::Swapped { .. })
        ));
        swaps += 1;
        // Each swap happens while calls are in flight: wait for the next ones to start.
        while runs.load(Ordering::Relaxed) < before + 200 {
            std::thread::yield_now();
        }
    }
    assert_eq!(registry.rollback("flow-anomaly").ok().as_deref(), Some("2"));
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert_eq!(swaps, 20);
    assert!(
        failures.is_empty(),
        "{} failed calls: {:?}",
        failures.len(),
        &failures[..1]
    );
    assert!(runs.load(Ordering::Relaxed) >= 4000);
    let status = &registry.status()[0];
    assert_eq!(
        (status.version.as_str(), status.previous_version.as_deref()),
        ("2", Some("1"))
    );
}

#[test]
fn shadow_version_is_measured_not_returned() {
    let registry = registry();
    let mut shadow = spec("2", "flow-anomaly/flow-anomaly-v2.tflite");
    shadow.shadow = true;
    let results = registry.sync(&[spec("1", "flow-anomaly/flow-anomaly.tflite"), shadow]);
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let cases = ReferenceVectors::load().cases;
    for case in &cases {
        // The active version's exact outputs come back, whatever the shadow says.
        let outputs = registry.run("flow-anomaly", &[&case.input]).unwrap();
        assert_eq!(outputs[0], case.output);
    }
    let report = registry.status()[0]
        .shadow
        .clone()
        .expect("a shadow report");
    assert_eq!(
        (
            report.active_version.as_str(),
            report.shadow_version.as_str()
        ),
        ("1", "2")
    );
    assert_eq!(report.runs, cases.len() as u64);
    assert_eq!(report.shadow_errors, 0);
    assert!(report.agreements >= 28, "{report:?}");
    assert!(report.active_mean_us > 0.0 && report.shadow_mean_us > 0.0);
    let results = registry.sync(&[spec("1", "flow-anomaly/flow-anomaly.tflite")]);
    assert!(
        matches!(results.as_slice(), [(name, Ok(SyncAction::Unchanged))] if name == "flow-anomaly"),
        "{results:?}"
    );
    assert!(registry.status()[0].shadow.is_none());
}

#[test]
fn without_the_runtime_inference_is_unavailable_with_the_reason() {
    let registry = ModelRegistry::new(&InferenceConfig {
        runtime: Some(PathBuf::from("/nonexistent/libLiteRt.so")),
        max_model_mib: 16,
    });
    let Availability::Unavailable(reason) = registry.availability() else {
        panic!("a missing library must leave inference unavailable");
    };
    assert!(reason.contains("/nonexistent/libLiteRt.so"), "{reason}");
    let error = registry
        .activate(&spec("1", "flow-anomaly/flow-anomaly.tflite"))
        .unwrap_err();
    assert!(matches!(error, ModelError::Unavailable(_)), "{error}");
    assert!(matches!(
        registry.run("flow-anomaly", &[&[0u8; 8]]),
        Err(InferenceError::Unavailable(_))
    ));
}
