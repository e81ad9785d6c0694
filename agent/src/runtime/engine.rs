//! The one wasmtime engine: Cranelift (Pulley on targets Cranelift lacks), the component
//! model, a pooling instance allocator on 64-bit targets, and epoch interruption driven by
//! one ticker thread.

use std::time::Duration;

use wasmtime::{Config, Engine};

/// What the engine is sized for.
#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    /// Instances that may exist at once (all functions together).
    pub max_instances: u32,
    /// Largest linear memory any function may have, in bytes.
    pub max_memory_bytes: usize,
    /// Period of the epoch ticker that enforces deadlines.
    pub epoch_tick: Duration,
}

pub fn build(settings: EngineSettings) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    configure_memory(&mut config, settings);
    Engine::new(&config)
}

#[cfg(target_pointer_width = "64")]
use pool::configure_memory;

#[cfg(target_pointer_width = "64")]
mod pool {
    use wasmtime::{Config, Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

    use super::EngineSettings;
    use crate::host::MAX_TABLE_ELEMENTS;

    /// Bytes of each linear memory kept mapped between instances and reset in place instead of
    /// being unmapped. The guests' stack, data and first heap pages live in this window, so a
    /// fresh instance takes no page faults for them; with `pagemap_scan` only the pages an
    /// instance actually dirtied are reset.
    const MEMORY_KEEP_RESIDENT: usize = 1024 * 1024;

    /// Core instances, tables and memories a component may hold: a Rust guest has a main module
    /// plus a few adapter shims.
    const CORE_INSTANCES_PER_COMPONENT: u32 = 8;

    /// 64-bit: a pool of instance slots, each reserving its largest memory up front, so an
    /// instance starts without mapping anything.
    pub(super) fn configure_memory(config: &mut Config, settings: EngineSettings) {
        let mut pool = PoolingAllocationConfig::default();
        let instances = settings.max_instances;
        pool.total_component_instances(instances)
            .total_core_instances(instances * CORE_INSTANCES_PER_COMPONENT)
            .total_memories(instances * 2)
            .total_tables(instances * CORE_INSTANCES_PER_COMPONENT)
            .max_memory_size(settings.max_memory_bytes)
            .table_elements(MAX_TABLE_ELEMENTS)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .table_keep_resident(64 * 1024)
            .pagemap_scan(Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
}

/// 32-bit: a pool of `max_instances` memory slots does not fit in the address space
/// (64 × 2 × 32 MiB is already 4 GiB), so instances are allocated on demand, each memory
/// reserving a small window that moves when it grows.
#[cfg(target_pointer_width = "32")]
fn configure_memory(config: &mut Config, _settings: EngineSettings) {
    config
        .allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand)
        .memory_reservation(32 * 1024 * 1024)
        .memory_guard_size(64 * 1024)
        .memory_reservation_for_growth(0);
}

/// Advances the engine's epoch every `tick` until the engine is dropped.
pub fn start_epoch_ticker(engine: &Engine, tick: Duration) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("fogd-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })
        .map(drop)
}
