//! Reading a config file and reporting every problem with its file, line and key.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use super::{Config, FunctionSpec, ModelSpec};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// Dotted key path, e.g. `function[1].limits.memory_mib`; empty for the whole file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All problems found in a config file (at least one).
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Reads, parses and validates `path`. Relative paths inside the file are resolved against
/// the file's directory.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            position: None,
            key: String::new(),
            message: format!("cannot read the config file: {error}"),
        }])
    })?;
    let base = path
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."));
    parse_str(&text, path, &base)
}

/// Parses and validates config text; `file` names it in errors and `base` anchors relative paths.
pub fn parse_str(text: &str, file: &Path, base: &Path) -> Result<Config, ConfigErrors> {
    let source = SourceFile { file, text };
    let mut config: Config = source.deserialize()?;
    config.resolve_paths(base);
    config.name_connections();
    let problems = config.validate();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(
            problems
                .into_iter()
                .map(|(key, message)| source.error_at_key(&key, message))
                .collect(),
        ))
    }
}

/// An error about `key` in the config file at `path`, located by re-reading the file; for
/// problems found after parsing (a component that does not compile, say).
pub fn error_at_key(path: &Path, key: &str, message: String) -> ConfigError {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    SourceFile {
        file: path,
        text: &text,
    }
    .error_at_key(key, message)
}

/// A TOML text and the file it came from, for mapping errors to positions.
struct SourceFile<'a> {
    file: &'a Path,
    text: &'a str,
}

impl SourceFile<'_> {
    fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigErrors> {
        let table = DeTable::parse(self.text).map_err(|error| {
            ConfigErrors(vec![self.error_at_span(
                error.span(),
                String::new(),
                error.message(),
            )])
        })?;
        let deserializer = toml::de::Deserializer::from(table);
        serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let mut key = error.path().to_string();
            if key == "." {
                key.clear();
            }
            let inner = error.into_inner();
            let message = inner.message().to_owned();
            if let Some(field) = unknown_field(&message)
                && key.rsplit('.').next() != Some(field)
            {
                key = join_key(&key, field);
            }
            let span = inner.span().or_else(|| self.span_of_key(&key));
            ConfigErrors(vec![self.error_at_span(span, key, &message)])
        })
    }

    fn error_at_key(&self, key: &str, message: String) -> ConfigError {
        self.error_at_span(self.span_of_key(key), key.to_owned(), &message)
    }

    fn error_at_span(&self, span: Option<Range<usize>>, key: String, message: &str) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            position: span.map(|span| line_and_column(self.text, span.start)),
            key,
            message: message.trim_end().to_owned(),
        }
    }

    /// Finds the span of a dotted key path such as `function[0].grants.publish[2]`,
    /// falling back to the deepest part of the path that exists.
    fn span_of_key(&self, key: &str) -> Option<Range<usize>> {
        let root = DeValue::Table(DeTable::parse(self.text).ok()?.into_inner());
        let mut current = &root;
        let mut span = None;
        for segment in parse_key_path(key) {
            let next = match (segment, current) {
                (KeySegment::Name(name), DeValue::Table(table)) => table
                    .iter()
                    .find(|(k, _)| k.get_ref().as_ref() == name)
                    .map(|(k, v)| (v, k.span())),
                (KeySegment::Index(index), DeValue::Array(array)) => {
                    array.get(index).map(|v| (v, v.span()))
                }
                _ => None,
            };
            let Some((value, found)) = next else { break };
            span = Some(found);
            current = value.get_ref();
        }
        span
    }
}

enum KeySegment<'a> {
    Name(&'a str),
    Index(usize),
}

fn parse_key_path(key: &str) -> Vec<KeySegment<'_>> {
    let mut segments = Vec::new();
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let (name, indexes) = part
            .split_once('[')
            .map_or((part, ""), |(n, rest)| (n, rest));
        if !name.is_empty() {
            segments.push(KeySegment::Name(name));
        }
        for index in indexes.split('[') {
            if let Ok(index) = index.trim_end_matches(']').parse() {
                segments.push(KeySegment::Index(index));
            }
        }
    }
    segments
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

fn join_key(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

impl FunctionSpec {
    /// Resolves the component's path against `base` (the config file's directory, or a
    /// deployment's artifact directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        self.component = base.join(&self.component);
        for grant in &mut self.grants.outbound_http {
            grant.resolve_paths(base);
        }
    }
}

impl ModelSpec {
    /// Resolves the model and reference files against `base`, as for functions.
    pub fn resolve_paths(&mut self, base: &Path) {
        self.path = base.join(&self.path);
        if let Some(reference) = &mut self.reference {
            *reference = base.join(&*reference);
        }
    }
}

impl Config {
    /// Gives each broker connection without a `client_id` its default one.
    fn name_connections(&mut self) {
        let hostname = super::hostname();
        for broker in &mut self.brokers {
            if broker.client_id.is_none() {
                broker.client_id = Some(super::default_client_id(
                    &hostname,
                    &broker.name,
                    &self.state_dir,
                ));
            }
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        self.state_dir = base.join(&self.state_dir);
        if let Some(cache) = &mut self.runtime.cache_dir {
            *cache = base.join(&*cache);
        }
        for function in &mut self.functions {
            function.resolve_paths(base);
        }
        if let Some(runtime) = &mut self.inference.runtime {
            *runtime = base.join(&*runtime);
        }
        for model in &mut self.models {
            model.resolve_paths(base);
        }
        for user in self.snmp.iter_mut().flat_map(|snmp| snmp.users.iter_mut()) {
            for file in [
                &mut user.auth_password_file,
                &mut user.privacy_password_file,
            ]
            .into_iter()
            .flatten()
            {
                *file = base.join(&*file);
            }
        }
        for target in self
            .snmp
            .iter_mut()
            .flat_map(|snmp| snmp.targets.iter_mut())
        {
            if let Some(file) = &mut target.community_file {
                *file = base.join(&*file);
            }
        }
        for tls in self
            .syslog
            .iter_mut()
            .flat_map(|syslog| syslog.tls.iter_mut())
        {
            tls.cert_file = base.join(&tls.cert_file);
            tls.key_file = base.join(&tls.key_file);
            if let Some(ca) = &mut tls.client_ca_file {
                *ca = base.join(&*ca);
            }
        }
        if let Some(ca) = &mut self.sync.artifact_ca {
            *ca = base.join(&*ca);
        }
        for broker in &mut self.brokers {
            if let Some(file) = &mut broker.password_file {
                *file = base.join(&*file);
            }
            if let Some(tls) = &mut broker.tls {
                tls.ca_file = base.join(&tls.ca_file);
                for file in [&mut tls.cert_file, &mut tls.key_file]
                    .into_iter()
                    .flatten()
                {
                    *file = base.join(&*file);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        parse_str(text, Path::new("fogd.toml"), Path::new("/etc/fogd"))
    }

    fn single_error(text: &str) -> ConfigError {
        let mut errors = parse(text).unwrap_err().0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.remove(0)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.state_dir, Path::new("/var/lib/fogd"));
        assert!(config.functions.is_empty());
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let config = parse(
            "state_dir = \"state\"\n[[function]]\nname = \"echo\"\ncomponent = \"echo.wasm\"\n",
        )
        .unwrap();
        assert_eq!(config.state_dir, Path::new("/etc/fogd/state"));
        assert_eq!(
            config.functions[0].component,
            Path::new("/etc/fogd/echo.wasm")
        );
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let error = single_error("state_dir = \"x\"\n\n[runtime]\nworkerz = 2\n");
        assert_eq!(error.position, Some((4, 1)));
        assert_eq!(error.key, "runtime.workerz");
        assert!(
            error.message.contains("unknown field `workerz`"),
            "{}",
            error.message
        );
        assert!(
            error
                .to_string()
                .starts_with("fogd.toml:4:1: runtime.workerz: ")
        );
    }

    #[test]
    fn unknown_key_after_a_known_one_is_named_once() {
        let error = single_error("[metrics]\naddress = \"127.0.0.1:1\"\nport = 1\n");
        assert_eq!(error.key, "metrics.port");
        assert_eq!(error.position, Some((3, 1)));
    }

    #[test]
    fn wrong_type_in_array_of_tables_names_the_element() {
        let text = "[[function]]\nname = \"a\"\ncomponent = \"a.wasm\"\n\n[[function]]\nname = \"b\"\ncomponent = \"b.wasm\"\nlimits = { memory_mib = \"big\" }\n";
        let error = single_error(text);
        assert_eq!(error.key, "function[1].limits.memory_mib");
        assert_eq!(error.position.map(|p| p.0), Some(8));
    }

    #[test]
    fn bad_duration_names_key() {
        let text = "[[function]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[[function.trigger]]\ntimer = { every = \"5 parsecs\" }\n";
        let error = single_error(text);
        assert_eq!(error.key, "function[0].trigger[0].timer.every");
        assert_eq!(error.position.map(|p| p.0), Some(5));
        assert!(error.message.contains("unknown unit"), "{}", error.message);
    }

    #[test]
    fn an_engine_enterprise_past_31_bits_names_its_line() {
        let error =
            single_error("[snmp]\nlisten = \"127.0.0.1:0\"\nengine_enterprise = 2147483648\n");
        assert_eq!(error.key, "snmp.engine_enterprise");
        assert_eq!(error.position.map(|p| p.0), Some(3));
        assert_eq!(
            parse("[snmp]\n").unwrap().snmp.unwrap().engine_enterprise,
            32473
        );
    }

    #[test]
    fn syntax_error_has_position() {
        let error = single_error("[runtime\nworkers = 2\n");
        assert_eq!(error.position.map(|p| p.0), Some(1));
    }

    #[test]
    fn semantic_errors_are_all_reported_with_positions() {
        let text = "[[function]]\nname = \"a\"\ncomponent = \"a.wasm\"\n\n[[function]]\nname = \"a\"\ncomponent = \"b.wasm\"\ngrants = { publish = [\"ok/#\", \"bad/#/x\"] }\n";
        let keys = error_keys(text);
        assert!(
            keys.contains(&("function[1].name".to_owned(), Some(6))),
            "{keys:?}"
        );
        assert!(
            keys.contains(&("function[1].grants.publish[1]".to_owned(), Some(8))),
            "{keys:?}"
        );
    }

    /// Every error's key and line.
    fn error_keys(text: &str) -> Vec<(String, Option<usize>)> {
        parse(text)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.key, e.position.map(|p| p.0)))
            .collect()
    }

    #[test]
    fn output_limits_order_and_effects_are_checked_with_positions() {
        let text = "[[function]]\nname = \"a\"\ncomponent = \"a.wasm\"\nlimits = { result_bytes = 2097152, kv_bytes = 0 }\n";
        let keys = error_keys(text);
        assert!(
            keys.contains(&("function[0].limits.result_bytes".to_owned(), Some(4))),
            "{keys:?}"
        );
        assert!(
            keys.contains(&("function[0].limits.kv_bytes".to_owned(), Some(4))),
            "{keys:?}"
        );
        let error = single_error(
            "[[function]]\nname = \"a\"\ncomponent = \"a.wasm\"\norder_by = \"topic\"\n",
        );
        assert_eq!(error.key, "function[0].order_by");
        assert!(
            error.message.contains("attribute:<name>"),
            "{}",
            error.message
        );
        let error = single_error(
            "[[function]]\nname = \"a\"\ncomponent = \"a.wasm\"\neffects = \"sometimes\"\n",
        );
        assert_eq!(error.key, "function[0].effects");
        let config = parse("[[function]]\nname = \"a\"\ncomponent = \"a.wasm\"\norder_by = \"attribute:site\"\neffects = \"keep\"\n").unwrap();
        assert_eq!(
            config.functions[0].order_by,
            crate::config::OrderBy::Attribute("site".into())
        );
        assert_eq!(config.functions[0].effects, crate::config::Effects::Keep);
    }

    #[test]
    fn async_threads_default_to_half_the_cpus_and_refuse_zero() {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        assert_eq!(parse("").unwrap().async_threads(), (cpus / 2).max(1));
        assert_eq!(
            parse("[runtime]\nasync_threads = 3\n")
                .unwrap()
                .async_threads(),
            3
        );
        let error = single_error("[runtime]\nasync_threads = 0\n");
        assert_eq!(error.key, "runtime.async_threads");
        assert_eq!(error.position.map(|p| p.0), Some(2));
    }

    #[test]
    fn mqtt_triggers_must_name_a_known_broker() {
        let text = "[[broker]]\nname = \"local\"\naddress = \"127.0.0.1:1883\"\n\n[[function]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[[function.trigger]]\nmqtt = { topic = \"x/#\", broker = \"cloud\", qos = 3 }\n";
        let keys = error_keys(text);
        assert!(
            keys.contains(&("function[0].trigger[0].mqtt.broker".to_owned(), Some(9))),
            "{keys:?}"
        );
        assert!(
            keys.contains(&("function[0].trigger[0].mqtt.qos".to_owned(), Some(9))),
            "{keys:?}"
        );
    }

    #[test]
    fn mqtt_trigger_without_any_broker_is_an_error() {
        let text = "[[function]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[[function.trigger]]\nmqtt = { topic = \"x/#\" }\n";
        let error = single_error(text);
        assert_eq!(error.key, "function[0].trigger[0].mqtt");
        assert!(
            error.message.contains("needs a [[broker]]"),
            "{}",
            error.message
        );
    }

    #[test]
    fn key_paths_parse_names_and_indexes() {
        let segments = parse_key_path("function[2].grants.publish[0]");
        assert_eq!(segments.len(), 5);
        assert!(matches!(segments[1], KeySegment::Index(2)));
    }

    #[test]
    fn outbound_grants_parse_as_origins_or_tables_and_their_problems_are_pointed_at() {
        let text = "[[snmp.target]]\nname = \"core\"\naddress = \"192.0.2.1:161\"\ncommunity_file = \"community\"\n\n\
                    [[function]]\nname = \"a\"\ncomponent = \"a.wasm\"\n\
                    grants.outbound_http = [\"https://*.example.org\", { url = \"https://127.0.0.1:8443\", ca_file = \"ca.pem\", secret_headers = { authorization = \"token\" } }]\n\
                    grants.snmp = { core = \"write\" }\n";
        let config = parse_str(text, Path::new("fogd.toml"), Path::new("/etc/fogd")).unwrap();
        let grants = &config.functions[0].grants;
        assert_eq!(grants.outbound_http[0].url, "https://*.example.org");
        assert_eq!(
            grants.outbound_http[1].ca_file.as_deref(),
            Some(Path::new("/etc/fogd/ca.pem"))
        );
        assert_eq!(
            grants.outbound_http[1].secret_headers["authorization"],
            Path::new("/etc/fogd/token")
        );
        assert_eq!(grants.snmp["core"], crate::config::SnmpAccess::Write);

        let text = "[[function]]\nname = \"a\"\ncomponent = \"a.wasm\"\n\
                    grants.outbound_http = [\"https://example.org/api\", { url = \"http://h:1\", client_cert = \"c.pem\", headers = { \"bad name\" = \"x\" } }]\n\
                    grants.snmp = { nowhere = \"read\" }\n";
        let keys: Vec<String> = error_keys(text).into_iter().map(|(key, _)| key).collect();
        for expected in [
            "function[0].grants.outbound_http[0].url",
            "function[0].grants.outbound_http[1]",
            "function[0].grants.outbound_http[1].headers.bad name",
            "function[0].grants.snmp.nowhere",
        ] {
            assert!(
                keys.iter().any(|key| key == expected),
                "{expected}: {keys:?}"
            );
        }
    }
}
