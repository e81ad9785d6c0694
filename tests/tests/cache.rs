//! The compiled-component cache: reused across restarts, invalidated by changes, repaired
//! when corrupt; invalid components give an error naming the file.

use std::path::Path;

use fogd::config::{FunctionSpec, RuntimeConfig, StateConfig};
use fogd::outbound::DiscardSink;
use fogd::runtime::{LoadError, LoadSource, Runtime, RuntimeSettings};
use fogd::state::StateDb;
use fogd_tests::{call_text, components, spec};
use std::sync::Arc;

/// Loads `spec` in a brand-new runtime (as a restarted daemon would) using `cache`.
fn load_fresh(spec: &FunctionSpec, cache: &Path) -> Result<(LoadSource, String), LoadError> {
    let settings = RuntimeSettings::new(
        &RuntimeConfig::default(),
        std::slice::from_ref(spec),
        cache.to_owned(),
    );
    let runtime = Runtime::new(settings).unwrap();
    let state = StateDb::temporary(&StateConfig::default()).unwrap();
    let function = runtime.load(spec, &state, Arc::new(DiscardSink))?;
    Ok((
        function.load_source(),
        call_text(&function, "echo", "cached?"),
    ))
}

fn cache_entries(cache: &Path, extension: &str) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    entries.sort();
    entries
}

/// Appends a custom section: a different but equally valid component.
fn with_custom_section(wasm: &[u8], name: &str) -> Vec<u8> {
    let mut changed = wasm.to_vec();
    let body_len = 1 + name.len() + 4;
    changed.push(0); // custom section id
    changed.push(body_len as u8);
    changed.push(name.len() as u8);
    changed.extend_from_slice(name.as_bytes());
    changed.extend_from_slice(b"fogd");
    changed
}

#[test]
fn second_start_loads_from_cache_without_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec("cached", &components().probe);
    assert_eq!(
        load_fresh(&spec, dir.path()).unwrap().0,
        LoadSource::Compiled
    );
    assert_eq!(
        load_fresh(&spec, dir.path()).unwrap(),
        (LoadSource::Cache, "cached?".to_owned())
    );
    assert_eq!(cache_entries(dir.path(), "cwasm").len(), 1);
}

#[test]
fn changed_component_recompiles() {
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("probe.wasm");
    let original = std::fs::read(&components().probe).unwrap();
    std::fs::write(&component, &original).unwrap();
    let spec = spec("changing", &component);
    let cache = dir.path().join("cache");
    assert_eq!(load_fresh(&spec, &cache).unwrap().0, LoadSource::Compiled);
    assert_eq!(load_fresh(&spec, &cache).unwrap().0, LoadSource::Cache);
    std::fs::write(&component, with_custom_section(&original, "rev2")).unwrap();
    assert_eq!(
        load_fresh(&spec, &cache).unwrap(),
        (LoadSource::Compiled, "cached?".to_owned())
    );
    assert_eq!(cache_entries(&cache, "cwasm").len(), 2);
}

#[test]
fn corrupt_cache_entry_is_discarded_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec("corrupted", &components().probe);
    load_fresh(&spec, dir.path()).unwrap();
    let entry = cache_entries(dir.path(), "cwasm").remove(0);
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();

    assert_eq!(
        load_fresh(&spec, dir.path()).unwrap(),
        (LoadSource::Compiled, "cached?".to_owned())
    );
    assert_eq!(load_fresh(&spec, dir.path()).unwrap().0, LoadSource::Cache);

    std::fs::write(&entry, b"truncated").unwrap();
    assert_eq!(
        load_fresh(&spec, dir.path()).unwrap().0,
        LoadSource::Compiled
    );
}

#[test]
fn invalid_wasm_gives_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"\0asm this is not a component").unwrap();
    let error = load_fresh(&spec("bogus", &bogus), &dir.path().join("cache")).unwrap_err();
    assert!(matches!(error, LoadError::Invalid { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&bogus.display().to_string()), "{message}");

    let missing = dir.path().join("missing.wasm");
    let error = load_fresh(&spec("missing", &missing), &dir.path().join("cache")).unwrap_err();
    assert!(error.to_string().contains("missing.wasm"), "{error}");
}

#[test]
fn component_of_another_world_is_refused_with_the_reason() {
    // A core module is valid wasm but not a component of the fogd:function world.
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let error = load_fresh(&spec("core", &core), &dir.path().join("cache")).unwrap_err();
    assert!(error.to_string().contains("core.wasm"), "{error}");
}
