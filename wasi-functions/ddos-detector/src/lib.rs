//! Detects DDoS floods and scans per destination with the flow-anomaly model, keeps the
//! state of each destination in kv, and publishes a mitigation rule when an attack is
//! confirmed and a clear message when it has ended. See README.md.

mod features;

use fogd_sdk::log::Level;
use fogd_sdk::messaging::{Qos, publish};
use fogd_sdk::{Event, Guest, export, inference, kv, setting};
use serde::{Deserialize, Serialize};
use serde_json::json;

use features::FlowWindow;

const MODEL: &str = "flow-anomaly";
const CLASSES: [&str; 4] = ["normal", "syn_flood", "udp_flood", "scan"];

/// What the function remembers about one destination between windows.
#[derive(Debug, Default, Serialize, Deserialize)]
struct DestinationState {
    /// The confirmed attack, if one is in progress.
    attack: Option<String>,
    /// Since when (µs since the epoch) the attack has been confirmed.
    since_us: u64,
    /// The class seen in the last windows and how many windows in a row.
    streak_class: String,
    streak: u32,
}

struct DdosDetector;

impl Guest for DdosDetector {
    fn handle(event: Event) -> Result<Option<Vec<u8>>, String> {
        let window: FlowWindow = serde_json::from_slice(&event.payload)
            .map_err(|e| format!("payload is not a flow window: {e}"))?;
        window.validate()?;
        let model = setting("model", MODEL.to_owned());
        let scores = inference::run_f32(&model, &[window.features().to_vec()])
            .map_err(|e| format!("{model}: {e:?}"))?
            .into_iter()
            .next()
            .ok_or("the model returned no output")?;
        let (class_index, confidence) = strongest(&scores);
        let min_confidence: f32 = setting("min_confidence", 0.8);
        let class = if class_index > 0 && confidence < min_confidence {
            "normal"
        } else {
            CLASSES.get(class_index).copied().unwrap_or("normal")
        };

        let key = format!("dst/{}", window.dst);
        let mut state: DestinationState = kv::get(&key)
            .map_err(|e| format!("kv: {e:?}"))?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        if state.streak_class == class {
            state.streak = state.streak.saturating_add(1);
        } else {
            state.streak_class = class.to_owned();
            state.streak = 1;
        }
        let confirm: u32 = setting("confirm_windows", 2);
        let clear: u32 = setting("clear_windows", 3);
        let topic = setting("action_topic", "fogd/mitigation".to_owned());
        let transition = match (&state.attack, class) {
            (None, attack) if attack != "normal" && state.streak >= confirm => {
                state.attack = Some(attack.to_owned());
                state.since_us = event.received_at;
                let action = mitigation(&window, attack, confidence);
                let line = format!(
                    "{attack} towards {} confirmed (confidence {confidence:.2}, {:.0} packets/s): {} rule published",
                    window.dst,
                    window.packets_per_s(),
                    action["rule"]["type"].as_str().unwrap_or("a"),
                );
                announce(&topic, &action, Level::Warn, &line)?;
                Some("started")
            }
            (Some(attack), "normal") if state.streak >= clear => {
                let seconds = event.received_at.saturating_sub(state.since_us) as f64 / 1e6;
                let message = json!({
                    "action": "clear",
                    "dst": window.dst,
                    "attack": attack,
                    "duration_s": (seconds * 10.0).round() / 10.0,
                    "message": format!("{attack} towards {} has ended; remove its rule", window.dst),
                });
                let line = format!(
                    "{attack} towards {} has ended after {seconds:.1} s: clear published",
                    window.dst
                );
                announce(&topic, &message, Level::Info, &line)?;
                state.attack = None;
                Some("ended")
            }
            _ => None,
        };
        let encoded = serde_json::to_vec(&state).map_err(|e| e.to_string())?;
        kv::set(&key, &encoded, None).map_err(|e| format!("kv: {e:?}"))?;

        let verdict = json!({
            "dst": window.dst,
            "class": class,
            "confidence": (confidence * 1000.0).round() / 1000.0,
            "attack": state.attack,
            "transition": transition,
        });
        Ok(Some(verdict.to_string().into_bytes()))
    }
}

/// Publishes a mitigate or clear message and logs why.
fn announce(topic: &str, body: &serde_json::Value, level: Level, line: &str) -> Result<(), String> {
    publish(topic, body.to_string().as_bytes(), Qos::AtLeastOnce, false)
        .map_err(|e| format!("publish to {topic}: {e:?}"))?;
    fogd_sdk::log::log(level, line, &[("topic".into(), topic.into())]);
    Ok(())
}

/// The index and score of the highest-scoring class.
fn strongest(scores: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::MIN);
    for (index, &score) in scores.iter().enumerate() {
        if score > best.1 {
            best = (index, score);
        }
    }
    best
}

/// The rule a router or firewall applies: rate limits for floods (at the normal rate this
/// destination could plausibly take), a block of the scanning source when it is known.
fn mitigation(window: &FlowWindow, attack: &str, confidence: f32) -> serde_json::Value {
    let limit = setting("rate_limit_pps", 1000u64);
    let rule = match (attack, &window.top_source) {
        ("syn_flood", _) => json!({
            "type": "rate-limit",
            "match": {"dst": window.dst, "proto": "tcp", "tcp_flags": "SYN,!ACK"},
            "pps": limit,
        }),
        ("udp_flood", _) => json!({
            "type": "rate-limit",
            "match": {"dst": window.dst, "proto": "udp"},
            "pps": limit,
        }),
        (_, Some(source)) => json!({
            "type": "block",
            "match": {"src": source, "dst": window.dst},
        }),
        _ => json!({
            "type": "rate-limit",
            "match": {"dst": window.dst, "new_connections": true},
            "pps": limit,
        }),
    };
    json!({
        "action": "mitigate",
        "dst": window.dst,
        "attack": attack,
        "confidence": (confidence * 1000.0).round() / 1000.0,
        "observed_pps": window.packets_per_s().round(),
        "rule": rule,
    })
}

export!(DdosDetector);
