//! The rules, in plain Rust so they are tested natively: settings, object names, comparing
//! what a device answers with its baseline, and the report.

use std::collections::BTreeMap;

use fogd_sdk::snmp;
use serde_json::{Value, json};

/// What marks a configuration change in a syslog message: Cisco IOS, Junos, and the generic
/// marker any other system (or a script) can log.
pub const DEFAULT_MARKERS: &[&str] = &["%SYS-5-CONFIG_I", "UI_COMMIT", "CONFIG_CHANGE:"];

pub struct Settings {
    /// Per device (its SNMP target name): object name or OID -> expected value.
    pub baseline: BTreeMap<String, BTreeMap<String, Value>>,
    /// Syslog host names and poll job names -> device; a name not listed is the device.
    pub devices: BTreeMap<String, String>,
    pub remediate: bool,
    pub change_markers: Vec<String>,
    pub report_topic: String,
}

impl Settings {
    /// Reads the function's `config` entries (tables and lists arrive as JSON text).
    pub fn from_entries(entries: &BTreeMap<String, String>) -> Result<Self, String> {
        let json = |key: &str| -> Result<Option<Value>, String> {
            entries
                .get(key)
                .map(|text| {
                    serde_json::from_str(text).map_err(|error| format!("config.{key}: {error}"))
                })
                .transpose()
        };
        let baseline: BTreeMap<String, BTreeMap<String, Value>> = match json("baseline")? {
            Some(value) => serde_json::from_value(value)
                .map_err(|error| format!("config.baseline: {error}"))?,
            None => BTreeMap::new(),
        };
        for (device, objects) in &baseline {
            for object in objects.keys() {
                object_oid(object).map_err(|error| format!("config.baseline.{device}: {error}"))?;
            }
        }
        let devices = match json("devices")? {
            Some(value) => {
                serde_json::from_value(value).map_err(|error| format!("config.devices: {error}"))?
            }
            None => BTreeMap::new(),
        };
        let change_markers = match json("change_markers")? {
            Some(value) => serde_json::from_value(value)
                .map_err(|error| format!("config.change_markers: {error}"))?,
            None => DEFAULT_MARKERS.iter().map(|m| (*m).to_owned()).collect(),
        };
        Ok(Self {
            baseline,
            devices,
            remediate: entries.get("remediate").is_some_and(|v| v == "true"),
            change_markers,
            report_topic: entries
                .get("report_topic")
                .cloned()
                .unwrap_or_else(|| "config/drift/{device}".to_owned()),
        })
    }

    /// The device a syslog host or poll job stands for.
    pub fn device_for(&self, name: &str) -> String {
        self.devices
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_owned())
    }
}

/// The marker that makes `message` a configuration change, if one does.
pub fn change_message<'a>(message: &str, markers: &'a [String]) -> Option<&'a str> {
    markers
        .iter()
        .find(|marker| message.contains(marker.as_str()))
        .map(String::as_str)
}

/// The OID of an object name (`sysName`, `sysContact`, `sysLocation`, `ifAdminStatus.<index>`,
/// `ifAlias.<index>`) or of a dotted OID given as itself.
pub fn object_oid(object: &str) -> Result<String, String> {
    let numeric =
        |text: &str| !text.is_empty() && text.split('.').all(|arc| arc.parse::<u32>().is_ok());
    let oid = match object.split_once('.') {
        _ if object == "sysName" => "1.3.6.1.2.1.1.5.0".to_owned(),
        _ if object == "sysContact" => "1.3.6.1.2.1.1.4.0".to_owned(),
        _ if object == "sysLocation" => "1.3.6.1.2.1.1.6.0".to_owned(),
        Some(("ifAdminStatus", index)) if numeric(index) => format!("1.3.6.1.2.1.2.2.1.7.{index}"),
        Some(("ifAlias", index)) if numeric(index) => format!("1.3.6.1.2.1.31.1.1.1.18.{index}"),
        _ if numeric(object) => object.to_owned(),
        _ => {
            return Err(format!(
                "{object:?} is not sysName, sysContact, sysLocation, ifAdminStatus.<n>, ifAlias.<n> or a dotted OID"
            ));
        }
    };
    Ok(oid)
}

/// A value as compared: text, a number, or absent (an exception in place of a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Text(String),
    Number(i64),
    Missing,
}

impl Observed {
    /// A baseline value or a poll result's `value` as fogd renders it.
    pub fn from_rendered(value: &Value) -> Self {
        match value {
            Value::String(text) => Observed::Text(text.clone()),
            Value::Number(number) => number.as_i64().map_or(Observed::Missing, Observed::Number),
            _ => Observed::Missing,
        }
    }

    pub fn from_snmp(value: &snmp::Value) -> Self {
        use snmp::Value as V;
        match value {
            V::OctetString(bytes) => Observed::Text(String::from_utf8_lossy(bytes).into_owned()),
            V::Integer(number) => Observed::Number(i64::from(*number)),
            V::Unsigned(number) | V::Counter32(number) | V::Timeticks(number) => {
                Observed::Number(i64::from(*number))
            }
            V::Counter64(number) => {
                i64::try_from(*number).map_or(Observed::Missing, Observed::Number)
            }
            V::Oid(oid) => Observed::Text(oid.clone()),
            V::IpAddress((a, b, c, d)) => Observed::Text(format!("{a}.{b}.{c}.{d}")),
            _ => Observed::Missing,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Observed::Text(text) => json!(text),
            Observed::Number(number) => json!(number),
            Observed::Missing => Value::Null,
        }
    }
}

/// One object whose value differs from its baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub object: String,
    pub oid: String,
    pub expected: Observed,
    pub actual: Observed,
}

/// The baseline objects that `observed` holds a different value for. Objects it does not hold
/// at all (a poll job that does not read them) are not compared.
pub fn compare(
    baseline: &BTreeMap<String, Value>,
    observed: &BTreeMap<String, Observed>,
) -> Result<Compared, String> {
    let mut compared = 0;
    let mut drift = Vec::new();
    for (object, expected) in baseline {
        let oid = object_oid(object)?;
        let Some(actual) = observed.get(&oid) else {
            continue;
        };
        compared += 1;
        let expected = Observed::from_rendered(expected);
        if *actual != expected {
            drift.push(Drift {
                object: object.clone(),
                oid,
                expected,
                actual: actual.clone(),
            });
        }
    }
    Ok(Compared { compared, drift })
}

/// What one comparison found.
#[derive(Debug, Default)]
pub struct Compared {
    pub compared: usize,
    pub drift: Vec<Drift>,
}

impl Compared {
    /// The share of compared objects that match their baseline.
    pub fn compliance(&self) -> f64 {
        if self.compared == 0 {
            return 1.0;
        }
        (self.compared - self.drift.len()) as f64 / self.compared as f64
    }

    /// Identifies the drift (objects and their values), to tell a new state from the last.
    pub fn digest(&self) -> String {
        self.drift
            .iter()
            .map(|item| format!("{}={}", item.object, item.actual.to_json()))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// What the report says besides the comparison.
pub struct ReportContext<'a> {
    pub device: &'a str,
    pub trigger: &'a str,
    pub since_ms: Option<u64>,
    pub change: Option<Value>,
    pub fixed: Vec<Value>,
    pub not_fixed: Vec<Value>,
}

pub fn report(compared: &Compared, context: ReportContext) -> Value {
    json!({
        "device": context.device,
        "compliance": compared.compliance(),
        "compared": compared.compared,
        "drift": compared.drift.iter().map(|item| json!({
            "object": item.object,
            "oid": item.oid,
            "expected": item.expected.to_json(),
            "actual": item.actual.to_json(),
        })).collect::<Vec<_>>(),
        "since_ms": context.since_ms,
        "change": context.change,
        "trigger": context.trigger,
        "remediated": context.fixed,
        "not_remediated": context.not_fixed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline() -> BTreeMap<String, Value> {
        serde_json::from_value(json!({
            "sysContact": "noc@example.net",
            "sysLocation": "rack-7",
            "ifAdminStatus.2": 1,
        }))
        .unwrap()
    }

    #[test]
    fn names_become_oids_and_others_are_refused() {
        assert_eq!(object_oid("sysName").unwrap(), "1.3.6.1.2.1.1.5.0");
        assert_eq!(
            object_oid("ifAdminStatus.3").unwrap(),
            "1.3.6.1.2.1.2.2.1.7.3"
        );
        assert_eq!(
            object_oid("ifAlias.12").unwrap(),
            "1.3.6.1.2.1.31.1.1.1.18.12"
        );
        assert_eq!(
            object_oid("1.3.6.1.4.1.9.2.1.3.0").unwrap(),
            "1.3.6.1.4.1.9.2.1.3.0"
        );
        for bad in ["sysname", "ifAlias.x", "ifAlias.", "1.3..6", ""] {
            assert!(object_oid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn drift_is_what_differs_among_the_objects_observed() {
        let observed: BTreeMap<String, Observed> = [
            (
                "1.3.6.1.2.1.1.4.0",
                Observed::Text("noc@example.net".into()),
            ),
            ("1.3.6.1.2.1.1.6.0", Observed::Text("lab".into())),
            ("1.3.6.1.2.1.2.2.1.7.2", Observed::Number(2)),
        ]
        .into_iter()
        .map(|(oid, value)| (oid.to_owned(), value))
        .collect();
        let compared = compare(&baseline(), &observed).unwrap();
        assert_eq!(compared.compared, 3);
        let objects: Vec<_> = compared.drift.iter().map(|d| d.object.as_str()).collect();
        assert_eq!(objects, ["ifAdminStatus.2", "sysLocation"]);
        assert!((compared.compliance() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(compared.digest(), "ifAdminStatus.2=2;sysLocation=\"lab\"");

        let partial: BTreeMap<String, Observed> = [(
            "1.3.6.1.2.1.1.4.0".to_owned(),
            Observed::Text("noc@example.net".into()),
        )]
        .into();
        let compared = compare(&baseline(), &partial).unwrap();
        assert_eq!((compared.compared, compared.drift.len()), (1, 0));
        assert_eq!(compared.compliance(), 1.0);
    }

    #[test]
    fn change_messages_of_cisco_junos_and_the_generic_marker_are_recognised() {
        let markers: Vec<String> = DEFAULT_MARKERS.iter().map(|m| (*m).to_owned()).collect();
        for message in [
            "%SYS-5-CONFIG_I: Configured from console by admin on vty0 (192.0.2.5)",
            "UI_COMMIT: User 'netops' requested 'commit' operation (comment: vlan 20)",
            "CONFIG_CHANGE: snmp location set by ansible",
        ] {
            assert!(change_message(message, &markers).is_some(), "{message}");
        }
        assert_eq!(
            change_message(
                "%LINK-3-UPDOWN: Interface Gi0/1, changed state to up",
                &markers
            ),
            None
        );
    }

    #[test]
    fn settings_read_tables_as_json_and_refuse_unknown_objects() {
        let entries: BTreeMap<String, String> = [
            ("baseline", r#"{"edge-1": {"sysLocation": "rack-7"}}"#),
            ("devices", r#"{"edge-router-1": "edge-1"}"#),
            ("remediate", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let settings = Settings::from_entries(&entries).unwrap();
        assert_eq!(settings.device_for("edge-router-1"), "edge-1");
        assert_eq!(settings.device_for("core-2"), "core-2");
        assert!(settings.remediate);
        assert_eq!(settings.change_markers.len(), DEFAULT_MARKERS.len());

        let bad: BTreeMap<String, String> = [(
            "baseline".to_owned(),
            r#"{"edge-1": {"hostname": "x"}}"#.to_owned(),
        )]
        .into();
        let error = Settings::from_entries(&bad).err().unwrap();
        assert!(
            error.starts_with("config.baseline.edge-1: \"hostname\""),
            "{error}"
        );
    }
}
