//! Configuration management: compares each device's configuration-bearing SNMP objects with
//! a golden baseline, from poll results and whenever the device logs a configuration change,
//! publishes a drift report with a compliance score, and (with a `write` grant and
//! `remediate = true`) sets what drifted back to the baseline. Rules, not a model: see
//! README.md.

mod drift;

use std::collections::BTreeMap;

use drift::{Drift, Observed, ReportContext, Settings, change_message, object_oid, report};
use fogd_sdk::{Context, Event, PollResult, Result, Source, kv, publish_json, snmp};
use serde::Deserialize;
use serde_json::{Value, json};

/// The fields of fogd's syslog event this function reads.
#[derive(Deserialize)]
struct Syslog {
    hostname: Option<String>,
    message: String,
}

fn settings() -> Result<Settings> {
    let entries: BTreeMap<String, String> = fogd_sdk::config::entries().into_iter().collect();
    Settings::from_entries(&entries).map_err(fogd_sdk::Error::msg)
}

fn handle(event: Event) -> Result<Option<Vec<u8>>> {
    let settings = settings()?;
    let now_ms = event.received_at / 1000;
    match event.source {
        Source::Syslog => {
            let syslog: Syslog = event.json().context("not a syslog event")?;
            let Some(marker) = change_message(&syslog.message, &settings.change_markers) else {
                return Ok(None);
            };
            let host = syslog.hostname.unwrap_or_default();
            let device = settings.device_for(&host);
            let change =
                json!({"host": host, "marker": marker, "message": syslog.message, "at_ms": now_ms});
            kv::set(
                &format!("change/{device}"),
                change.to_string().as_bytes(),
                None,
            )?;
            let observed = read_device(&settings, &device)?;
            check(&settings, &device, &observed, "syslog", now_ms, true)
        }
        Source::SnmpPoll => {
            let poll: PollResult = event.json().context("not an SNMP poll event")?;
            let device = settings.device_for(&poll.job);
            let observed = poll
                .varbinds
                .iter()
                .map(|varbind| (varbind.oid.clone(), Observed::from_rendered(&varbind.value)))
                .collect();
            check(&settings, &device, &observed, "snmp-poll", now_ms, false)
        }
        _ => Ok(None),
    }
}

/// The baseline's objects as the device answers them now (an SNMP get on its target).
fn read_device(settings: &Settings, device: &str) -> Result<BTreeMap<String, Observed>> {
    let Some(baseline) = settings.baseline.get(device) else {
        return Ok(BTreeMap::new());
    };
    let oids = baseline
        .keys()
        .map(|object| object_oid(object))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(fogd_sdk::Error::msg)?;
    let varbinds = snmp::get(device, &oids).context(&format!("reading {device}"))?;
    Ok(varbinds
        .into_iter()
        .map(|varbind| (varbind.oid, Observed::from_snmp(&varbind.value)))
        .collect())
}

/// Compares, remediates if allowed, and publishes the report when it is news: always after a
/// change message, otherwise when the set of drifted objects differs from the last report.
fn check(
    settings: &Settings,
    device: &str,
    observed: &BTreeMap<String, Observed>,
    trigger: &str,
    now_ms: u64,
    always: bool,
) -> Result<Option<Vec<u8>>> {
    let Some(baseline) = settings.baseline.get(device) else {
        return Ok(None);
    };
    let compared = drift::compare(baseline, observed).map_err(fogd_sdk::Error::msg)?;
    if compared.compared == 0 {
        return Ok(None);
    }
    let digest = compared.digest();
    let state_key = format!("state/{device}");
    let last: Option<Value> = fogd_sdk::kv_get_json(&state_key)?;
    let last_digest = last.as_ref().and_then(|s| s["digest"].as_str());
    if !always && last_digest == Some(digest.as_str()) {
        return Ok(None);
    }
    let drifted = !compared.drift.is_empty();
    // A drift that goes on keeps the time it was first seen.
    let since_ms = match &last {
        Some(last) if drifted && last_digest.is_some_and(|d| !d.is_empty()) => {
            last["since_ms"].as_u64()
        }
        _ => None,
    }
    .or(drifted.then_some(now_ms));
    let (fixed, not_fixed) = if settings.remediate && drifted {
        remediate(device, &compared.drift)
    } else {
        (Vec::new(), Vec::new())
    };
    let change: Option<Value> = fogd_sdk::kv_get_json(&format!("change/{device}"))?;
    let fixed_count = fixed.len();
    let report = report(
        &compared,
        ReportContext {
            device,
            trigger,
            since_ms,
            change,
            fixed,
            not_fixed,
        },
    );
    fogd_sdk::kv_set_json(&state_key, &json!({"digest": digest, "since_ms": since_ms}))?;
    publish_json(&settings.report_topic.replace("{device}", device), &report)?;
    if drifted {
        fogd_sdk::warn(&format!(
            "{device}: {} of {} compared objects drifted ({trigger}); {fixed_count} set back",
            compared.drift.len(),
            compared.compared,
        ));
    }
    Ok(None)
}

/// Sets each drifted object back to its baseline value: what was fixed, and what could not
/// be, with why.
fn remediate(device: &str, drift: &[Drift]) -> (Vec<Value>, Vec<Value>) {
    let mut fixed = Vec::new();
    let mut not_fixed = Vec::new();
    for item in drift {
        let value = match &item.expected {
            Observed::Number(number) => match i32::try_from(*number) {
                Ok(number) => snmp::Value::Integer(number),
                Err(_) => snmp::Value::Unsigned(u32::try_from(*number).unwrap_or(u32::MAX)),
            },
            Observed::Text(text) => snmp::Value::OctetString(text.clone().into_bytes()),
            Observed::Missing => continue,
        };
        let entry = json!({"object": item.object, "oid": item.oid});
        match fogd_sdk::snmp_set(device, &item.oid, value) {
            Ok(()) => fixed.push(entry),
            Err(error) => {
                let mut entry = entry;
                entry["error"] = json!(error.message());
                not_fixed.push(entry);
            }
        }
    }
    (fixed, not_fixed)
}

fogd_sdk::handler!(handle);
