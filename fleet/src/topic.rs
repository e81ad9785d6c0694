//! MQTT topic names and filters (`+` matches one level, `#` the rest), used for routing
//! and for checking publish grants.

use thiserror::Error;

/// A validated MQTT topic filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFilter {
    text: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TopicError {
    #[error("topic filter is empty")]
    Empty,
    #[error("`#` must be the last level of a topic filter and stand alone: {0:?}")]
    MisplacedHash(String),
    #[error("`+` must stand alone in its level: {0:?}")]
    MisplacedPlus(String),
    #[error("topic contains a wildcard (`+` or `#`): {0:?}")]
    WildcardInTopic(String),
    #[error("topic contains a NUL character")]
    Nul,
    #[error("a shared subscription is `$share/<group>/<filter>`: {0:?}")]
    BadShare(String),
}

impl TopicFilter {
    pub fn parse(text: &str) -> Result<Self, TopicError> {
        if text.is_empty() {
            return Err(TopicError::Empty);
        }
        if text.contains('\0') {
            return Err(TopicError::Nul);
        }
        let levels: Vec<&str> = text.split('/').collect();
        for (index, level) in levels.iter().enumerate() {
            if level.contains('#') && (*level != "#" || index + 1 != levels.len()) {
                return Err(TopicError::MisplacedHash(text.to_owned()));
            }
            if level.contains('+') && *level != "+" {
                return Err(TopicError::MisplacedPlus(text.to_owned()));
            }
        }
        Ok(Self {
            text: text.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `topic` (a concrete topic name) matches this filter. Per the MQTT spec,
    /// wildcards at the first level do not match topics starting with `$`.
    pub fn matches(&self, topic: &str) -> bool {
        if topic.starts_with('$') && (self.text.starts_with('+') || self.text.starts_with('#')) {
            return false;
        }
        let mut filter_levels = self.text.split('/');
        let mut topic_levels = topic.split('/');
        loop {
            match (filter_levels.next(), topic_levels.next()) {
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(f), Some(t)) if f == t => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

/// Parses a subscription: a filter, or a shared one (`$share/<group>/<filter>`). Returns the
/// filter that incoming topics are matched against.
pub fn subscription_filter(subscription: &str) -> Result<TopicFilter, TopicError> {
    match subscription.strip_prefix("$share/") {
        Some(rest) => match rest.split_once('/') {
            Some((group, filter)) if !group.is_empty() && !group.contains(['+', '#']) => {
                TopicFilter::parse(filter)
            }
            _ => Err(TopicError::BadShare(subscription.to_owned())),
        },
        None => TopicFilter::parse(subscription),
    }
}

/// Fills a topic template: `{function}`, `{subject}`, and `{1}`, `{2}`, ... for the levels of
/// the subject (a missing level becomes empty).
pub fn render_template(template: &str, function: &str, subject: &str) -> String {
    let mut out = String::with_capacity(template.len() + subject.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        match name {
            "function" => out.push_str(function),
            "subject" => out.push_str(subject),
            _ => match name.parse::<usize>() {
                Ok(level) if level >= 1 => {
                    out.push_str(subject.split('/').nth(level - 1).unwrap_or(""))
                }
                _ => {
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
            },
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether `id` can stand as one topic level (a device id, a group): not empty, no
/// wildcards, separators or control bytes.
pub fn is_plain_level(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.contains(['/', '+', '#', '$'])
        && !id.chars().any(char::is_control)
}

/// Checks that `topic` is a valid topic name for publishing (no wildcards, not empty).
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.contains('\0') {
        return Err(TopicError::Nul);
    }
    if topic.contains('+') || topic.contains('#') {
        return Err(TopicError::WildcardInTopic(topic.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(filter: &str, topic: &str) -> bool {
        TopicFilter::parse(filter).unwrap().matches(topic)
    }

    #[test]
    fn exact_and_single_level_wildcards() {
        assert!(matches("a/b/c", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(matches("a/+/c", "a/x/c"));
        assert!(!matches("a/+/c", "a/x/y/c"));
        assert!(matches("+", "a"));
        assert!(!matches("+", "a/b"));
        assert!(matches("a/+", "a/"));
    }

    #[test]
    fn multi_level_wildcard_matches_parent_and_children() {
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("#", "a/b"));
        assert!(!matches("a/#", "b/a"));
    }

    #[test]
    fn wildcards_do_not_match_system_topics() {
        assert!(!matches("#", "$SYS/broker"));
        assert!(!matches("+/broker", "$SYS/broker"));
        assert!(matches("$SYS/#", "$SYS/broker"));
    }

    #[test]
    fn invalid_filters_are_rejected() {
        assert_eq!(TopicFilter::parse(""), Err(TopicError::Empty));
        assert!(matches!(
            TopicFilter::parse("a/#/b"),
            Err(TopicError::MisplacedHash(_))
        ));
        assert!(matches!(
            TopicFilter::parse("a#"),
            Err(TopicError::MisplacedHash(_))
        ));
        assert!(matches!(
            TopicFilter::parse("a/b+"),
            Err(TopicError::MisplacedPlus(_))
        ));
    }

    #[test]
    fn shared_subscriptions_match_on_their_filter() {
        assert!(
            subscription_filter("$share/gw/sensors/#")
                .unwrap()
                .matches("sensors/a/b")
        );
        assert!(subscription_filter("$share//x").is_err());
        assert!(subscription_filter("$share/gw").is_err());
        assert!(subscription_filter("plain/+").unwrap().matches("plain/x"));
    }

    #[test]
    fn templates_fill_names_and_levels() {
        assert_eq!(
            render_template("out/{function}/{subject}", "f", "a/b"),
            "out/f/a/b"
        );
        assert_eq!(
            render_template("r/{2}/{1}/{9}", "f", "sensors/r1/t"),
            "r/r1/sensors/"
        );
        assert_eq!(
            render_template("keep/{other}/{", "f", "s"),
            "keep/{other}/{"
        );
    }

    #[test]
    fn topic_names_must_not_hold_wildcards() {
        assert!(validate_topic_name("a/b").is_ok());
        assert!(validate_topic_name("a/+").is_err());
        assert!(validate_topic_name("").is_err());
    }
}
