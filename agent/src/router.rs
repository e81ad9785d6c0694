//! Matches events to the functions whose triggers select them, and hands them to their
//! queues.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::{FunctionSpec, Retained, SyslogTrigger, TriggerSpec};
use crate::event::{Event, Source, attribute, attributes, syslog_message};
use crate::runtime::{Executor, FunctionQueue};
use crate::telemetry::Metrics;
use crate::topic::{TopicFilter, subscription_filter};

/// What one route selects.
#[derive(Debug, Clone)]
enum Selector {
    /// The events of one trigger that serves its own function only (a timer, a flow
    /// trigger): those of `source` whose `attribute` names the trigger's key.
    Owned {
        source: Source,
        attribute: &'static str,
        key: String,
    },
    /// SNMP notifications whose trap OID is this one or below it (all without one).
    SnmpTrap(Option<String>),
    /// Results of one SNMP poll job.
    SnmpPoll(String),
    /// Syslog messages that pass the trigger's filters.
    Syslog(SyslogTrigger),
    /// MQTT messages on one broker connection whose topic matches; retained copies only if
    /// the trigger takes them.
    Mqtt {
        broker: Arc<str>,
        filter: TopicFilter,
        retained: Retained,
    },
}

/// How an event that may be redelivered is retried and, finally, dead-lettered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    pub retries: u32,
    pub backoff: Duration,
    /// Topic template for events that failed every attempt.
    pub dead_letter: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Route {
    selector: Selector,
    pub function: Arc<str>,
    pub delivery: Delivery,
}

/// The routing table, built from the active functions' triggers.
#[derive(Debug, Default, Clone)]
pub struct Router {
    routes: Vec<Route>,
}

/// The name of a timer trigger: its configured name or `<function>/timer<index>`.
/// Whether `oid` is `prefix` or below it (whole arcs only: 1.3.6.10 is not below 1.3.6.1).
fn oid_within(oid: &str, prefix: &str) -> bool {
    oid.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// The identity of a function's `index`th trigger when it is a timer.
pub fn timer_key(function: &str, index: usize) -> String {
    format!("{function}/timer{index}")
}

/// The identity of a function's `index`th trigger when it is a flow trigger.
pub fn flow_key(function: &str, index: usize) -> String {
    format!("{function}/flow{index}")
}

impl Router {
    /// `default_broker` is the connection MQTT triggers without a `broker` key use.
    pub fn new(functions: &[FunctionSpec], default_broker: Option<&str>) -> Self {
        let mut routes = Vec::new();
        for function in functions {
            let name: Arc<str> = Arc::from(function.name.as_str());
            for (index, trigger) in function.triggers.iter().enumerate() {
                let (selector, delivery) = match trigger {
                    TriggerSpec::SnmpTrap(trap) => {
                        (Selector::SnmpTrap(trap.oid.clone()), Delivery::default())
                    }
                    TriggerSpec::SnmpPoll(poll) => {
                        (Selector::SnmpPoll(poll.job.clone()), Delivery::default())
                    }
                    TriggerSpec::Syslog(syslog) => {
                        (Selector::Syslog(syslog.clone()), Delivery::default())
                    }
                    TriggerSpec::Flow(_) => (
                        Selector::Owned {
                            source: Source::Flow,
                            attribute: attributes::FLOW_TRIGGER,
                            key: flow_key(&function.name, index),
                        },
                        Delivery::default(),
                    ),
                    TriggerSpec::Timer(_) => (
                        Selector::Owned {
                            source: Source::Timer,
                            attribute: attributes::TIMER,
                            key: timer_key(&function.name, index),
                        },
                        Delivery::default(),
                    ),
                    TriggerSpec::Mqtt(mqtt) => {
                        let (Some(broker), Ok(filter)) = (
                            mqtt.broker.as_deref().or(default_broker),
                            subscription_filter(&mqtt.topic),
                        ) else {
                            continue; // rejected by config validation
                        };
                        let delivery = Delivery {
                            retries: mqtt.retries,
                            backoff: mqtt.retry_backoff.as_duration(),
                            dead_letter: mqtt.dead_letter.clone(),
                        };
                        (
                            Selector::Mqtt {
                                broker: Arc::from(broker),
                                filter,
                                retained: mqtt.retained,
                            },
                            delivery,
                        )
                    }
                };
                routes.push(Route {
                    selector,
                    function: name.clone(),
                    delivery,
                });
            }
        }
        Self { routes }
    }

    /// The routes `event` takes: the first matching trigger of each function, in
    /// configuration order.
    pub fn route(&self, event: &Event) -> Vec<&Route> {
        let broker = attribute(event, attributes::MQTT_BROKER);
        // The broker marks the retained copy it sends on subscribing (live messages arrive
        // without the flag: fogd does not ask for Retain As Published).
        let retained_copy = attribute(event, attributes::MQTT_RETAIN) == Some("true");
        // Read from the payload at most once, however many pattern filters ask.
        let syslog_text = std::cell::OnceCell::new();
        let mut selected: Vec<&Route> = Vec::new();
        for route in &self.routes {
            let matches = match (&route.selector, event.source) {
                (Selector::SnmpTrap(prefix), Source::SnmpTrap) => prefix
                    .as_deref()
                    .is_none_or(|p| oid_within(&event.subject, p)),
                (Selector::SnmpPoll(job), Source::SnmpPoll) => *job == event.subject,
                (Selector::Syslog(filter), Source::Syslog) => filter.accepts(
                    attribute(event, attributes::SYSLOG_FACILITY).and_then(|f| f.parse().ok()),
                    attribute(event, attributes::SYSLOG_SEVERITY).and_then(|s| s.parse().ok()),
                    attribute(event, attributes::SYSLOG_HOSTNAME),
                    attribute(event, attributes::SYSLOG_APP_NAME),
                    || syslog_text.get_or_init(|| syslog_message(event)).as_deref(),
                ),
                (
                    Selector::Owned {
                        source,
                        attribute: name,
                        key,
                    },
                    from,
                ) if *source == from => attribute(event, name) == Some(key.as_str()),
                (
                    Selector::Mqtt {
                        broker: wanted,
                        filter,
                        retained,
                    },
                    Source::Mqtt,
                ) => {
                    broker == Some(&**wanted)
                        && filter.matches(&event.subject)
                        && (!retained_copy || *retained != Retained::New)
                }
                _ => false,
            };
            if matches && !selected.iter().any(|r| r.function == route.function) {
                selected.push(route);
            }
        }
        selected
    }
}

/// Routes events into function queues: what every trigger calls.
#[derive(Clone)]
pub struct Dispatch {
    /// Replaced whole when a reconfiguration changes the functions or their triggers.
    routing: Arc<RwLock<Arc<Routing>>>,
    metrics: Arc<Metrics>,
}

/// The routes and the queues they lead to, changed together.
struct Routing {
    router: Router,
    queues: HashMap<Arc<str>, FunctionQueue>,
}

impl Routing {
    fn new(router: Router, executor: &Executor) -> Arc<Self> {
        let queues = executor
            .queues()
            .map(|queue| (queue.name().clone(), queue.clone()))
            .collect();
        Arc::new(Self { router, queues })
    }
}

impl Dispatch {
    pub fn new(router: Router, executor: &Executor, metrics: Arc<Metrics>) -> Self {
        Self {
            routing: Arc::new(RwLock::new(Routing::new(router, executor))),
            metrics,
        }
    }

    /// Routes by `router` into the executor's queues from the next event on, for every
    /// trigger holding this dispatch.
    pub fn set_routing(&self, router: Router, executor: &Executor) {
        let routing = Routing::new(router, executor);
        match self.routing.write() {
            Ok(mut current) => *current = routing,
            Err(poisoned) => *poisoned.into_inner() = routing,
        }
    }

    fn routing(&self) -> Arc<Routing> {
        match self.routing.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The queues `event` goes to, with the delivery policy of each matching trigger.
    pub fn targets(&self, event: &Event) -> Vec<(FunctionQueue, Delivery)> {
        let routing = self.routing();
        routing
            .router
            .route(event)
            .into_iter()
            .filter_map(|route| {
                routing
                    .queues
                    .get(&route.function)
                    .map(|q| (q.clone(), route.delivery.clone()))
            })
            .collect()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Offers an event from a source that cannot wait: each matching function takes it if
    /// its queue has room, otherwise the drop is counted. Returns how many functions took it.
    pub fn offer(&self, event: Event) -> usize {
        self.metrics.event_received(event.source);
        let event = Arc::new(event);
        self.targets(&event)
            .iter()
            .filter(|(queue, _)| queue.try_submit(event.clone()).is_ok())
            .count()
    }

    /// Offers events that go together (one flow window's aggregates, all for the same
    /// trigger) as one: each matching function takes all of them or, when its queue lacks
    /// room for all, none. Returns how many functions took them.
    pub fn offer_together(&self, events: Vec<Event>) -> usize {
        let Some(first) = events.first() else {
            return 0;
        };
        for event in &events {
            self.metrics.event_received(event.source);
        }
        let targets = self.targets(first);
        let events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
        targets
            .iter()
            .filter(|(queue, _)| queue.try_submit_all(&events).is_ok())
            .count()
    }

    /// Hands an event from a source that can wait (a TCP stream) to each matching function,
    /// waiting for room in full queues: the sender is slowed rather than its input lost.
    /// Returns how many functions took it (fewer only while fogd shuts down).
    pub async fn deliver(&self, event: Event) -> usize {
        self.metrics.event_received(event.source);
        let event = Arc::new(event);
        let mut taken = 0;
        for (queue, _) in self.targets(&event) {
            taken += usize::from(queue.submit(event.clone()).await.is_ok());
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Millis, TimerTrigger};
    use crate::event::new_event;

    fn timed(function: &str, name: &str) -> FunctionSpec {
        let mut spec = FunctionSpec::for_component(function, "f.wasm".into());
        spec.triggers.push(TriggerSpec::Timer(TimerTrigger {
            every: Millis(1000),
            name: Some(name.into()),
            payloads: Vec::new(),
        }));
        spec
    }

    #[test]
    fn trap_oids_match_whole_arcs() {
        assert!(oid_within("1.3.6.1.6.3.1.1.5.3", "1.3.6.1.6.3.1.1.5"));
        assert!(oid_within("1.3.6.1.6.3.1.1.5", "1.3.6.1.6.3.1.1.5"));
        assert!(!oid_within("1.3.6.1.6.3.1.1.50", "1.3.6.1.6.3.1.1.5"));
    }

    #[test]
    fn a_timer_reaches_only_its_own_function_even_when_names_are_shared() {
        let router = Router::new(&[timed("a", "router-1"), timed("b", "router-1")], None);
        let mut event = new_event(Source::Timer, "router-1", Vec::new());
        event
            .attributes
            .push((attributes::TIMER.into(), timer_key("b", 0)));
        let routes = router.route(&event);
        assert_eq!(routes.len(), 1);
        assert_eq!(&*routes[0].function, "b");
    }

    #[test]
    fn a_retained_copy_reaches_only_triggers_that_take_retained_messages() {
        let subscribed = |function: &str, retained: &str| {
            let mut spec = FunctionSpec::for_component(function, "f.wasm".into());
            let trigger: crate::config::MqttTrigger =
                toml::from_str(&format!("topic = \"cfg/#\"\nretained = \"{retained}\"")).unwrap();
            spec.triggers.push(TriggerSpec::Mqtt(trigger));
            spec
        };
        let router = Router::new(
            &[subscribed("new", "new"), subscribed("always", "always")],
            Some("local"),
        );
        let message = |retain: &str| {
            let mut event = new_event(Source::Mqtt, "cfg/r1", Vec::new());
            event
                .attributes
                .push((attributes::MQTT_BROKER.into(), "local".into()));
            event
                .attributes
                .push((attributes::MQTT_RETAIN.into(), retain.into()));
            event
        };
        let functions = |event: &Event| -> Vec<String> {
            router
                .route(event)
                .iter()
                .map(|r| r.function.to_string())
                .collect()
        };
        assert_eq!(functions(&message("false")), ["new", "always"]);
        assert_eq!(functions(&message("true")), ["always"]);
    }
}
