//! Watches numeric telemetry and publishes an alert when a value stays above its own
//! running mean × `factor` for `samples` events in a row; publishes a clear message when it
//! comes back. See README.md for the payloads and settings.

mod track;

use fogd_sdk::log::Level;
use fogd_sdk::{Context, Event, Result, kv_get_json, kv_set_json, publish_json, setting};
use serde_json::{Map, Value, json};

use track::{Change, Rules, Track};

fn handle(event: Event) -> Result<Option<Vec<u8>>> {
    let telemetry: Map<String, Value> = event.json().context("payload is not a JSON object")?;
    let rules = Rules {
        factor: setting("factor", 1.5),
        samples: setting("samples", 3u32).max(1),
        alpha: setting("alpha", 0.2f64).clamp(0.001, 1.0),
        warmup: setting("warmup", 5u64),
    };
    let topic_template = setting("alert_topic", "alerts/{key}".to_owned());
    let keys: Option<Vec<String>> =
        fogd_sdk::config::get("keys").and_then(|v| serde_json::from_str(&v).ok());
    for (name, value) in &telemetry {
        let Some(value) = value.as_f64() else {
            continue;
        };
        if keys.as_ref().is_some_and(|keys| !keys.contains(name)) {
            continue;
        }
        let state_key = format!("ewma/{}/{name}", event.subject);
        let mut track: Track = kv_get_json(&state_key)?.unwrap_or_default();
        let mean = track.mean;
        let change = track.observe(value, &rules);
        let topic = topic_template
            .replace("{key}", name)
            .replace("{subject}", &event.subject);
        let subject = &event.subject;
        match change {
            Some(Change::Alert { threshold }) => {
                let alert = json!({
                    "state": "alert", "subject": subject, "key": name, "value": value,
                    "mean": mean, "threshold": threshold, "samples": track.over,
                    "event_id": event.id,
                });
                let line = format!(
                    "alert: {name}={value} on {subject} above {threshold:.1} (mean {mean:.1}) for {} samples",
                    track.over
                );
                announce(&topic, &alert, Level::Warn, &line)?;
            }
            Some(Change::Clear) => {
                let clear = json!({
                    "state": "clear", "subject": subject, "key": name, "value": value,
                    "mean": mean, "event_id": event.id,
                });
                let line = format!("clear: {name}={value} on {subject} back to normal");
                announce(&topic, &clear, Level::Info, &line)?;
            }
            None => {}
        }
        kv_set_json(&state_key, &track)?;
    }
    Ok(None)
}

/// Publishes an alert or clear message and logs it.
fn announce(topic: &str, body: &Value, level: Level, line: &str) -> Result<()> {
    publish_json(topic, body)?;
    fogd_sdk::log::log(level, line, &[("topic".into(), topic.into())]);
    Ok(())
}

fogd_sdk::handler!(handle);
