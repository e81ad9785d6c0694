//! `fogd:function@0.1.0`: the same host interfaces, and a `handle` whose event knows fewer
//! sources.

use wasmtime::component::{HasSelf, Linker};

use super::{Event as CurrentEvent, Source};

wasmtime::component::bindgen!({
    path: "wit",
    world: "network-function-0-1",
    with: {
        "fogd:function/kv": super::kv,
        "fogd:function/messaging": super::messaging,
        "fogd:function/log": super::log,
        "fogd:function/config": super::config,
        "fogd:function/inference": super::inference,
    },
});

use self::fogd::function::types;

/// The 0.1.0 name of `source`, if it had one.
pub(super) fn source(source: Source) -> Option<types::Source> {
    Some(match source {
        Source::Mqtt => types::Source::Mqtt,
        Source::SnmpTrap => types::Source::SnmpTrap,
        Source::SnmpPoll => types::Source::SnmpPoll,
        Source::Timer => types::Source::Timer,
        Source::Invoke => types::Source::Invoke,
        Source::Flow | Source::Syslog => return None,
    })
}

/// `event` as a 0.1.0 function receives it.
pub(super) fn event(event: &CurrentEvent) -> wasmtime::Result<types::Event> {
    let Some(source) = source(event.source) else {
        wasmtime::bail!(
            "this function was built against fogd:function@0.1.0, which has no `{}` events",
            event.source.as_str()
        );
    };
    Ok(types::Event {
        id: event.id.clone(),
        source,
        subject: event.subject.clone(),
        payload: event.payload.clone(),
        attributes: event.attributes.clone(),
        received_at: event.received_at,
    })
}

pub use self::fogd::function::types::Host as TypesHost;

pub(super) fn add_types_to_linker<T: TypesHost + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    types::add_to_linker::<T, HasSelf<T>>(linker, |state| state)
}
