//! Why loading a function or handling an event failed.

use std::path::PathBuf;

use thiserror::Error;

/// A function could not be loaded. The daemon reports it and carries on with the others.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read component {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid component {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("component {path} does not fit the fogd:function world: {reason}")]
    Link { path: PathBuf, reason: String },
    #[error("component {path} was built against {contract}, which has no {kind} events; rebuild it with the current SDK to give it a {kind} trigger", kind = events.as_str(), contract = contract.as_str())]
    Contract {
        path: PathBuf,
        contract: crate::contract::ContractVersion,
        events: crate::event::Source,
    },
    #[error("cannot write the component cache in {dir}: {source}")]
    Cache {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Grant(#[from] crate::host::GrantError),
}

/// One event failed; the function and the daemon carry on.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum InvokeError {
    #[error("deadline of {timeout_ms} ms exceeded")]
    Timeout { timeout_ms: u64 },
    #[error("memory limit of {limit_mib} MiB reached")]
    MemoryLimit { limit_mib: u32 },
    #[error("guest panicked (its message is in the log, stream=stderr)")]
    Panic,
    #[error("guest trapped: {0}")]
    Trap(String),
    #[error("function returned an error: {0}")]
    Failed(String),
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
    #[error("output limit: {0}")]
    OutputLimit(String),
    #[error("storage quota: {0}")]
    StorageQuota(String),
    #[error("kv writes kept conflicting with other events' after {attempts} attempts")]
    KvConflict { attempts: u32 },
    #[error("state database: {0}")]
    Storage(String),
    #[error("queue full")]
    QueueFull,
    #[error("fogd is shutting down")]
    ShuttingDown,
}

impl InvokeError {
    /// The kinds that are the function's own fault (not backpressure or shutdown): what the
    /// health gates of a deployment count.
    pub const FAULT_KINDS: [&'static str; 8] = [
        "timeout",
        "memory_limit",
        "panic",
        "trap",
        "failed",
        "instantiate",
        "output_limit",
        "storage_quota",
    ];

    /// Short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::Timeout { .. } => "timeout",
            InvokeError::MemoryLimit { .. } => "memory_limit",
            InvokeError::Panic => "panic",
            InvokeError::Trap(_) => "trap",
            InvokeError::Failed(_) => "failed",
            InvokeError::Instantiate(_) => "instantiate",
            InvokeError::OutputLimit(_) => "output_limit",
            InvokeError::StorageQuota(_) => "storage_quota",
            InvokeError::KvConflict { .. } => "kv_conflict",
            InvokeError::Storage(_) => "storage",
            InvokeError::QueueFull => "queue_full",
            InvokeError::ShuttingDown => "shutting_down",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_of_the_function_is_a_fault_kind() {
        let faults = [
            InvokeError::Timeout { timeout_ms: 1 },
            InvokeError::MemoryLimit { limit_mib: 1 },
            InvokeError::Panic,
            InvokeError::Trap(String::new()),
            InvokeError::Failed(String::new()),
            InvokeError::Instantiate(String::new()),
            InvokeError::OutputLimit(String::new()),
            InvokeError::StorageQuota(String::new()),
        ];
        for fault in faults {
            assert!(InvokeError::FAULT_KINDS.contains(&fault.kind()), "{fault}");
        }
        for not_a_fault in [
            InvokeError::QueueFull,
            InvokeError::ShuttingDown,
            InvokeError::KvConflict { attempts: 1 },
            InvokeError::Storage(String::new()),
        ] {
            assert!(!InvokeError::FAULT_KINDS.contains(&not_a_fault.kind()));
        }
    }
}
