//! Matches events to the functions whose triggers select them.

use std::sync::Arc;

use crate::config::{FunctionSpec, TriggerSpec};
use crate::event::{Event, Source};

/// What one route selects.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    /// A timer by name.
    Timer(String),
}

#[derive(Debug, Clone)]
struct Route {
    selector: Selector,
    function: Arc<str>,
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
    pub fn new(functions: &[FunctionSpec]) -> Self {
        let mut routes = Vec::new();
        for function in functions {
            let name: Arc<str> = Arc::from(function.name.as_str());
            for (index, trigger) in function.triggers.iter().enumerate() {
                let selector = match trigger {
                    TriggerSpec::Timer(timer) => {
                        Selector::Timer(timer_name(&function.name, index, timer.name.as_deref()))
                    }
                };
                routes.push(Route {
                    selector,
                    function: name.clone(),
                });
            }
        }
        Self { routes }
    }

    /// The functions `event` goes to, each once, in configuration order.
    pub fn route(&self, event: &Event) -> Vec<Arc<str>> {
        let mut selected: Vec<Arc<str>> = Vec::new();
        for route in &self.routes {
            let matches = match (&route.selector, event.source) {
                (Selector::Timer(name), Source::Timer) => *name == event.subject,
                _ => false,
            };
            if matches && !selected.contains(&route.function) {
                selected.push(route.function.clone());
            }
        }
        selected
    }
}

/// Routes events into function queues: what every trigger calls.
#[derive(Clone)]
pub struct Dispatch {
    router: Arc<Router>,
    queues: Arc<std::collections::HashMap<Arc<str>, crate::runtime::FunctionQueue>>,
    metrics: Arc<crate::telemetry::Metrics>,
}

impl Dispatch {
    pub fn new(
        router: Router,
        executor: &crate::runtime::Executor,
        metrics: Arc<crate::telemetry::Metrics>,
    ) -> Self {
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

    /// Offers an event from a source that cannot wait: each matching function takes it if
    /// its queue has room, otherwise the drop is counted. Returns how many functions took it.
    pub fn offer(&self, event: Event) -> usize {
        self.metrics.event_received(event.source.as_str());
        let event = Arc::new(event);
        self.router
            .route(&event)
            .iter()
            .filter_map(|name| self.queues.get(name))
            .filter(|queue| queue.try_submit(event.clone()).is_ok())
            .count()
    }
}
