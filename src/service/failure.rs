//! Why a send did not go out, named once: the code an outbox row keeps, the REST answer's code
//! and HTTP status, and the outbox state it ends in all come from [`SendFailure`], so a send
//! refused at once and one refused from the queue answer alike.

use crate::client::SendError;
use crate::client::messages::MessageStatus;
use crate::store::OutboxState;

/// Why a send failed, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// The recipient has no WhatsApp account.
    NotOnWhatsApp,
    /// The text is empty or too long.
    InvalidMessage,
    /// The recipient is not one messages can be sent to (a broadcast list, a newsletter, …).
    InvalidTo,
    /// The account is not (or no longer) a member of the group.
    NotInGroup,
    /// WhatsApp refused it with 463 and no privacy token went with it (no valid tctoken, and
    /// no NCT salt or no LID for a cstoken): a first message to a contact without a token.
    PrivacyTokenRequired,
    /// WhatsApp refused it with 463 while the account's reach-out time-lock was active: new
    /// chats are barred until it ends.
    AccountRestricted,
    /// WhatsApp refused it with 463 although a privacy token went with it, and no time-lock was
    /// known: the token was not taken (a tctoken WhatsApp no longer honours, a cstoken from a
    /// stale NCT salt), or WhatsApp restricts the account without telling us. 463 is WA Web's
    /// `MissingTcToken`, "the recipient requires a valid tctoken or cstoken" (CLIENT-FEATURES
    /// §1.4, after whatsapp-rust `take_ack_waiter`); neither whatsmeow nor whatsapp-rust tells
    /// this case apart, so it is not called a time-lock.
    PrivacyTokenRejected,
    /// WhatsApp refused it with 475: the account's new-chat message cap for this cycle is used.
    NewChatCapReached,
    /// WhatsApp refused it with 421: the group's addressing mode changed under it.
    StaleGroup,
    /// WhatsApp refused it for another reason (its code is in the message).
    RefusedByWhatsApp,
    /// The account is not connected.
    NotConnected,
    /// WhatsApp did not answer a query the send needed.
    Unreachable,
    /// Its account was disconnected before it was sent.
    Cancelled,
    /// It waited past `WA_GATEWAY_SEND_TTL`.
    Expired,
    /// It kept failing on a passing error until the drain gave up on it.
    SendFailed,
    /// Its file could not be uploaded to WhatsApp's media servers (or is gone from our store).
    MediaUploadFailed,
}

impl SendFailure {
    /// Every failure, in declaration order.
    pub const ALL: &'static [SendFailure] = &[
        SendFailure::NotOnWhatsApp,
        SendFailure::InvalidMessage,
        SendFailure::InvalidTo,
        SendFailure::NotInGroup,
        SendFailure::PrivacyTokenRequired,
        SendFailure::AccountRestricted,
        SendFailure::PrivacyTokenRejected,
        SendFailure::NewChatCapReached,
        SendFailure::StaleGroup,
        SendFailure::RefusedByWhatsApp,
        SendFailure::NotConnected,
        SendFailure::Unreachable,
        SendFailure::Cancelled,
        SendFailure::Expired,
        SendFailure::SendFailed,
        SendFailure::MediaUploadFailed,
    ];

    /// What `e` means to a caller; None for our own side's failures (storage, keys), which
    /// are not the caller's to see.
    pub fn of(e: &SendError) -> Option<SendFailure> {
        Some(match e {
            SendError::NotOnWhatsApp(_) => SendFailure::NotOnWhatsApp,
            SendError::InvalidText(_) => SendFailure::InvalidMessage,
            SendError::UnsupportedRecipient(_) => SendFailure::InvalidTo,
            SendError::NotInGroup(_) => SendFailure::NotInGroup,
            // A token went with it: not a missing one. A time-lock known at the time makes it
            // `account_restricted` ([`Self::under`]).
            SendError::Refused {
                code: 463,
                attached: Some(_),
                ..
            } => SendFailure::PrivacyTokenRejected,
            SendError::Refused { code, .. } => SendFailure::refused(*code),
            SendError::AlreadyEnded {
                status: MessageStatus::Failed,
                code: Some(code),
                ..
            } => SendFailure::refused(*code),
            SendError::AlreadyEnded {
                status: MessageStatus::Cancelled,
                ..
            } => SendFailure::Cancelled,
            SendError::AlreadyEnded {
                status: MessageStatus::Expired,
                ..
            } => SendFailure::Expired,
            SendError::AlreadyEnded { .. } => SendFailure::SendFailed,
            SendError::NotConnected => SendFailure::NotConnected,
            SendError::Iq(_) => SendFailure::Unreachable,
            SendError::Signal(_)
            | SendError::Store(_)
            | SendError::Unexpected(_)
            | SendError::AppStateNotReady(_)
            | SendError::AppStateRefused(_) => return None,
        })
    }

    /// The failure of a send that trying again will not change; None while it may still go.
    pub fn final_of(e: &SendError) -> Option<SendFailure> {
        if e.is_final() {
            Some(SendFailure::of(e).unwrap_or(SendFailure::SendFailed))
        } else {
            None
        }
    }

    /// `self` as the account's reach-out time-lock `lock` (as the client knows it, asked
    /// again after every 463) makes it at `now` (unix seconds): a 463 while a time-lock is
    /// active is the lock, not a missing or refused token, whatever went with the message.
    pub fn under(self, lock: Option<&crate::client::ReachoutTimelock>, now: u64) -> SendFailure {
        match self {
            SendFailure::PrivacyTokenRequired | SendFailure::PrivacyTokenRejected
                if timelocked(lock, now).is_some() =>
            {
                SendFailure::AccountRestricted
            }
            f => f,
        }
    }

    /// The failure a WhatsApp ack error `code` on a stored message stands for, under `lock`
    /// at `now` (see [`Self::under`]).
    pub fn of_ack_code(
        code: u16,
        lock: Option<&crate::client::ReachoutTimelock>,
        now: u64,
    ) -> SendFailure {
        SendFailure::refused(code).under(lock, now)
    }

    fn refused(code: u16) -> SendFailure {
        match code {
            463 => SendFailure::PrivacyTokenRequired,
            475 => SendFailure::NewChatCapReached,
            421 => SendFailure::StaleGroup,
            _ => SendFailure::RefusedByWhatsApp,
        }
    }

    /// The stable `error.code`.
    pub fn code(self) -> &'static str {
        match self {
            SendFailure::NotOnWhatsApp => "not_on_whatsapp",
            SendFailure::InvalidMessage => "invalid_message",
            SendFailure::InvalidTo => "invalid_to",
            SendFailure::NotInGroup => "not_in_group",
            SendFailure::PrivacyTokenRequired => "privacy_token_required",
            SendFailure::AccountRestricted => "account_restricted",
            SendFailure::PrivacyTokenRejected => "privacy_token_rejected",
            SendFailure::NewChatCapReached => "new_chat_cap_reached",
            SendFailure::StaleGroup => "stale_group",
            SendFailure::RefusedByWhatsApp => "refused_by_whatsapp",
            SendFailure::NotConnected => "not_connected",
            SendFailure::Unreachable => "whatsapp_unreachable",
            SendFailure::Cancelled => "send_cancelled",
            SendFailure::Expired => "send_expired",
            SendFailure::SendFailed => "send_failed",
            SendFailure::MediaUploadFailed => "media_upload_failed",
        }
    }

    /// Reads [`Self::code`] back (also the names outbox rows kept before, `cancelled` and
    /// `expired`); None for a code this version does not know.
    pub fn from_code(code: &str) -> Option<SendFailure> {
        match code {
            "cancelled" => Some(SendFailure::Cancelled),
            "expired" => Some(SendFailure::Expired),
            c => SendFailure::ALL.iter().copied().find(|f| f.code() == c),
        }
    }

    /// The REST answer's HTTP status.
    pub fn http_status(self) -> u16 {
        match self {
            SendFailure::NotOnWhatsApp | SendFailure::InvalidMessage | SendFailure::InvalidTo => {
                400
            }
            SendFailure::NotInGroup => 403,
            SendFailure::NotConnected | SendFailure::Cancelled | SendFailure::Expired => 409,
            SendFailure::NewChatCapReached => 429,
            SendFailure::PrivacyTokenRequired
            | SendFailure::AccountRestricted
            | SendFailure::PrivacyTokenRejected
            | SendFailure::StaleGroup
            | SendFailure::RefusedByWhatsApp => 422,
            SendFailure::Unreachable | SendFailure::SendFailed => 503,
            SendFailure::MediaUploadFailed => 502,
        }
    }

    /// The state an outbox row ends in with this failure.
    pub fn outbox_state(self) -> OutboxState {
        match self {
            SendFailure::Cancelled => OutboxState::Cancelled,
            SendFailure::Expired => OutboxState::Expired,
            _ => OutboxState::Failed,
        }
    }

    /// What would lift this failure, for the refusals an agent cannot fix by trying again
    /// (a 463 is never retried automatically: a retry only burns the account's standing).
    /// `until`: when the time-lock or the capping cycle ends (unix seconds), when known.
    pub fn remedy(self, until: Option<u64>) -> Option<String> {
        let when = until.map(iso);
        Some(match self {
            SendFailure::PrivacyTokenRequired => "the contact must write to this account first (its privacy token then goes with replies), or a cstoken needs the NCT salt (app state sync or the history the phone shares at linking) and the contact's LID"
                .to_owned(),
            SendFailure::AccountRestricted => match when {
                Some(w) => format!(
                    "time-lock until {w}: WhatsApp bars this account's new chats until then (GET …/limits); meanwhile write only to contacts who wrote first"
                ),
                None => "WhatsApp restricts this account's new chats (a reach-out time-lock; GET …/limits says until when): write only to contacts who wrote first"
                    .to_owned(),
            },
            SendFailure::PrivacyTokenRejected => "a privacy token went with it and WhatsApp did not take it, with no reach-out time-lock known: the contact's tctoken may have lapsed (a message from the contact renews it) or the NCT salt behind the cstoken changed (app state sync brings the current one); GET …/limits shows whether WhatsApp has since restricted this account"
                .to_owned(),
            SendFailure::NewChatCapReached => match when {
                Some(w) => format!(
                    "new-chat quota used until {w} (the cycle's end, GET …/limits); meanwhile write only to contacts who wrote first"
                ),
                None => "the new-chat quota of this cycle is used: wait for the cycle to end (GET …/limits), or write to contacts who wrote first"
                    .to_owned(),
            },
            _ => return None,
        })
    }

    /// The JSON an outbox row keeps as its result (and a failed message row and its webhook
    /// show as `error`): the stable code, what happened, what would lift it and until when.
    pub fn result_json(self, message: &str) -> serde_json::Value {
        self.result_json_until(message, None)
    }

    /// [`Self::result_json`] for a limit that ends at `until` (unix seconds).
    pub fn result_json_until(self, message: &str, until: Option<u64>) -> serde_json::Value {
        let mut error = serde_json::json!({ "code": self.code(), "message": message });
        if let Some(r) = self.remedy(until) {
            error["remedy"] = serde_json::json!(r);
        }
        if let Some(u) = until {
            error["until"] = serde_json::json!(iso(u));
        }
        serde_json::json!({ "error": error })
    }
}

/// When the active time-lock in `lock` ends at `now`: Some(None) when active with no end.
pub(crate) fn timelocked(
    lock: Option<&crate::client::ReachoutTimelock>,
    now: u64,
) -> Option<Option<u64>> {
    lock.filter(|t| t.active && t.ends_at.is_none_or(|end| now < end))
        .map(|t| t.ends_at)
}

fn iso(unix: u64) -> String {
    crate::util::clock::iso8601_ms(i64::try_from(unix).unwrap_or(i64::MAX / 1000) * 1000)
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remedies_read_as_one_sentence() {
        for f in SendFailure::ALL {
            for until in [None, Some(1_800_000_000)] {
                if let Some(r) = f.remedy(until) {
                    assert!(!r.contains("  ") && !r.contains('\n'), "{f:?}: {r:?}");
                }
            }
        }
    }

    #[test]
    fn every_code_reads_back_and_names_one_failure() {
        let mut seen = std::collections::HashSet::new();
        for f in SendFailure::ALL {
            assert_eq!(SendFailure::from_code(f.code()), Some(*f));
            assert!(seen.insert(f.code()), "{} twice", f.code());
            assert!((400..600).contains(&f.http_status()));
        }
        assert_eq!(SendFailure::from_code("nonsense"), None);
    }

    #[test]
    fn refusals_by_code_and_ended_messages_map_as_the_direct_path_does() {
        let refused = |code| SendError::Refused {
            code,
            id: "X".into(),
            attached: None,
        };
        let ended = |status, code| SendError::AlreadyEnded {
            id: "X".into(),
            status,
            code,
        };
        for (e, want) in [
            (refused(463), SendFailure::PrivacyTokenRequired),
            (
                SendError::Refused {
                    code: 463,
                    id: "X".into(),
                    attached: Some(crate::client::AttachedToken::CsToken),
                },
                SendFailure::PrivacyTokenRejected,
            ),
            (refused(475), SendFailure::NewChatCapReached),
            (refused(421), SendFailure::StaleGroup),
            (refused(479), SendFailure::RefusedByWhatsApp),
            (
                ended(MessageStatus::Failed, Some(463)),
                SendFailure::PrivacyTokenRequired,
            ),
            (
                ended(MessageStatus::Cancelled, None),
                SendFailure::Cancelled,
            ),
            (ended(MessageStatus::Expired, None), SendFailure::Expired),
        ] {
            assert_eq!(SendFailure::final_of(&e), Some(want), "{e}");
        }
        assert_eq!(SendFailure::final_of(&SendError::NotConnected), None);
        // A token refused is the lock only while a time-lock is active; its remedy never
        // names a time-lock.
        let lock = crate::client::ReachoutTimelock {
            active: true,
            ends_at: Some(2_000),
            enforcement: "DEFAULT".into(),
        };
        let rejected = SendFailure::PrivacyTokenRejected;
        assert_eq!(rejected.under(None, 1_000), rejected);
        assert_eq!(rejected.under(Some(&lock), 3_000), rejected, "ended");
        assert_eq!(
            rejected.under(Some(&lock), 1_000),
            SendFailure::AccountRestricted
        );
        let remedy = rejected.remedy(None).unwrap();
        assert!(!remedy.contains("time-lock until"), "{remedy}");
        assert!(
            remedy.contains("tctoken") && remedy.contains("NCT salt"),
            "{remedy}"
        );
        assert_eq!(rejected.http_status(), 422);
        assert_eq!(
            SendFailure::Cancelled.outbox_state(),
            OutboxState::Cancelled
        );
        assert_eq!(
            SendFailure::PrivacyTokenRequired.outbox_state(),
            OutboxState::Failed
        );
    }
}
