//! Desired state from the fleet: signed deployment documents ([`signing`], over the
//! [`canonical`] encoding), what they contain ([`document`]), and the topics and reports
//! devices and the controller exchange ([`report`]).

pub mod canonical;
pub mod document;
pub mod report;
pub mod signing;

pub use document::{Artifact, Deployment, DocumentError, HealthGates};
pub use report::{FunctionHealth, Progress, Report, SyncState, topics};
pub use signing::{FleetKey, KeyError, SignatureError, SignedDocument, TrustedKeys};
