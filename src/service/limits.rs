//! WhatsApp's reach-out limits as the service tells them (issue 23): the account's time-lock and
//! new-chat message capping as its client last learnt them, and what the outbox does with a send
//! to a cold contact while either bars new chats (`WA_GATEWAY_COLD_SEND`: hold it until the
//! limit lifts, or refuse it at once).

use std::sync::atomic::Ordering;

use super::{Service, ServiceError};
use crate::client::{NewChatCapping, ReachoutTimelock};

/// What the outbox does with a send to a cold contact while the account is time-locked or
/// capped (`WA_GATEWAY_COLD_SEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColdSend {
    /// Keep it queued (`held`) until the lock lifts or the cycle resets.
    #[default]
    Hold,
    /// Refuse it at once, with why.
    Refuse,
}

impl ColdSend {
    /// Reads `hold` or `refuse`.
    pub fn parse(s: &str) -> Option<ColdSend> {
        match s {
            "hold" => Some(ColdSend::Hold),
            "refuse" => Some(ColdSend::Refuse),
            _ => None,
        }
    }

    /// The name, as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            ColdSend::Hold => "hold",
            ColdSend::Refuse => "refuse",
        }
    }
}

/// An account's reach-out limits now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The time-lock, once known (WhatsApp's notification, or asked after a 463).
    pub timelock: Option<ReachoutTimelock>,
    /// The new-chat capping, once known (asked at connect and after a 463/475, or notified).
    pub capping: Option<NewChatCapping>,
    /// What a cold send meets while a limit bars new chats.
    pub cold_send: ColdSend,
    /// Why new chats are barred now, if they are: `timelocked` or `capped`, and until when.
    pub barred: Option<(&'static str, Option<u64>)>,
}

/// Why new chats are barred at `now`, and until when, if they are.
pub fn barred(
    timelock: Option<&ReachoutTimelock>,
    capping: Option<&NewChatCapping>,
    now: u64,
) -> Option<(&'static str, Option<u64>)> {
    if let Some(t) = timelock
        && t.active
        && t.ends_at.is_none_or(|end| now < end)
    {
        return Some(("timelocked", t.ends_at));
    }
    if let Some(c) = capping
        && c.capped(now)
    {
        return Some(("capped", c.cycle_end));
    }
    None
}

impl Service {
    /// Sets what a cold send meets while new chats are barred.
    pub fn set_cold_send(&self, policy: ColdSend) {
        self.cold_send
            .store(policy == ColdSend::Refuse, Ordering::Relaxed);
    }

    /// What a cold send meets while new chats are barred.
    pub fn cold_send(&self) -> ColdSend {
        if self.cold_send.load(Ordering::Relaxed) {
            ColdSend::Refuse
        } else {
            ColdSend::Hold
        }
    }

    /// The reach-out limits of (subaccount, agent) as its client knows them.
    pub async fn limits(&self, subaccount: &str, agent: &str) -> Result<Limits, ServiceError> {
        let Some(row) = self.store.connection(subaccount, agent).await? else {
            return Err(ServiceError::NotFound);
        };
        let session = self.session(row.account);
        let timelock = session.as_ref().and_then(|s| s.client.reachout_timelock());
        let capping = session.as_ref().and_then(|s| s.client.new_chat_capping());
        let now = crate::util::clock::now_ms() / 1000;
        Ok(Limits {
            barred: barred(timelock.as_ref(), capping.as_ref(), now),
            timelock,
            capping,
            cold_send: self.cold_send(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_bars_until_it_ends_and_a_used_quota_until_the_cycle_does() {
        let lock = ReachoutTimelock {
            active: true,
            ends_at: Some(100),
            enforcement: "DEFAULT".into(),
        };
        assert_eq!(
            barred(Some(&lock), None, 50),
            Some(("timelocked", Some(100)))
        );
        assert_eq!(barred(Some(&lock), None, 100), None);
        let cap = NewChatCapping {
            total_quota: Some(5),
            used_quota: Some(5),
            cycle_end: Some(200),
            ..Default::default()
        };
        assert_eq!(barred(None, Some(&cap), 150), Some(("capped", Some(200))));
        assert_eq!(barred(None, Some(&cap), 200), None);
        let room = NewChatCapping {
            used_quota: Some(4),
            ..cap
        };
        assert_eq!(barred(None, Some(&room), 150), None);
        assert_eq!(ColdSend::parse("refuse"), Some(ColdSend::Refuse));
        assert_eq!(ColdSend::parse("later"), None);
    }
}
