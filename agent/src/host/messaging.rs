//! `fogd:function/messaging`: publishing, checked against the function's granted filters.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, GrantError, HostResources, HostState};
use crate::config::{FunctionSpec, MAX_PUBLISH_BYTES};
use crate::contract::messaging::{self, Error, Host, Qos as WitQos};
use crate::outbound::{OutboundMessage, OutboundSink, Qos};
use crate::topic::{TopicFilter, validate_topic_name};

/// The topics a function may publish to and where its messages go.
pub struct PublishGrants {
    filters: Vec<TopicFilter>,
    sink: Arc<dyn OutboundSink>,
    max_payload: u32,
}

impl Capability for PublishGrants {
    fn prepare(spec: &FunctionSpec, resources: &HostResources) -> Result<Self, GrantError> {
        let filters = spec
            .grants
            .publish
            .iter()
            .map(|filter| TopicFilter::parse(filter))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            filters,
            sink: resources.sink.clone(),
            max_payload: MAX_PUBLISH_BYTES,
        })
    }

    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        messaging::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
    }
}

impl PublishGrants {
    pub fn allows(&self, topic: &str) -> bool {
        self.filters.iter().any(|filter| filter.matches(topic))
    }

    /// The sink messages of this function go to (also used for its return values).
    pub fn sink(&self) -> &Arc<dyn OutboundSink> {
        &self.sink
    }
}

impl From<WitQos> for Qos {
    fn from(qos: WitQos) -> Self {
        match qos {
            WitQos::AtMostOnce => Qos::AtMostOnce,
            WitQos::AtLeastOnce => Qos::AtLeastOnce,
            WitQos::ExactlyOnce => Qos::ExactlyOnce,
        }
    }
}

impl Host for HostState {
    fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        qos: WitQos,
        retain: bool,
    ) -> Result<(), Error> {
        let grants = &self.caps.grants.messaging;
        if validate_topic_name(&topic).is_err() {
            return Err(Error::InvalidTopic(topic));
        }
        if !grants.allows(&topic) {
            tracing::warn!(function = %self.caps.name, event_id = %self.event_id(), topic, "publish refused: topic not granted");
            return Err(Error::NotGranted(topic));
        }
        if payload.len() > grants.max_payload as usize {
            return Err(Error::PayloadTooLarge(grants.max_payload));
        }
        let first_limit = self.effects.limit_hit().is_none();
        if let Err(reason) = self
            .effects
            .count_publish(payload.len(), &self.caps.limits.output)
        {
            if first_limit {
                tracing::warn!(function = %self.caps.name, event_id = %self.event_id(), reason, "publish refused: the event's output limit is reached");
            }
            return Err(Error::LimitReached(reason));
        }
        let mut message = OutboundMessage::new(topic, payload, self.caps.name.clone());
        message.qos = qos.into();
        message.retain = retain;
        self.effects
            .publish(&self.caps, message)
            .map_err(|error| Error::Unavailable(error.to_string()))
    }
}
