//! Protobuf types generated at build time from `proto/*.proto` (prost + protox, no system protoc).
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// WhatsApp protobufs: handshake, certificates, client payload, ADV, device props, E2E messages,
/// media retry.
pub mod wa {
    include!(concat!(env!("OUT_DIR"), "/wa.rs"));

    /// Signal wire messages and the records our Signal store persists.
    pub mod signal {
        include!(concat!(env!("OUT_DIR"), "/wa.signal.rs"));
    }
}
