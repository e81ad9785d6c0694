//! Watches syslog for failed logins (sshd's "Failed password for <user> from <address>") and
//! publishes an alert when one address fails `threshold` times on one host; the count then
//! starts again. See README.md for the payloads and settings.

use fogd_sdk::log::Level;
use fogd_sdk::{Context, Event, Result, publish_json, setting};
use serde::Deserialize;
use serde_json::json;

/// The fields of fogd's syslog event this function reads.
#[derive(Deserialize)]
struct Message {
    hostname: Option<String>,
    message: String,
}

fn handle(event: Event) -> Result<Option<Vec<u8>>> {
    let syslog: Message = event.json().context("not a syslog event")?;
    let Some((user, address)) = failed_login(&syslog.message) else {
        return Ok(None);
    };
    let host = syslog.hostname.as_deref().unwrap_or("-");
    let threshold: i64 = setting("threshold", 3i64).max(1);
    let key = format!("failed/{host}/{address}");
    let failures = fogd_sdk::kv::incr(&key, 1).context(&key)?;
    if failures < threshold {
        return Ok(None);
    }
    fogd_sdk::kv::delete(&key).context(&key)?;
    let topic = setting("alert_topic", "alerts/logins/{host}".to_owned()).replace("{host}", host);
    let alert = json!({
        "state": "alert", "host": host, "address": address, "last_user": user,
        "failures": failures, "event_id": event.id,
    });
    publish_json(&topic, &alert)?;
    let line = format!("{failures} failed logins from {address} on {host} (last as {user})");
    fogd_sdk::log::log(Level::Warn, &line, &[("topic".into(), topic)]);
    Ok(None)
}

/// The user and address of an sshd "Failed password" line.
fn failed_login(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("Failed password for ")?;
    let rest = rest.strip_prefix("invalid user ").unwrap_or(rest);
    let (user, rest) = rest.split_once(" from ")?;
    let address = rest.split_whitespace().next()?;
    Some((user, address))
}

fogd_sdk::handler!(handle);

#[cfg(test)]
mod tests {
    use super::failed_login;

    #[test]
    fn reads_user_and_address_of_sshd_failures() {
        assert_eq!(
            failed_login("Failed password for root from 192.0.2.9 port 52144 ssh2"),
            Some(("root", "192.0.2.9"))
        );
        assert_eq!(
            failed_login("Failed password for invalid user admin from 2001:db8::7 port 22 ssh2"),
            Some(("admin", "2001:db8::7"))
        );
        assert_eq!(
            failed_login("Accepted password for root from 192.0.2.9"),
            None
        );
    }
}
