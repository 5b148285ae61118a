//! The typed events a client emits for the service layer, and its connection states.

use std::fmt;
use std::time::Duration;

use crate::binary::Jid;

/// Where a client's connection stands. Only the client's run loop changes it, and every change
/// is emitted as [`Event::State`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Opening the socket and running the handshake.
    Connecting,
    /// A new device showing QR codes, waiting for a phone to scan.
    AwaitingPair,
    /// Paired; logging in.
    LoggingIn,
    /// Logged in and online.
    Connected,
    /// Down; the next attempt is scheduled.
    Disconnected {
        /// Why the connection ended.
        reason: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// No phone scanned before the refs ran out; connect again to get new codes.
    QrTimeout,
    /// The phone unlinked this device (or the server says so); credentials were wiped.
    LoggedOut {
        /// What the server said.
        reason: String,
    },
    /// The server refused our WhatsApp Web version (405); not reconnecting until the version
    /// setting is raised.
    ClientOutdated {
        /// What to do, naming the version refused and the setting to change.
        message: String,
    },
    /// Another connection with the same credentials took over; not reconnecting.
    Replaced,
    /// Something on our side prevents connecting (unusable stored credentials, a store that
    /// cannot be read). Not reconnecting, and nothing was wiped: the link may still be valid
    /// once the cause is mended. Only WhatsApp's own logout wipes credentials.
    LocalError {
        /// What went wrong.
        reason: String,
    },
    /// Stopped by its owner.
    Stopped,
}

impl ConnState {
    /// The machine name of the state (`connected`, `qr_timeout`, …).
    pub fn name(&self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::AwaitingPair => "awaiting_pair",
            ConnState::LoggingIn => "logging_in",
            ConnState::Connected => "connected",
            ConnState::Disconnected { .. } => "disconnected",
            ConnState::QrTimeout => "qr_timeout",
            ConnState::LoggedOut { .. } => "logged_out",
            ConnState::ClientOutdated { .. } => "client_outdated",
            ConnState::Replaced => "replaced",
            ConnState::LocalError { .. } => "local_error",
            ConnState::Stopped => "stopped",
        }
    }

    /// True for states the client does not leave by itself.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            ConnState::QrTimeout
                | ConnState::LoggedOut { .. }
                | ConnState::ClientOutdated { .. }
                | ConnState::Replaced
                | ConnState::LocalError { .. }
                | ConnState::Stopped
        )
    }
}

/// Something the service layer wants to know.
#[derive(Clone, PartialEq, Eq)]
pub enum Event {
    /// The connection state changed.
    State(ConnState),
    /// A QR code to show until `valid_for` elapses (then the next one comes).
    QrCode {
        /// The QR text (render with [`super::qr::qr_data_url`]).
        code: String,
        /// How long this code is shown.
        valid_for: Duration,
    },
    /// A phone linked this device (boxed: events are queued per client, and this rare one is
    /// the largest).
    PairSuccess(Box<Linked>),
    /// A pair-success was refused (bad HMAC or signature); nothing was stored.
    PairError {
        /// Why.
        reason: String,
    },
    /// Logged in.
    Connected {
        /// Our device JID.
        jid: Jid,
    },
    /// Our push name (the name set on the phone) became known or changed; it is stored.
    PushName {
        /// The name.
        name: String,
    },
}

/// What a pair-success told us about our new link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    /// Our new device JID.
    pub jid: Jid,
    /// Our LID device JID.
    pub lid: Option<Jid>,
    /// The phone's platform.
    pub platform: Option<String>,
    /// Business name.
    pub business_name: Option<String>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The QR text carries key material: never print it.
            Event::QrCode { valid_for, .. } => {
                write!(f, "QrCode {{ code: <redacted>, valid_for: {valid_for:?} }}")
            }
            Event::State(s) => write!(f, "State({s:?})"),
            Event::PairSuccess(l) => {
                write!(
                    f,
                    "PairSuccess {{ jid: {}, platform: {:?} }}",
                    l.jid, l.platform
                )
            }
            Event::PairError { reason } => write!(f, "PairError {{ reason: {reason} }}"),
            Event::Connected { jid } => write!(f, "Connected {{ jid: {jid} }}"),
            Event::PushName { name } => write!(f, "PushName {{ name: {name:?} }}"),
        }
    }
}
