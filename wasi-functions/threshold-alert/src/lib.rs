//! Watches numeric telemetry and publishes an alert when a value stays above its own
//! running mean × `factor` for `samples` events in a row; publishes a clear message when it
//! comes back. See README.md for the payloads and settings.

use fogd_sdk::log::Level;
use fogd_sdk::messaging::{Qos, publish};
use fogd_sdk::{Event, Guest, export, kv, setting};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

struct ThresholdAlert;

/// Per-(subject, key) state kept in kv between events.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Track {
    /// Exponentially weighted mean of the normal values seen so far.
    mean: f64,
    /// Normal values folded into the mean.
    seen: u64,
    /// Consecutive values above the threshold.
    over: u32,
    /// Whether an alert is active.
    alerting: bool,
}

struct Settings {
    factor: f64,
    samples: u32,
    alpha: f64,
    warmup: u64,
    topic: String,
    keys: Option<Vec<String>>,
}

impl Settings {
    fn read() -> Self {
        Self {
            factor: setting("factor", 1.5),
            samples: setting("samples", 3u32).max(1),
            alpha: setting("alpha", 0.2f64).clamp(0.001, 1.0),
            warmup: setting("warmup", 5u64),
            topic: fogd_sdk::config::get("alert_topic").unwrap_or_else(|| "alerts/{key}".into()),
            keys: fogd_sdk::config::get("keys").and_then(|v| serde_json::from_str(&v).ok()),
        }
    }
}

fn load(key: &str) -> Result<Track, String> {
    match kv::get(key).map_err(|e| format!("kv get: {e:?}"))? {
        Some(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| format!("corrupt state for {key}: {e}"))
        }
        None => Ok(Track::default()),
    }
}

fn save(key: &str, track: &Track) -> Result<(), String> {
    let bytes = serde_json::to_vec(track).map_err(|e| e.to_string())?;
    kv::set(key, &bytes, None).map_err(|e| format!("kv set: {e:?}"))
}

/// Publishes an alert or clear message and logs it.
fn announce(topic: &str, body: &Value, level: Level, line: &str) -> Result<(), String> {
    publish(topic, body.to_string().as_bytes(), Qos::AtLeastOnce, false)
        .map_err(|e| format!("publish to {topic}: {e:?}"))?;
    fogd_sdk::log::log(level, line, &[("topic".into(), topic.into())]);
    Ok(())
}

impl Guest for ThresholdAlert {
    fn handle(event: Event) -> Result<Option<Vec<u8>>, String> {
        let telemetry: serde_json::Map<String, Value> = serde_json::from_slice(&event.payload)
            .map_err(|e| format!("payload is not a JSON object: {e}"))?;
        let settings = Settings::read();
        for (name, value) in &telemetry {
            let Some(value) = value.as_f64() else {
                continue;
            };
            if settings
                .keys
                .as_ref()
                .is_some_and(|keys| !keys.contains(name))
            {
                continue;
            }
            let state_key = format!("ewma/{}/{}", event.subject, name);
            let mut track = load(&state_key)?;
            let threshold = track.mean * settings.factor;
            let anomalous = track.seen >= settings.warmup && value > threshold;
            let topic = settings
                .topic
                .replace("{key}", name)
                .replace("{subject}", &event.subject);
            if anomalous {
                track.over += 1;
                if track.over == settings.samples && !track.alerting {
                    track.alerting = true;
                    let alert = json!({
                        "state": "alert", "subject": event.subject, "key": name, "value": value,
                        "mean": track.mean, "threshold": threshold, "samples": track.over,
                        "event_id": event.id,
                    });
                    let line = format!(
                        "alert: {name}={value} on {} above {threshold:.1} (mean {:.1}) for {} samples",
                        event.subject, track.mean, track.over
                    );
                    announce(&topic, &alert, Level::Warn, &line)?;
                }
            } else {
                if track.alerting {
                    let clear = json!({
                        "state": "clear", "subject": event.subject, "key": name, "value": value,
                        "mean": track.mean, "event_id": event.id,
                    });
                    let line = format!("clear: {name}={value} on {} back to normal", event.subject);
                    announce(&topic, &clear, Level::Info, &line)?;
                }
                track.over = 0;
                track.alerting = false;
                // Anomalous values stay out of the mean so a sustained excursion stays visible.
                track.mean = if track.seen == 0 {
                    value
                } else {
                    track.mean + settings.alpha * (value - track.mean)
                };
                track.seen += 1;
            }
            save(&state_key, &track)?;
        }
        Ok(None)
    }
}

export!(ThresholdAlert);
