//! The encrypted transport (PROTOCOL.md §1–§2): Noise XX with WhatsApp's header and payloads,
//! the server certificate chain, 3-byte framing — all sans-IO — and `conn`, the only module that
//! touches tokio-tungstenite. It carries nodes as bytes and knows nothing of what they mean.

pub mod cert;
pub mod conn;
pub mod error;
pub mod framing;
pub mod noise;
pub mod tls;

pub use cert::{ServerIdentity, TrustRoot, VerifiedChain, WHATSAPP_ROOT_KEY};
pub use conn::{Accepted, ClientConfig, Incoming, NodeSender, NoiseSocket, accept, connect};
pub use error::{CertError, CertRole, CipherError, FramingError, HandshakeError, SocketError};
pub use noise::{CONN_HEADER, NOISE_XX_NAME};
