//! Errors of the socket layer: who was wrong (peer bytes, the certificate chain, or the network).

use crate::binary::{DecodeError, EncodeError};

/// Which certificate of the chain a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRole {
    /// The intermediate, signed by the root.
    Intermediate,
    /// The leaf, signed by the intermediate; its key is the server's static key.
    Leaf,
}

/// Why the server's certificate chain was refused. One variant per check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The chain is not a valid CertChain protobuf, or a certificate lacks details or signature.
    #[error("malformed certificate chain: {0}")]
    Malformed(&'static str),
    /// The intermediate is not signed by the trusted root key: the chain leads to another root.
    #[error("certificate chain is not issued by the trusted root key")]
    UntrustedRoot,
    /// The leaf is not validly signed by the intermediate's key.
    #[error("leaf certificate signature by the intermediate is invalid")]
    BadIntermediateSignature,
    /// Issuer serials do not link the chain (root → intermediate → leaf).
    #[error("{role:?} certificate names issuer serial {got}, expected {expected}")]
    IssuerMismatch {
        /// The certificate checked.
        role: CertRole,
        /// Serial it should name.
        expected: u32,
        /// Serial it names.
        got: u32,
    },
    /// The leaf key is not the static key the server used in the handshake.
    #[error("leaf certificate key does not match the server's static key")]
    LeafKeyMismatch,
    /// A certificate's validity ended before now.
    #[error("{0:?} certificate expired")]
    Expired(CertRole),
    /// A certificate is not valid yet.
    #[error("{0:?} certificate is not valid yet")]
    NotYetValid(CertRole),
}

/// Why a Noise handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The peer's handshake message is not a valid HandshakeMessage or lacks a field.
    #[error("malformed handshake message: {0}")]
    Malformed(&'static str),
    /// AES-GCM authentication failed during the handshake.
    #[error("handshake decryption failed (wrong keys or tampered message)")]
    Decrypt,
    /// The server's certificate chain was refused.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The peer's key is a low-order point: the shared secret would be all zeros.
    #[error("peer key is a low-order point")]
    LowOrderPoint,
    /// The connection header (`WA 06 03`) was missing or announced another version.
    #[error("bad connection header")]
    BadHeader,
}

/// Transport-phase cipher failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// A frame failed AES-GCM authentication: the stream is desynchronised or tampered.
    #[error("frame failed to decrypt")]
    Decrypt,
    /// The 32-bit frame counter would wrap.
    #[error("frame counter exhausted")]
    CounterExhausted,
    /// AES-GCM refused to encrypt (only possible for absurd lengths).
    #[error("frame failed to encrypt")]
    Encrypt,
    /// An outgoing frame longer than a 3-byte length can announce; nothing was written.
    #[error("outgoing frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// Ciphertext length with the tag.
        len: usize,
        /// The cap.
        max: usize,
    },
}

/// Length-prefix framing failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A frame longer than the cap.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Announced or attempted length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The peer's first bytes were not a valid connection header.
    #[error("bad connection header")]
    BadHeader,
}

/// Everything that can end a connection.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// WebSocket or TCP failure.
    #[error("websocket: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// The handshake failed.
    #[error("noise handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// A transport frame failed to decrypt.
    #[error(transparent)]
    Cipher(#[from] CipherError),
    /// Framing violated.
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// A decrypted frame was not a valid node.
    #[error("malformed node: {0}")]
    Decode(#[from] DecodeError),
    /// A node could not be encoded.
    #[error("cannot encode node: {0}")]
    Encode(#[from] EncodeError),
    /// The peer did not answer in time.
    #[error("timed out during {0}")]
    Timeout(&'static str),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
    /// A non-WebSocket URL or similar configuration problem.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
}

impl From<tokio_tungstenite::tungstenite::Error> for SocketError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> SocketError {
        SocketError::WebSocket(Box::new(e))
    }
}
