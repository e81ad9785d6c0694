//! What `/healthz` reports: each part of the agent says whether it works and why not.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ComponentHealth {
    pub ok: bool,
    pub detail: String,
}

#[derive(Default)]
pub struct Health {
    components: Mutex<BTreeMap<String, ComponentHealth>>,
}

#[derive(Debug, Serialize)]
pub struct HealthReport {
    pub status: &'static str,
    pub version: &'static str,
    pub components: BTreeMap<String, ComponentHealth>,
}

impl Health {
    /// Records the state of one part, e.g. `function/echo` or `broker/local`.
    pub fn set(&self, component: impl Into<String>, ok: bool, detail: impl Into<String>) {
        let health = ComponentHealth {
            ok,
            detail: detail.into(),
        };
        if let Ok(mut components) = self.components.lock() {
            components.insert(component.into(), health);
        }
    }

    /// Forgets a part the agent no longer has (a function that was removed).
    pub fn remove(&self, component: &str) {
        if let Ok(mut components) = self.components.lock() {
            components.remove(component);
        }
    }

    pub fn report(&self) -> HealthReport {
        let components = self
            .components
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        let ok = components.values().all(|c| c.ok);
        HealthReport {
            status: if ok { "ok" } else { "degraded" },
            version: env!("CARGO_PKG_VERSION"),
            components,
        }
    }
}
