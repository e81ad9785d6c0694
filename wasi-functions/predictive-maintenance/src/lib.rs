//! Predictive maintenance: keeps a sliding window of each device's health signals (polled by
//! SNMP) in kv, runs the equipment-health model on it, and publishes a maintenance ticket
//! when the risk of a failure within seven days crosses a threshold, naming the signal that
//! drives it, and a clear when it has fallen back. See README.md.

mod features;
mod health;

use std::collections::BTreeMap;

use fogd_sdk::{
    Context, Event, PollResult, Result, Source, inference, kv_get_json, kv_set_json, publish_json,
    setting,
};
use serde_json::json;

use features::{SIGNALS, scale};
use health::{DeviceHealth, Risk, SignalSource, Verdict};

const MODEL: &str = "equipment-health";

fn handle(event: Event) -> Result<Option<Vec<u8>>> {
    if event.source != Source::SnmpPoll {
        return Ok(None);
    }
    let poll: PollResult = event.json().context("not an SNMP poll event")?;
    let signals: BTreeMap<String, SignalSource> = match fogd_sdk::config::get("signals") {
        Some(text) => serde_json::from_str(&text).context("config.signals")?,
        None => BTreeMap::new(),
    };
    let devices: BTreeMap<String, String> = match fogd_sdk::config::get("devices") {
        Some(text) => serde_json::from_str(&text).context("config.devices")?,
        None => BTreeMap::new(),
    };
    let device = devices.get(&poll.job).cloned().unwrap_or(poll.job.clone());
    let values = poll.numbers();

    let key = format!("health/{device}");
    let mut health: DeviceHealth = kv_get_json(&key)?.unwrap_or_default();
    let Some(window) = health.record(&signals, &values, event.received_at) else {
        kv_set_json(&key, &health)?;
        return Ok(None);
    };
    let model = setting("model", MODEL.to_owned());
    let scores = inference::run_f32(&model, &[scale(&window)])
        .context(&model)?
        .into_iter()
        .next()
        .context("the model returned no output")?;
    let risk = Risk::from_scores(&scores);
    let verdict = health.judge(
        &risk,
        setting("ticket_threshold", 0.8),
        setting("clear_threshold", 0.3),
    );
    kv_set_json(&key, &health)?;
    let latest: BTreeMap<&str, f64> = SIGNALS
        .iter()
        .zip(window.last().copied().unwrap_or_default())
        .map(|(name, value)| (*name, (value * 100.0).round() / 100.0))
        .collect();
    let topic =
        setting("ticket_topic", "maintenance/{device}".to_owned()).replace("{device}", &device);
    let body = json!({
        "device": device,
        "risk": (risk.failure * 1000.0).round() / 1000.0,
        "driver": risk.driver,
        "signals": latest,
        "event_id": event.id,
    });
    match verdict {
        Verdict::Open => {
            let mut ticket = body.clone();
            ticket["state"] = json!("ticket");
            ticket["message"] = json!(format!(
                "{device}: {:.0}% risk of failure within 7 days, driven by {}",
                risk.failure * 100.0,
                risk.driver.unwrap_or("an unknown signal")
            ));
            publish_json(&topic, &ticket)?;
            fogd_sdk::warn(ticket["message"].as_str().unwrap_or_default());
        }
        Verdict::Clear => {
            let mut clear = body.clone();
            clear["state"] = json!("clear");
            publish_json(&topic, &clear)?;
            fogd_sdk::info(&format!(
                "{device}: failure risk back to {:.0}%",
                risk.failure * 100.0
            ));
        }
        Verdict::Unchanged => {}
    }
    Ok(Some(body.to_string().into_bytes()))
}

fogd_sdk::handler!(handle);
