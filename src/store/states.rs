//! The states rows keep, as enums stored as their lowercase names: a typo is a compile error,
//! and a value the code does not know (a newer version's row) is a decode error, not a silent
//! fallthrough.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{Sqlite, SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};

/// Makes an enum stored as TEXT: `as_str`, `FromStr`, `Display` and the sqlx traits.
macro_rules! text_state {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $v,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v,)+];

            /// The stored (and wire) name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $s,)+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $($s => Ok($name::$v),)+
                    other => Err(UnknownState {
                        what: stringify!($name),
                        value: other.chars().take(40).collect(),
                    }),
                }
            }
        }

        text_sqlx!($name);
    };
}

/// The sqlx traits for a type with `as_str` and `FromStr` (stored as TEXT).
macro_rules! text_sqlx {
    ($name:ty) => {
        impl sqlx::Type<Sqlite> for $name {
            fn type_info() -> SqliteTypeInfo {
                <&str as sqlx::Type<Sqlite>>::type_info()
            }
            fn compatible(ty: &SqliteTypeInfo) -> bool {
                <&str as sqlx::Type<Sqlite>>::compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, Sqlite> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut Vec<SqliteArgumentValue<'q>>,
            ) -> Result<IsNull, BoxDynError> {
                <&str as sqlx::Encode<'q, Sqlite>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, Sqlite> for $name {
            fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
                let s = <&str as sqlx::Decode<'r, Sqlite>>::decode(value)?;
                Ok(s.parse::<$name>()?)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A stored state this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`")]
pub struct UnknownState {
    what: &'static str,
    value: String,
}

text_state!(
    /// Where an accepted send is.
    OutboxState {
        /// Waiting for its turn (or for a connection).
        Queued = "queued",
        /// Handed to the client: WhatsApp acked it, or the client keeps resending it.
        Done = "done",
        /// Refused, or failed past retrying.
        Failed = "failed",
        /// Its account was disconnected first; never sent.
        Cancelled = "cancelled",
        /// It waited past `WA_GATEWAY_SEND_TTL`; never sent.
        Expired = "expired",
    }
);

text_state!(
    /// Where a media message's file stands.
    MediaState {
        /// To be fetched from the CDN.
        Pending = "pending",
        /// In the blob store, named by its SHA-256.
        Stored = "stored",
        /// Could not be had (the row's error says why).
        Failed = "failed",
        /// Not fetched on its own (automatic download off, or over its cap); fetched on request.
        Skipped = "skipped",
    }
);

text_state!(
    /// A connection's status as the guide names it (`status`); the precise state is a
    /// [`ConnectionCode`].
    ConnectionStatus {
        /// No connection row: never connected (`status` answers only; never stored).
        NotInitialized = "not_initialized",
        /// On its way to connected: connecting, showing a QR, logging in, reconnecting after a
        /// drop, or logged in but silent.
        Pending = "pending",
        /// Logged in and heard from.
        Connected = "connected",
        /// No client is working on it: disconnected on purpose, or ended in a state that needs
        /// someone (logged out, banned, replaced, QR not scanned, outdated, failed).
        Disconnected = "disconnected",
    }
);

text_state!(
    /// The precise state of a connection (`code`).
    ConnectionCode {
        /// Opening the socket and the Noise handshake.
        Connecting = "connecting",
        /// Showing a QR code (or waiting for a pairing code) to be used on the phone.
        AwaitingPair = "awaiting_pair",
        /// Linked; logging in.
        LoggingIn = "logging_in",
        /// Logged in and heard from.
        Connected = "connected",
        /// Logged in, but nothing heard for longer than a live connection can be silent
        /// (answers only; never stored).
        Unresponsive = "unresponsive",
        /// The connection dropped; the client is reconnecting by itself.
        Reconnecting = "reconnecting",
        /// Disconnected on purpose (or the service stopped while it was being set up).
        Disconnected = "disconnected",
        /// WhatsApp unlinked the device (from the phone, or the account was removed).
        LoggedOut = "logged_out",
        /// No one scanned the QR codes in time.
        QrTimeout = "qr_timeout",
        /// WhatsApp banned the account for a while.
        TempBanned = "temp_banned",
        /// WhatsApp refuses this client version.
        ClientOutdated = "client_outdated",
        /// Another connection of the same device took over.
        Replaced = "replaced",
        /// Our side failed (storage, keys).
        Error = "error",
    }
);

impl Default for ConnectionStatus {
    /// What a connection without a row is.
    fn default() -> Self {
        ConnectionStatus::NotInitialized
    }
}

impl ConnectionCode {
    /// The guide's status for this state.
    pub fn status(self) -> ConnectionStatus {
        match self {
            ConnectionCode::Connecting
            | ConnectionCode::AwaitingPair
            | ConnectionCode::LoggingIn
            | ConnectionCode::Unresponsive
            | ConnectionCode::Reconnecting => ConnectionStatus::Pending,
            ConnectionCode::Connected => ConnectionStatus::Connected,
            ConnectionCode::Disconnected
            | ConnectionCode::LoggedOut
            | ConnectionCode::QrTimeout
            | ConnectionCode::TempBanned
            | ConnectionCode::ClientOutdated
            | ConnectionCode::Replaced
            | ConnectionCode::Error => ConnectionStatus::Disconnected,
        }
    }
}

text_state!(
    /// Where a webhook event's delivery is.
    DeliveryState {
        /// Waiting for its turn or its next attempt.
        Pending = "pending",
        /// The receiver took it (a 2xx answer read whole).
        Delivered = "delivered",
        /// Dead-lettered: it kept failing past `WA_GATEWAY_WEBHOOK_DEAD_AFTER_S`.
        Failed = "failed",
    }
);

text_sqlx!(crate::client::messages::MessageStatus);

impl std::str::FromStr for crate::client::messages::MessageStatus {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, UnknownState> {
        crate::client::messages::MessageStatus::parse(s).ok_or_else(|| UnknownState {
            what: "MessageStatus",
            value: s.chars().take(40).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_as_itself_and_strangers_are_refused() {
        for s in OutboxState::ALL {
            assert_eq!(s.as_str().parse::<OutboxState>(), Ok(*s));
        }
        for s in ConnectionCode::ALL {
            assert_eq!(s.as_str().parse::<ConnectionCode>(), Ok(*s));
        }
        assert!("Queued".parse::<OutboxState>().is_err());
        assert!("".parse::<ConnectionStatus>().is_err());
    }

    #[test]
    fn only_live_and_recovering_states_are_pending() {
        let pending: Vec<_> = ConnectionCode::ALL
            .iter()
            .filter(|c| c.status() == ConnectionStatus::Pending)
            .map(|c| c.as_str())
            .collect();
        assert_eq!(
            pending,
            [
                "connecting",
                "awaiting_pair",
                "logging_in",
                "unresponsive",
                "reconnecting"
            ]
        );
        assert_eq!(
            ConnectionCode::LoggedOut.status(),
            ConnectionStatus::Disconnected
        );
    }
}
