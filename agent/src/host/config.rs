//! `fogd:function/config`: the function's settings, flattened to text once at load time.

use std::collections::BTreeMap;

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, GrantError, HostResources, HostState};
use crate::config::FunctionSpec;
use crate::contract::config::{self, Host};

/// A function's settings as the guest sees them, sorted by key.
#[derive(Debug, Clone, Default)]
pub struct FunctionConfig {
    entries: Vec<(String, String)>,
}

impl FunctionConfig {
    /// Strings are passed as they are; other values in their JSON text form.
    pub fn from_values(values: &BTreeMap<String, serde_json::Value>) -> Self {
        let entries = values
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (key.clone(), text)
            })
            .collect();
        Self { entries }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|index| self.entries[index].1.as_str())
    }
}

impl Capability for FunctionConfig {
    fn prepare(spec: &FunctionSpec, _: &HostResources) -> Result<Self, GrantError> {
        Ok(Self::from_values(&spec.config))
    }

    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        config::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
    }
}

impl Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.caps.grants.config.get(&key).map(str::to_owned)
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        self.caps.grants.config.entries.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_strings_become_json_text() {
        let mut values = BTreeMap::new();
        values.insert("factor".to_owned(), serde_json::json!(1.5));
        values.insert("name".to_owned(), serde_json::json!("cpu"));
        values.insert("keys".to_owned(), serde_json::json!(["a", "b"]));
        let config = FunctionConfig::from_values(&values);
        assert_eq!(config.get("factor"), Some("1.5"));
        assert_eq!(config.get("name"), Some("cpu"));
        assert_eq!(config.get("keys"), Some(r#"["a","b"]"#));
        assert_eq!(config.get("missing"), None);
    }
}
