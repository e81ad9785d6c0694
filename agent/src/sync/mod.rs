//! Desired state from the fleet: signed deployment documents ([`signing`], over the
//! [`canonical`] encoding) and what they contain ([`document`]).

pub mod canonical;
pub mod document;
pub mod signing;

pub use document::{Artifact, Deployment, DocumentError, HealthGates};
pub use signing::{FleetKey, KeyError, SignatureError, SignedDocument, TrustedKeys};
