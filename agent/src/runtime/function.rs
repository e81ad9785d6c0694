//! A loaded function and the per-event hot path: fresh store, instantiate from the
//! pre-linked `InstancePre`, call `handle`, classify what went wrong.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, Trap};

use super::{InvokeError, LoadSource};
use crate::config::{FunctionSpec, Limits, OrderBy};
use crate::contract::{ContractVersion, HandlePre};
use crate::event::{Event, attribute, attributes};
use crate::host::{CommitError, FunctionCaps, HostState, LimitHit, Unpublished};
use crate::outbound::{MessageProperties, OutboundMessage, Qos};
use crate::state::KvError;
use crate::topic::render_template;

/// What a `handle` call produced.
pub type Outcome = Result<Option<Vec<u8>>, InvokeError>;

/// Attempts of an event whose kv writes conflict with other events' before it runs holding
/// its namespace's commits alone (where it cannot conflict).
const SHARED_ATTEMPTS: u32 = 3;

/// An attempt whose kv writes conflicted: nothing of it took effect; run it again.
struct Conflicted;

impl From<LimitHit> for InvokeError {
    fn from(hit: LimitHit) -> Self {
        match hit {
            LimitHit::Output(reason) => InvokeError::OutputLimit(reason),
            LimitHit::StorageQuota(reason) => InvokeError::StorageQuota(reason),
        }
    }
}

/// One call, with where its time went.
#[derive(Debug)]
pub struct CallReport {
    pub outcome: Outcome,
    /// Store creation and instantiation: the cold-start cost.
    pub instantiate: Duration,
    /// Everything, including the call and dropping the instance.
    pub total: Duration,
    /// Publishes of a successful event that the outbound path refused.
    pub unpublished: Unpublished,
    /// The MQTT v5 properties the function set on its result.
    pub result_properties: MessageProperties,
}

pub struct LoadedFunction {
    engine: Engine,
    pre: HandlePre<HostState>,
    caps: Arc<FunctionCaps>,
    limits: Limits,
    deadline_ticks: u64,
    output: Option<String>,
    output_qos: Option<Qos>,
    order_by: OrderBy,
    load_source: LoadSource,
}

impl LoadedFunction {
    /// A function of `spec` (its limits, output and ordering) with its prepared instance.
    pub(super) fn new(
        engine: Engine,
        pre: HandlePre<HostState>,
        caps: Arc<FunctionCaps>,
        spec: &FunctionSpec,
        epoch_tick: Duration,
        load_source: LoadSource,
    ) -> Self {
        let tick_ms = epoch_tick.as_millis().max(1) as u64;
        // One extra tick: the current epoch period is already partly over.
        let deadline_ticks = spec.limits.timeout.0.div_ceil(tick_ms) + 1;
        Self {
            engine,
            pre,
            caps,
            limits: spec.limits.clone(),
            deadline_ticks,
            output: spec.output.clone(),
            output_qos: spec.output_qos.and_then(Qos::from_level),
            order_by: spec.order_by.clone(),
            load_source,
        }
    }

    /// Which of its events run one at a time, in arrival order.
    pub fn order_by(&self) -> &OrderBy {
        &self.order_by
    }

    /// The contract version the component was built against.
    pub fn contract(&self) -> ContractVersion {
        self.pre.version()
    }

    pub fn name(&self) -> &Arc<str> {
        &self.caps.name
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn load_source(&self) -> LoadSource {
        self.load_source
    }

    pub fn caps(&self) -> &FunctionCaps {
        &self.caps
    }

    /// The message carrying this event's result, with the `properties` the function set: an
    /// answer on the MQTT v5 response topic (same broker, with the request's correlation
    /// data, and its content type unless the function set one) if the event asked for one,
    /// otherwise a message on the function's output topic, if it has one.
    pub fn result_message(
        &self,
        event: &Event,
        output: Vec<u8>,
        properties: MessageProperties,
    ) -> Option<OutboundMessage> {
        let name = self.caps.name.clone();
        let qos = self.output_qos.unwrap_or_else(|| {
            attribute(event, attributes::MQTT_QOS)
                .and_then(|level| Qos::from_level(level.parse().ok()?))
                .unwrap_or(Qos::AtLeastOnce)
        });
        if let Some(topic) = attribute(event, attributes::MQTT_RESPONSE_TOPIC) {
            let mut message = OutboundMessage::new(topic.to_owned(), output, name);
            message.qos = qos;
            message.broker = attribute(event, attributes::MQTT_BROKER).map(Arc::from);
            message.properties = MessageProperties {
                correlation_data: attribute(event, attributes::MQTT_CORRELATION_DATA)
                    .and_then(|hex| hex::decode(hex).ok()),
                content_type: properties
                    .content_type
                    .or_else(|| attribute(event, attributes::MQTT_CONTENT_TYPE).map(str::to_owned)),
                user_properties: properties.user_properties,
            };
            return Some(message);
        }
        let template = self.output.as_ref()?;
        let topic = render_template(template, &self.caps.name, &event.subject);
        let mut message = OutboundMessage::new(topic, output, name);
        message.qos = qos;
        message.properties = properties;
        Some(message)
    }

    /// Handles one event in a fresh instance (again, in a new one, if its kv writes
    /// conflicted with another event's). Blocks the calling thread for at most the
    /// function's deadline per attempt; never panics on guest misbehaviour.
    pub fn call(&self, event: &Event) -> CallReport {
        let start = Instant::now();
        for _ in 0..SHARED_ATTEMPTS {
            if let Ok(report) = self.attempt(event, start, false) {
                return report;
            }
        }
        let _alone = self.caps.grants.kv.exclusive();
        self.attempt(event, start, true)
            .unwrap_or_else(|Conflicted| CallReport {
                outcome: Err(InvokeError::KvConflict {
                    attempts: SHARED_ATTEMPTS + 1,
                }),
                instantiate: Duration::ZERO,
                total: start.elapsed(),
                unpublished: Unpublished::default(),
                result_properties: MessageProperties::default(),
            })
    }

    fn attempt(
        &self,
        event: &Event,
        start: Instant,
        exclusive: bool,
    ) -> Result<CallReport, Conflicted> {
        let attempt_start = Instant::now();
        let mut state = HostState::new(self.caps.clone(), event.id.clone());
        if exclusive {
            state.run_exclusive();
        }
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state);
        store.set_epoch_deadline(self.deadline_ticks);
        let instance = match self.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(error) => {
                let outcome = Err(self.classify(&store, error, true));
                return Ok(CallReport {
                    outcome,
                    instantiate: attempt_start.elapsed(),
                    total: start.elapsed(),
                    unpublished: Unpublished::default(),
                    result_properties: MessageProperties::default(),
                });
            }
        };
        let instantiate = attempt_start.elapsed();
        let called = instance.call_handle(&mut store, event);
        let (outcome, unpublished) = self.settle(&mut store, called)?;
        let result_properties = store.data_mut().take_result_properties();
        drop(store);
        Ok(CallReport {
            outcome,
            instantiate,
            total: start.elapsed(),
            unpublished,
            result_properties,
        })
    }

    /// Turns what `handle` returned into the event's outcome, applying the limits the guest
    /// cannot escape, and commits the event's effects if it succeeded.
    fn settle(
        &self,
        store: &mut Store<HostState>,
        called: wasmtime::Result<Result<Option<Vec<u8>>, String>>,
    ) -> Result<(Outcome, Unpublished), Conflicted> {
        let mut outcome = match called {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(message)) => Err(InvokeError::Failed(message)),
            Err(error) => Err(self.classify(store, error, false)),
        };
        let state = store.data();
        if state.memory_limit_hit() {
            outcome = Err(InvokeError::MemoryLimit {
                limit_mib: self.limits.memory_mib,
            });
        } else if state.deadline_hit() {
            outcome = Err(InvokeError::Timeout {
                timeout_ms: self.limits.timeout.0,
            });
        } else if let Some(hit) = state.limit_hit() {
            outcome = Err(hit.clone().into());
        } else if let Ok(Some(output)) = &outcome
            && output.len() > self.limits.result_bytes as usize
        {
            outcome = Err(InvokeError::OutputLimit(format!(
                "a result of {} bytes is larger than limits.result_bytes ({})",
                output.len(),
                self.limits.result_bytes
            )));
        }
        if outcome.is_err() {
            return Ok((outcome, Unpublished::default()));
        }
        match store.data_mut().commit() {
            Ok(unpublished) => Ok((outcome, unpublished)),
            Err(CommitError::Conflict) => Err(Conflicted),
            Err(CommitError::Kv(error @ KvError::QuotaExceeded { .. })) => Ok((
                Err(InvokeError::StorageQuota(error.to_string())),
                Unpublished::default(),
            )),
            Err(CommitError::Kv(error)) => Ok((
                Err(InvokeError::Storage(error.to_string())),
                Unpublished::default(),
            )),
        }
    }

    fn classify(
        &self,
        store: &Store<HostState>,
        error: wasmtime::Error,
        instantiating: bool,
    ) -> InvokeError {
        if store.data().memory_limit_hit() {
            return InvokeError::MemoryLimit {
                limit_mib: self.limits.memory_mib,
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => InvokeError::Timeout {
                timeout_ms: self.limits.timeout.0,
            },
            Some(Trap::UnreachableCodeReached) => InvokeError::Panic,
            _ if instantiating => InvokeError::Instantiate(format!("{error:#}")),
            _ => {
                // The event's error is one line; the guest's backtrace is for debugging.
                tracing::debug!(function = %self.caps.name, backtrace = ?error, "trap");
                InvokeError::Trap(error.root_cause().to_string())
            }
        }
    }
}

/// One instance kept alive across calls: for measuring warm calls, not for serving events
/// (state would leak between events).
pub struct WarmInstance<'a> {
    function: &'a LoadedFunction,
    store: Store<HostState>,
    instance: crate::contract::Handle,
}

impl LoadedFunction {
    pub fn warm_instance(&self) -> Result<WarmInstance<'_>, InvokeError> {
        let mut store = Store::new(
            &self.engine,
            HostState::new(self.caps.clone(), String::new()),
        );
        store.limiter(|state| state);
        store.set_epoch_deadline(self.deadline_ticks);
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|error| self.classify(&store, error, true))?;
        Ok(WarmInstance {
            function: self,
            store,
            instance,
        })
    }
}

impl WarmInstance<'_> {
    pub fn call(&mut self, event: &Event) -> Outcome {
        self.store.data_mut().begin_event();
        self.store.set_epoch_deadline(self.function.deadline_ticks);
        let called = self.instance.call_handle(&mut self.store, event);
        match self.function.settle(&mut self.store, called) {
            Ok((outcome, _)) => outcome,
            Err(Conflicted) => Err(InvokeError::KvConflict { attempts: 1 }),
        }
    }
}
