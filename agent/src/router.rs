//! Matches events to the functions whose triggers select them, and hands them to their
//! queues.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{FunctionSpec, TriggerSpec};
use crate::event::{Event, Source, attribute, mqtt_attributes};
use crate::runtime::{Executor, FunctionQueue};
use crate::telemetry::Metrics;
use crate::topic::{TopicFilter, subscription_filter};

/// What one route selects.
#[derive(Debug, Clone)]
enum Selector {
    /// A timer by name.
    Timer(String),
    /// MQTT messages on one broker connection whose topic matches.
    Mqtt {
        broker: Arc<str>,
        filter: TopicFilter,
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
pub fn timer_name(function: &str, index: usize, configured: Option<&str>) -> String {
    configured.map_or_else(|| format!("{function}/timer{index}"), str::to_owned)
}

impl Router {
    /// `default_broker` is the connection MQTT triggers without a `broker` key use.
    pub fn new(functions: &[FunctionSpec], default_broker: Option<&str>) -> Self {
        let mut routes = Vec::new();
        for function in functions {
            let name: Arc<str> = Arc::from(function.name.as_str());
            for (index, trigger) in function.triggers.iter().enumerate() {
                let (selector, delivery) = match trigger {
                    TriggerSpec::Timer(timer) => (
                        Selector::Timer(timer_name(&function.name, index, timer.name.as_deref())),
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
        let broker = attribute(event, mqtt_attributes::BROKER);
        let mut selected: Vec<&Route> = Vec::new();
        for route in &self.routes {
            let matches = match (&route.selector, event.source) {
                (Selector::Timer(name), Source::Timer) => *name == event.subject,
                (
                    Selector::Mqtt {
                        broker: wanted,
                        filter,
                    },
                    Source::Mqtt,
                ) => broker == Some(&**wanted) && filter.matches(&event.subject),
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
    router: Arc<Router>,
    queues: Arc<HashMap<Arc<str>, FunctionQueue>>,
    metrics: Arc<Metrics>,
}

impl Dispatch {
    pub fn new(router: Router, executor: &Executor, metrics: Arc<Metrics>) -> Self {
        let queues = executor
            .queues()
            .map(|queue| (queue.function().name().clone(), queue.clone()))
            .collect();
        Self {
            router: Arc::new(router),
            queues: Arc::new(queues),
            metrics,
        }
    }

    /// The queues `event` goes to, with the delivery policy of each matching trigger.
    pub fn targets(&self, event: &Event) -> Vec<(FunctionQueue, Delivery)> {
        self.router
            .route(event)
            .into_iter()
            .filter_map(|route| {
                self.queues
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
        self.metrics.event_received(event.source.as_str());
        let event = Arc::new(event);
        self.targets(&event)
            .iter()
            .filter(|(queue, _)| queue.try_submit(event.clone()).is_ok())
            .count()
    }
}
