//! What the simulator's control surface (its Rust API and the control endpoints) answers when
//! it cannot do what was asked: whose fault it is reads from the variant (a bad argument, an
//! unknown ref or group, the environment).

use super::pair::SimPairError;

/// Errors of the simulator's control surface.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding the listener failed.
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    /// The QR did not parse.
    #[error(transparent)]
    Pair(#[from] SimPairError),
    /// No connection is showing that ref (expired, or never issued).
    #[error("no companion is showing this QR (expired or unknown ref)")]
    UnknownRef,
    /// The companion refused the pairing or went away.
    #[error("pairing failed: {0}")]
    PairingFailed(String),
    /// The TLS certificate could not be made.
    #[error("TLS set-up: {0}")]
    Tls(String),
    /// Not a phone number WhatsApp could have (1–15 digits, E.164).
    #[error("phone number must be 1–15 digits")]
    BadNumber,
    /// A user has 1 to 16 simulated devices.
    #[error("device count must be 1–16")]
    BadDeviceCount,
    /// The simulator's state is unusable (a task panicked while holding it).
    #[error("simulator state unavailable")]
    Internal,
    /// No group with that JID.
    #[error("no such group")]
    NoSuchGroup,
    /// The user is not a member of the group.
    #[error("not a member of the group")]
    NotInGroup,
    /// Past a limit (members per group, groups).
    #[error("too many members or groups")]
    TooMany,
    /// What a phone was asked to send is not a `Message` protobuf (or is empty).
    #[error("the message is not a WhatsApp Message protobuf")]
    BadMessage,
    /// The file a phone was asked to send cannot be sent (unreadable, empty, too large, or
    /// the CDN refused it).
    #[error("the media cannot be sent: {0}")]
    BadMedia(String),
}
