//! `fogd:function/response`: MQTT v5 properties a function sets on its result message.

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, GrantError, HostResources, HostState};
use crate::config::FunctionSpec;
use crate::contract::response::{self, Host};
use crate::outbound::MessageProperties;

/// Every function may set its result's properties, within these bounds: they travel in
/// every result message and its outbox record.
pub struct ResultProperties;

const MAX_CONTENT_TYPE: usize = 256;
const MAX_USER_PROPERTIES: usize = 32;
const MAX_PROPERTY_TEXT: usize = 1024;

impl Capability for ResultProperties {
    fn prepare(_: &FunctionSpec, _: &HostResources) -> Result<Self, GrantError> {
        Ok(Self)
    }

    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        response::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
    }
}

impl Host for HostState {
    fn set_content_type(&mut self, content_type: String) -> Result<(), String> {
        set_content_type(&mut self.result_properties, content_type)
    }

    fn add_user_property(&mut self, key: String, value: String) -> Result<(), String> {
        add_user_property(&mut self.result_properties, key, value)
    }
}

fn set_content_type(
    properties: &mut MessageProperties,
    content_type: String,
) -> Result<(), String> {
    if content_type.len() > MAX_CONTENT_TYPE {
        return Err(format!(
            "a content type of {} bytes is longer than {MAX_CONTENT_TYPE}",
            content_type.len()
        ));
    }
    properties.content_type = Some(content_type);
    Ok(())
}

fn add_user_property(
    properties: &mut MessageProperties,
    key: String,
    value: String,
) -> Result<(), String> {
    if properties.user_properties.len() >= MAX_USER_PROPERTIES {
        return Err(format!(
            "the result has {MAX_USER_PROPERTIES} user properties already"
        ));
    }
    if key.len() > MAX_PROPERTY_TEXT || value.len() > MAX_PROPERTY_TEXT {
        return Err(format!(
            "a user property's key and value are at most {MAX_PROPERTY_TEXT} bytes each"
        ));
    }
    properties.user_properties.push((key, value));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_bounded() {
        let mut properties = MessageProperties::default();
        set_content_type(&mut properties, "application/json".into()).unwrap();
        assert!(set_content_type(&mut properties, "x".repeat(257)).is_err());
        assert_eq!(properties.content_type.as_deref(), Some("application/json"));
        for index in 0..MAX_USER_PROPERTIES {
            add_user_property(&mut properties, format!("k{index}"), "v".into()).unwrap();
        }
        assert!(add_user_property(&mut properties, "one".into(), "more".into()).is_err());
        assert!(
            add_user_property(
                &mut MessageProperties::default(),
                "k".repeat(1025),
                "v".into()
            )
            .is_err()
        );
        assert_eq!(properties.user_properties.len(), MAX_USER_PROPERTIES);
    }
}
