//! Returns its event's payload unchanged.

use fogd_sdk::{Event, Guest, export};

struct Echo;

impl Guest for Echo {
    fn handle(event: Event) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(event.payload))
    }
}

export!(Echo);
