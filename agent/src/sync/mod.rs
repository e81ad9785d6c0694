//! Desired state from the fleet: signed deployment documents ([`signing`], over the
//! [`canonical`] encoding), what they contain ([`document`]), the revisions kept on disk
//! ([`store`]), and following the fleet over MQTT ([`cloud`], [`report`], [`download`]).

pub mod activate;
pub mod canonical;
pub mod cloud;
pub mod document;
pub mod download;
pub mod report;
pub mod signing;
pub mod store;
pub mod watch;

pub use document::{Artifact, Deployment, DocumentError, HealthGates};
pub use report::{Report, SyncState, topics};
pub use signing::{FleetKey, KeyError, SignatureError, SignedDocument, TrustedKeys};
pub use store::{RevisionStore, StoreError};
