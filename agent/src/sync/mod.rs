//! Desired state from the fleet on the device: the revisions kept on disk ([`store`]),
//! following the fleet over MQTT ([`cloud`], [`download`]), staging one from local files
//! ([`local`]), trying a revision before it runs ([`probe`]), activating it ([`activate`])
//! and watching it against its health gates ([`watch`]). The document itself, its signing
//! and the fleet topics live in [`fogd_fleet::deployment`].

pub mod activate;
pub mod cloud;
pub mod download;
pub mod local;
pub mod probe;
pub mod store;
pub mod watch;

pub use fogd_fleet::deployment::{
    Artifact, Deployment, DocumentError, FleetKey, FunctionHealth, HealthGates, KeyError, Progress,
    Report, SignatureError, SignedDocument, SyncState, TrustedKeys, canonical, document, report,
    signing, topics,
};
pub use store::{RevisionStore, StoreError};
