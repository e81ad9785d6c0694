//! WASI for a function: the environment variables it is granted, stdout and stderr into
//! fogd's log, and nothing else (no files, sockets or stdin).

mod stdio;

use std::sync::Arc;

use wasmtime::component::Linker;
use wasmtime_wasi::WasiCtx;

use super::{Capability, GrantError, HostResources, HostState};
use crate::config::FunctionSpec;
use stdio::GuestOutput;

/// The WASI context of one function, resolved when it loads.
pub struct WasiGrant {
    env: Vec<(String, String)>,
}

impl WasiGrant {
    /// A fresh context for one instance of `function`.
    pub fn context(&self, function: &Arc<str>) -> WasiCtx {
        let mut builder = WasiCtx::builder();
        builder
            .stdout(GuestOutput::stdout(function.clone()))
            .stderr(GuestOutput::stderr(function.clone()));
        for (key, value) in &self.env {
            builder.env(key, value);
        }
        builder.build()
    }
}

impl Capability for WasiGrant {
    fn prepare(spec: &FunctionSpec, _: &HostResources) -> Result<Self, GrantError> {
        let env = spec
            .grants
            .env
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        Ok(Self { env })
    }

    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        wasmtime_wasi::p2::add_to_linker_sync(linker)
    }
}
