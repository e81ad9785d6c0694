//! `fogd:function/config`: the function's settings, flattened to text once at load time.

use std::collections::BTreeMap;

use super::HostState;
use crate::contract::config::Host;

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

impl Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.caps.config.get(&key).map(str::to_owned)
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        self.caps.config.entries.clone()
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
