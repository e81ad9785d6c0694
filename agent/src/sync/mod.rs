//! Desired state from the fleet: signed deployment documents ([`signing`], over the
//! [`canonical`] encoding), what they contain ([`document`]) and the revisions kept on disk
//! ([`store`]).

pub mod activate;
pub mod canonical;
pub mod document;
pub mod signing;
pub mod store;
pub mod watch;

pub use document::{Artifact, Deployment, DocumentError, HealthGates};
pub use signing::{FleetKey, KeyError, SignatureError, SignedDocument, TrustedKeys};
pub use store::{RevisionStore, StoreError};
