//! The WhatsApp simulator: an offline server and simulated phones speaking the real protocol,
//! for tests, benches and `wa-gateway simulate`. It shares codec, Noise, certificates and crypto
//! with the client, never the client's protocol logic; if it accepts what WhatsApp would reject,
//! that is a simulator bug. So far: pairing, login, keepalive, faults, the control API, `ws://`
//! or `wss://` (its own CA), bounded state under load, and phones that greet their new
//! companions over Signal. Connections: `conn.rs` (handshake, payload), `register.rs` (QR
//! pairing), `session.rs` (a logged-in device).

mod conn;
pub mod control;
pub mod groups;
pub mod iq;
pub mod pair;
pub mod phone;
mod register;
pub mod route;
pub mod server;
mod session;
mod tls;
pub mod usync;

pub use server::{Fault, SimError, Simulator};
