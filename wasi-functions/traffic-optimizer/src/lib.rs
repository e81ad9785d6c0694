//! Traffic optimization: turns IF-MIB octet counters polled by SNMP into each link's
//! utilization, forecasts it one poll ahead with the int8 link-forecast model, and when a
//! link of a group of parallel links is forecast congested while another has room, publishes
//! new ECMP weights; once every link is forecast comfortably below the threshold, equal
//! weights again. See README.md.

mod links;

use std::collections::BTreeMap;

use fogd_sdk::{
    Context, Event, PollResult, Result, Source, inference, kv_get_json, kv_set_json, publish_json,
    setting,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use links::{CEILING, Decision, Forecast, LinkSource, LinkState, Thresholds, decide};

const MODEL: &str = "link-forecast";

#[derive(Default, Serialize, Deserialize)]
struct GroupState {
    rebalanced: bool,
}

fn json_setting<T: serde::de::DeserializeOwned + Default>(key: &str) -> Result<T> {
    match fogd_sdk::config::get(key) {
        Some(text) => Ok(serde_json::from_str(&text).context(&format!("config.{key}"))?),
        None => Ok(T::default()),
    }
}

fn handle(event: Event) -> Result<Option<Vec<u8>>> {
    if event.source != Source::SnmpPoll {
        return Ok(None);
    }
    let poll: PollResult = event.json().context("not an SNMP poll event")?;
    let values = poll.numbers();
    let sources: BTreeMap<String, LinkSource> = json_setting("links")?;
    let groups: BTreeMap<String, Vec<String>> = json_setting("groups")?;
    let inbound = setting("direction", "out".to_owned()) == "in";

    let mut states = BTreeMap::new();
    for (name, source) in &sources {
        let key = format!("link/{name}");
        let mut state: LinkState = kv_get_json(&key)?.unwrap_or_default();
        let octets = source
            .octets_oid(inbound)
            .and_then(|oid| values.get(oid.as_str()).copied());
        let speed = source
            .speed_oid()
            .and_then(|oid| values.get(oid.as_str()).copied())
            .or(source.speed_mbps);
        if let (Some(octets), Some(speed)) = (octets, speed) {
            state.record(octets, event.received_at, speed);
            kv_set_json(&key, &state)?;
        }
        states.insert(name.clone(), state);
    }

    let thresholds = Thresholds {
        high: setting("high", 0.8),
        room: setting("room", 0.6),
        release: setting("release", 0.65),
    };
    let model = setting("model", MODEL.to_owned());
    let mut result = serde_json::Map::new();
    for (group, members) in &groups {
        let windows: Option<Vec<(&String, &LinkState)>> = members
            .iter()
            .map(|link| states.get(link).filter(|s| s.full()).map(|s| (link, s)))
            .collect();
        let Some(windows) = windows else { continue };
        let mut forecasts = Vec::new();
        for (link, state) in windows {
            let input: Vec<f32> = state.window.iter().map(|u| *u as f32).collect();
            let next = inference::run_f32(&model, &[input])
                .context(&model)?
                .first()
                .and_then(|output| output.first().copied())
                .context("the model returned no output")?;
            forecasts.push(Forecast {
                link: link.clone(),
                utilization: state.window.last().copied().unwrap_or_default(),
                next: f64::from(next).clamp(0.0, CEILING),
            });
        }
        let state_key = format!("group/{group}");
        let mut group_state: GroupState = kv_get_json(&state_key)?.unwrap_or_default();
        let links_json: BTreeMap<&str, Value> = forecasts
            .iter()
            .map(|f| {
                let rounded = |x: f64| (x * 1000.0).round() / 1000.0;
                (
                    f.link.as_str(),
                    json!({"utilization": rounded(f.utilization), "forecast": rounded(f.next)}),
                )
            })
            .collect();
        let (action, weights) = match decide(&forecasts, group_state.rebalanced, thresholds) {
            Decision::Rebalance(weights) => ("rebalance", weights),
            Decision::Restore(weights) => ("restore", weights),
            Decision::Keep => {
                result.insert(group.clone(), json!(links_json));
                continue;
            }
        };
        group_state.rebalanced = action == "rebalance";
        kv_set_json(&state_key, &group_state)?;
        let topic = setting("action_topic", "traffic/{group}".to_owned()).replace("{group}", group);
        let congested: Vec<&str> = forecasts
            .iter()
            .filter(|f| f.next > thresholds.high)
            .map(|f| f.link.as_str())
            .collect();
        let message = json!({
            "action": action,
            "group": group,
            "ecmp_weights": weights,
            "links": links_json,
            "congested": congested,
            "event_id": event.id,
        });
        publish_json(&topic, &message)?;
        fogd_sdk::warn(&format!("{group}: {action}, ECMP weights {weights:?}"));
        result.insert(group.clone(), json!(links_json));
    }
    Ok(Some(Value::Object(result).to_string().into_bytes()))
}

fogd_sdk::handler!(handle);
