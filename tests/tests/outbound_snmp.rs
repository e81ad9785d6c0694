//! Functions' SNMP requests (the `snmp` interface) against a real snmpd with a writable view,
//! over v2c and SNMPv3 authPriv: reads, a walk, sets read back by net-snmp's own `snmpget`,
//! and every refusal with its reason.

use std::path::Path;

use fogd::config::{FunctionSpec, SnmpAccess, parse_str};
use fogd::snmp_client::SnmpTargets;
use fogd::telemetry::RequestOutcome;
use fogd_tests::snmpd::{self, Snmpd};
use fogd_tests::{Harness, call_json, components, logs, spec};
use serde_json::json;

const SYS_UPTIME: &str = "1.3.6.1.2.1.1.3.0";
const SYS_CONTACT: &str = "1.3.6.1.2.1.1.4.0";
const SYS_LOCATION: &str = "1.3.6.1.2.1.1.6.0";
const IF_TABLE: &str = "1.3.6.1.2.1.2.2";

/// Targets `edge-v2c` (the write community), `edge-v3` (the write user) and `edge-ro`
/// (read-only community) on `snmpd`, their secrets in files under `dir`, and `silent`, where
/// nothing answers.
fn targets(snmpd: &Snmpd, dir: &Path) -> SnmpTargets {
    for (file, secret) in [
        ("rw-community", snmpd::WRITE_COMMUNITY),
        ("ro-community", "fogd-ro"),
        ("auth-pass", snmpd::WRITE_USER_AUTH),
        ("priv-pass", snmpd::WRITE_USER_PRIVACY),
    ] {
        std::fs::write(dir.join(file), format!("{secret}\n")).unwrap();
    }
    let address = snmpd.address();
    let text = format!(
        "[snmp]\n\
         [[snmp.user]]\nname = \"{user}\"\nauth = \"SHA\"\nauth_password_file = \"auth-pass\"\n\
         privacy = \"AES\"\nprivacy_password_file = \"priv-pass\"\n\
         [[snmp.target]]\nname = \"edge-v2c\"\naddress = \"{address}\"\ncommunity_file = \"rw-community\"\n\
         [[snmp.target]]\nname = \"edge-v3\"\naddress = \"{address}\"\nuser = \"{user}\"\n\
         [[snmp.target]]\nname = \"edge-ro\"\naddress = \"{address}\"\ncommunity_file = \"ro-community\"\n\
         [[snmp.target]]\nname = \"silent\"\naddress = \"127.0.0.1:{silent}\"\ncommunity_file = \"ro-community\"\ntimeout = \"5s\"\n",
        user = snmpd::WRITE_USER,
        silent = fogd_tests::mosquitto::free_port(),
    );
    let config = parse_str(&text, Path::new("fogd.toml"), dir).expect("config parses");
    SnmpTargets::from_config(config.snmp.as_ref()).expect("targets resolve")
}

fn probe(name: &str, grants: &[(&str, SnmpAccess)]) -> FunctionSpec {
    let mut spec = spec(name, &components().probe);
    for (target, access) in grants {
        spec.grants.snmp.insert((*target).to_owned(), *access);
    }
    spec
}

fn set_text(target: &str, oid: &str, text: &str) -> String {
    json!({"op": "set", "target": target, "varbinds": [{"oid": oid, "type": "octet-string", "value": text}]})
        .to_string()
}

fn get(target: &str, oid: &str) -> String {
    json!({"op": "get", "target": target, "oids": [oid]}).to_string()
}

#[test]
fn a_function_reads_walks_and_sets_a_real_agent_over_v2c_and_v3() {
    logs::capture();
    let snmpd = Snmpd::writable();
    snmpd.wait_ready();
    let harness = Harness::with_snmp_targets(targets(&snmpd, snmpd.dir()));
    let function = harness
        .load(&probe(
            "config-drift",
            &[
                ("edge-v2c", SnmpAccess::Write),
                ("edge-v3", SnmpAccess::Write),
            ],
        ))
        .unwrap();

    let uptime = call_json(&function, "snmp", &get("edge-v2c", SYS_UPTIME));
    assert_eq!(uptime[0]["oid"], SYS_UPTIME, "{uptime}");
    assert!(uptime[0]["value"]["timeticks"].is_u64(), "{uptime}");

    let walked = call_json(
        &function,
        "snmp",
        &json!({"op": "walk", "target": "edge-v3", "subtree": IF_TABLE, "max": 1000}).to_string(),
    );
    let rows = walked.as_array().expect("a walk returns varbinds");
    assert!(rows.len() > 5, "{walked}");
    assert!(
        rows.iter().all(|row| row["oid"]
            .as_str()
            .unwrap()
            .starts_with("1.3.6.1.2.1.2.2.1.")),
        "{walked}"
    );
    let bounded = call_json(
        &function,
        "snmp",
        &json!({"op": "walk", "target": "edge-v2c", "subtree": IF_TABLE, "max": 3}).to_string(),
    );
    assert_eq!(bounded.as_array().map(Vec::len), Some(3));

    for (target, oid, text) in [
        ("edge-v2c", SYS_CONTACT, "noc@example.net"),
        ("edge-v3", SYS_LOCATION, "rack-10"),
    ] {
        let set = call_json(&function, "snmp", &set_text(target, oid, text));
        assert_eq!(set[0]["value"]["octet-string"], text, "{target}: {set}");
        let read = call_json(&function, "snmp", &get(target, oid));
        assert_eq!(read[0]["value"]["octet-string"], text, "{target}: {read}");
        // What snmpd itself now answers to another manager.
        assert_eq!(
            snmpd.get(oid).as_deref(),
            Some(format!("\"{text}\"").as_str())
        );
    }

    let next = call_json(
        &function,
        "snmp",
        &json!({"op": "get-next", "target": "edge-v2c", "oids": ["1.3.6.1.2.1.1.4"]}).to_string(),
    );
    assert_eq!(next[0]["oid"], SYS_CONTACT, "{next}");
    let missing = call_json(&function, "snmp", &get("edge-v2c", "1.3.6.1.2.1.1.99.0"));
    assert_eq!(missing[0]["value"], "no-such-object", "{missing}");

    let grants = &function.caps().grants.snmp;
    assert_eq!(
        grants.request_count("edge-v2c", RequestOutcome::Answered),
        6
    );
    assert_eq!(grants.request_count("edge-v3", RequestOutcome::Answered), 3);
    for secret in [
        snmpd::WRITE_COMMUNITY,
        snmpd::WRITE_USER_AUTH,
        snmpd::WRITE_USER_PRIVACY,
    ] {
        assert!(
            logs::lines_with(&[secret]).is_empty(),
            "{secret} was logged"
        );
    }
}

#[test]
fn writes_without_a_write_grant_to_ungranted_targets_or_of_the_wrong_type_are_refused() {
    let snmpd = Snmpd::writable();
    snmpd.wait_ready();
    let harness = Harness::with_snmp_targets(targets(&snmpd, snmpd.dir()));
    let function = harness
        .load(&probe(
            "reader",
            &[
                ("edge-ro", SnmpAccess::Read),
                ("edge-v2c", SnmpAccess::Write),
            ],
        ))
        .unwrap();
    let before = snmpd.get(SYS_LOCATION);

    let refused = call_json(
        &function,
        "snmp",
        &set_text("edge-ro", SYS_LOCATION, "moved"),
    );
    assert_eq!(refused, json!({"error": "Error::NotGranted(\"edge-ro\")"}));
    let refused = call_json(&function, "snmp", &get("edge-v3", SYS_UPTIME));
    assert_eq!(refused, json!({"error": "Error::NotGranted(\"edge-v3\")"}));
    assert_eq!(snmpd.get(SYS_LOCATION), before, "nothing was written");

    let wrong_type = json!({"op": "set", "target": "edge-v2c", "varbinds": [{"oid": SYS_CONTACT, "type": "integer", "value": 7}]});
    let answer = call_json(&function, "snmp", &wrong_type.to_string());
    assert_eq!(
        answer,
        json!({"error": "Error::Agent((ErrorStatus::WrongType, 1))"})
    );
    let not_writable = call_json(&function, "snmp", &set_text("edge-v2c", SYS_UPTIME, "0"));
    let error = not_writable["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("Error::Agent((ErrorStatus::NotWritable")
            || error.starts_with("Error::Agent((ErrorStatus::WrongType"),
        "{not_writable}"
    );

    let grants = &function.caps().grants.snmp;
    assert_eq!(grants.request_count("none", RequestOutcome::NotGranted), 2);
}

#[test]
fn an_event_makes_at_most_its_snmp_requests() {
    let snmpd = Snmpd::writable();
    snmpd.wait_ready();
    let harness = Harness::with_snmp_targets(targets(&snmpd, snmpd.dir()));
    let mut spec = probe("counted", &[("edge-v2c", SnmpAccess::Read)]);
    spec.limits.snmp_requests = 2;
    let function = harness.load(&spec).unwrap();
    let many = json!([
        {"op": "get", "target": "edge-v2c", "oids": [SYS_UPTIME]},
        {"op": "get", "target": "edge-v2c", "oids": [SYS_UPTIME]},
        {"op": "get", "target": "edge-v2c", "oids": [SYS_UPTIME]},
    ]);
    let answers = call_json(&function, "snmp-many", &many.to_string());
    assert!(answers[0].is_array() && answers[1].is_array(), "{answers}");
    assert_eq!(answers[2], json!({"error": "Error::LimitReached(2)"}));
}

#[test]
fn an_agent_that_never_answers_fails_only_that_event_at_its_deadline() {
    let snmpd = Snmpd::writable();
    let harness = Harness::with_snmp_targets(targets(&snmpd, snmpd.dir()));
    let mut spec = probe("patient", &[("silent", SnmpAccess::Read)]);
    spec.limits.timeout = fogd::config::Millis(300);
    let function = harness.load(&spec).unwrap();
    let report = function.call(&fogd_tests::event("snmp", get("silent", SYS_UPTIME)));
    assert!(
        matches!(
            report.outcome,
            Err(fogd::runtime::InvokeError::Timeout { timeout_ms: 300 })
        ),
        "{:?}",
        report.outcome
    );
    let grants = &function.caps().grants.snmp;
    assert_eq!(grants.request_count("silent", RequestOutcome::Timeout), 1);
}
