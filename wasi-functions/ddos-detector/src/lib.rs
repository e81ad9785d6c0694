//! Detects DDoS floods and scans per destination with the flow-anomaly model, keeps the
//! state of each destination in kv, and publishes a mitigation rule when an attack is
//! confirmed and a clear message when it has ended. See README.md.

mod features;
mod state;

use fogd_sdk::log::Level;
use fogd_sdk::{Context, Event, Result, Source, inference, kv, kv_set_json, publish_json, setting};
use serde_json::json;

use features::{CollectorWindow, FlowWindow};
use state::{DestinationState, Transition, Windows, strongest};

const MODEL: &str = "flow-anomaly";
const CLASSES: [&str; 4] = ["normal", "syn_flood", "udp_flood", "scan"];

fn handle(event: Event) -> Result<Option<Vec<u8>>> {
    let window: FlowWindow = match event.source {
        Source::Flow => FlowWindow::try_from(
            event
                .json::<CollectorWindow>()
                .context("payload is not a fogd flow window")?,
        )?,
        _ => event.json().context("payload is not a flow window")?,
    };
    window.validate()?;
    let model = setting("model", MODEL.to_owned());
    let scores = inference::run_f32(&model, &[window.features().to_vec()])
        .context(&model)?
        .into_iter()
        .next()
        .context("the model returned no output")?;
    let (class_index, confidence) = strongest(&scores);
    let min_confidence: f32 = setting("min_confidence", 0.8);
    let class = if class_index > 0 && confidence < min_confidence {
        "normal"
    } else {
        CLASSES.get(class_index).copied().unwrap_or("normal")
    };

    let key = format!("dst/{}", window.dst);
    // State that no longer decodes starts afresh rather than failing every window.
    let mut state: DestinationState = kv::get(&key)
        .context(&key)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let windows = Windows {
        confirm: setting("confirm_windows", 2),
        clear: setting("clear_windows", 3),
    };
    let topic = setting("action_topic", "fogd/mitigation".to_owned());
    let transition = match state.advance(class, event.received_at, &windows) {
        Some(Transition::Started { attack }) => {
            let action = mitigation(&window, &attack, confidence);
            let line = format!(
                "{attack} towards {} confirmed (confidence {confidence:.2}, {:.0} packets/s): {} rule published",
                window.dst,
                window.packets_per_s(),
                action["rule"]["type"].as_str().unwrap_or("a"),
            );
            let mut action = action;
            if let Some(api) = post_to_api(&api_body(&window, &action, "mitigate")) {
                action["api"] = api;
            }
            announce(&topic, &action, Level::Warn, &line)?;
            Some("started")
        }
        Some(Transition::Ended { attack, since_us }) => {
            let seconds = event.received_at.saturating_sub(since_us) as f64 / 1e6;
            let mut message = json!({
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
            if let Some(api) = post_to_api(&api_body(&window, &message, "withdraw")) {
                message["api"] = api;
            }
            announce(&topic, &message, Level::Info, &line)?;
            Some("ended")
        }
        None => None,
    };
    kv_set_json(&key, &state)?;

    let verdict = json!({
        "dst": window.dst,
        "class": class,
        "confidence": (confidence * 1000.0).round() / 1000.0,
        "attack": state.attack,
        "transition": transition,
    });
    Ok(Some(verdict.to_string().into_bytes()))
}

/// The body POSTed to the router's or scrubbing center's API: the destination prefix, what
/// to do (`rate-limit`, `block`, or `withdraw` once the attack has ended), the rate a
/// rate limit allows, the confidence and how long the rule should live unless renewed.
fn api_body(window: &FlowWindow, message: &serde_json::Value, phase: &str) -> serde_json::Value {
    let length = if window.dst.contains(':') { 128 } else { 32 };
    let rule = &message["rule"];
    json!({
        "prefix": format!("{}/{length}", window.dst),
        "action": if phase == "withdraw" { "withdraw" } else { rule["type"].as_str().unwrap_or("rate-limit") },
        "rate_pps": rule.get("pps"),
        "match": rule.get("match"),
        "attack": message["attack"],
        "confidence": message.get("confidence"),
        "expiry_s": setting("mitigation_expiry_s", 300u64),
    })
}

/// POSTs `body` to `mitigation_url` when one is set (and granted): the answer's status, or
/// the error, to go with the published message. A refused or failed POST does not fail the
/// event: the message on MQTT still goes out, and says so.
fn post_to_api(body: &serde_json::Value) -> Option<serde_json::Value> {
    let url = fogd_sdk::config::get("mitigation_url")?;
    let answer = match fogd_sdk::http::post_json(&url, body) {
        Ok(response) if (200..300).contains(&response.status) => json!({"status": response.status}),
        Ok(response) => {
            fogd_sdk::warn(&format!(
                "{url} answered {} to the mitigation",
                response.status
            ));
            json!({"status": response.status})
        }
        Err(error) => {
            fogd_sdk::warn(&format!("cannot POST the mitigation to {url}: {error}"));
            json!({"error": error.to_string()})
        }
    };
    Some(answer)
}

/// Publishes a mitigate or clear message and logs why.
fn announce(topic: &str, body: &serde_json::Value, level: Level, line: &str) -> Result<()> {
    publish_json(topic, body)?;
    fogd_sdk::log::log(level, line, &[("topic".into(), topic.into())]);
    Ok(())
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

fogd_sdk::handler!(handle);
