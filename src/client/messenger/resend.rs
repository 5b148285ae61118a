//! Resends: the one owner of messages recorded `pending` (sent, or about to be, and never acked).
//! While a connection is up, one loop sends each again with its id — every pending message at
//! login, then each after a failure that may pass, with a doubling delay — and gives up on a
//! message (`failed`, stored and evented through the status path) when trying again cannot help
//! (not on WhatsApp, not in the group) or when it is older than the time allowed. Each message
//! stands alone: one that cannot go never holds up the others.
//!
//! Why here and not in the service's outbox: only the client knows whether a recorded message
//! went out and whether WhatsApp acked it, and this loop runs for every user of the client. The
//! outbox sends each of its rows once through the client, which never transmits a recorded id
//! again: it answers from the row (acked, ended, or pending and left to this loop). One attempt
//! per message runs at a time (a claim on (chat, id)), so a live send and a resend never put the
//! same message on the wire twice.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::{Messenger, SendError, Sent};
use crate::binary::{Jid, Server};
use crate::client::events::Event;
use crate::client::messages::{MessageStatus, StatusUpdate, StoredMessage};
use crate::client::store::CredsStore;

/// The longest wait between two tries of one message.
pub(super) const RESEND_MAX: Duration = Duration::from_secs(600);
/// How soon a message another attempt held is looked at again.
const IN_FLIGHT_RECHECK: Duration = Duration::from_secs(1);
/// Messages whose next try is remembered; beyond it the schedule starts over (every pending
/// message is then due at once, as after a login).
const SCHEDULED: usize = 10_000;

/// When each message that failed in a way that may pass is tried again: `after` the first
/// failure, doubling with each further one, up to [`RESEND_MAX`]. Pure (times are given), so
/// it is tested without a clock.
#[derive(Debug)]
pub(super) struct Schedule {
    after: Duration,
    next: HashMap<(Jid, String), (u32, Instant)>,
}

impl Schedule {
    pub(super) fn new(after: Duration) -> Schedule {
        Schedule {
            after,
            next: HashMap::new(),
        }
    }

    /// The delay before try `n + 1` after `n` failed tries.
    fn delay(&self, failures: u32) -> Duration {
        let doubled = self
            .after
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        doubled.min(RESEND_MAX.max(self.after))
    }

    /// Another try of `key` failed at `now`: when the next one is due.
    pub(super) fn failed(&mut self, key: (Jid, String), now: Instant) -> Instant {
        if self.next.len() >= SCHEDULED && !self.next.contains_key(&key) {
            self.next.clear();
        }
        let failures = self.next.get(&key).map_or(0, |(n, _)| *n) + 1;
        let due = now + self.delay(failures);
        self.next.insert(key, (failures, due));
        due
    }

    /// When `key` is due (None: now, it never failed).
    pub(super) fn due(&self, key: &(Jid, String)) -> Option<Instant> {
        self.next.get(key).map(|(_, due)| *due)
    }

    /// `key` is settled (acked or given up).
    pub(super) fn forget(&mut self, key: &(Jid, String)) {
        self.next.remove(key);
    }

    /// A new connection: everything pending is due now.
    pub(super) fn clear(&mut self) {
        self.next.clear();
    }
}

/// A message being sent: while held, no other attempt at the same (chat, id) transmits.
pub(super) struct Claim<'a, S: CredsStore> {
    messenger: &'a Messenger<S>,
    key: (Jid, String),
}

impl<S: CredsStore> Drop for Claim<'_, S> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.messenger.sending.lock() {
            s.remove(&self.key);
        }
    }
}

/// What one pass over the pending messages came to.
enum Pass {
    /// The next try is due then (None: nothing is waiting).
    Next(Option<Instant>),
    /// The connection is gone: the next one starts over.
    Disconnected,
}

impl<S: CredsStore> Messenger<S> {
    /// Claims message (`chat`, `id`) for one attempt; None while another attempt holds it.
    pub(super) fn claim(&self, chat: &Jid, id: &str) -> Option<Claim<'_, S>> {
        let key = (chat.clone(), id.to_owned());
        let fresh = self.sending.lock().ok()?.insert(key.clone());
        // Built only when taken (`then_some` would build and drop one, releasing the holder's).
        fresh.then(|| Claim {
            messenger: self,
            key,
        })
    }

    /// A send of (`chat`, `id`) ended without an ack: the resend loop tries it again later.
    pub(super) fn resend_later(&self, chat: &Jid, id: &str) {
        if let Ok(mut s) = self.resends.lock() {
            s.failed((chat.clone(), id.to_owned()), Instant::now());
        }
        self.resend_wake.notify_one();
    }

    /// The answer for a message already recorded, without sending it: acked (and beyond) or
    /// pending as it stands, an end as [`SendError::AlreadyEnded`]. A pending one is the
    /// resend loop's to send.
    pub(super) fn recorded(&self, row: &StoredMessage) -> Result<Sent, SendError> {
        if row.status.is_end() {
            return Err(SendError::AlreadyEnded {
                id: row.id.clone(),
                status: row.status,
                code: row.error,
            });
        }
        Ok(Sent {
            id: row.id.clone(),
            chat: row.chat.clone(),
            timestamp: row.timestamp,
            status: row.status,
        })
    }

    /// The resend loop of one connection: a pass at once (what a crash or a drop left
    /// pending), then one whenever a try is due or a send ended without an ack. It ends with
    /// the connection (its task is aborted then).
    pub(in crate::client) async fn resend_loop(&self) {
        if let Ok(mut s) = self.resends.lock() {
            s.clear();
        }
        loop {
            // Boxed: the loop idles far longer than it sends, and an inline pass (every send
            // path's state) would size the idle future of every connection (benches/README.md).
            let next = match Box::pin(self.resend_pass()).await {
                Pass::Disconnected => return,
                Pass::Next(next) => next,
            };
            let wake = self.resend_wake.notified();
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = wake => {}
                    }
                }
                None => wake.await,
            }
        }
    }

    /// Sends each pending message that is due and not being sent now; gives up on those that
    /// cannot go or are too old.
    async fn resend_pass(&self) -> Pass {
        let Some(account) = self.account() else {
            return Pass::Disconnected;
        };
        let pending = match self.store.pending_messages().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pending messages");
                return Pass::Next(Some(Instant::now() + self.resend_after));
            }
        };
        let mut next: Option<Instant> = None;
        let mut later = |at: Instant| next = Some(next.map_or(at, |n: Instant| n.min(at)));
        for row in pending {
            let key = (row.chat.clone(), row.id.clone());
            let now = Instant::now();
            if self.sending.lock().is_ok_and(|s| s.contains(&key)) {
                // A live send holds it (it may find the message recorded and leave it to us):
                // look again soon.
                later(now + self.resend_after.min(IN_FLIGHT_RECHECK));
                continue;
            }
            if let Some(due) = self.resends.lock().ok().and_then(|s| s.due(&key))
                && due > now
            {
                later(due);
                continue;
            }
            let age = self.clock.now_unix().saturating_sub(row.timestamp);
            if age >= self.give_up_after.as_secs() {
                tracing::warn!(
                    id = row.id,
                    age,
                    "pending message given up: never acked in time"
                );
                self.give_up(&row).await;
                continue;
            }
            let sent = if row.chat.server == Server::Group {
                self.send_group_row(&account, row.clone(), false).await
            } else {
                self.send_row(&account, row.clone(), false).await
            };
            match sent {
                // Acked, or it already climbed past pending.
                Ok(s) if s.status != MessageStatus::Pending => self.forget_resend(&key),
                // No ack in time: `send_row` scheduled the next try.
                Ok(_) => {
                    if let Some(due) = self.resends.lock().ok().and_then(|s| s.due(&key)) {
                        later(due);
                    }
                }
                Err(SendError::NotConnected) => return Pass::Disconnected,
                // Stored as failed by the ack, or ended before.
                Err(SendError::Refused { .. } | SendError::AlreadyEnded { .. }) => {
                    self.forget_resend(&key)
                }
                Err(e) if e.is_final() => {
                    tracing::warn!(id = row.id, error = %e, "pending message given up");
                    self.give_up(&row).await;
                }
                Err(e) => {
                    tracing::info!(id = row.id, error = %e, "pending message not resent; trying again later");
                    if let Ok(mut s) = self.resends.lock() {
                        later(s.failed(key, now));
                    }
                }
            }
        }
        Pass::Next(next)
    }

    fn forget_resend(&self, key: &(Jid, String)) {
        if let Ok(mut s) = self.resends.lock() {
            s.forget(key);
        }
    }

    /// Stops trying `row`: `failed` (stored, with its `message.status` event) and said.
    async fn give_up(&self, row: &StoredMessage) {
        self.forget_resend(&(row.chat.clone(), row.id.clone()));
        let update = StatusUpdate {
            chat: row.chat.clone(),
            id: row.id.clone(),
            device: None,
            status: MessageStatus::Failed,
            error: None,
            t: self.clock.now_unix(),
        };
        match self.store.update_status(&update).await {
            Ok(Some(s)) => self.publish(Event::Receipt {
                chat: row.chat.clone(),
                id: row.id.clone(),
                device: None,
                status: s,
                error: None,
            }),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, id = row.id, "cannot record a given-up message"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> (Jid, String) {
        (Jid::new("1", Server::User), id.to_owned())
    }

    #[test]
    fn tries_double_from_the_first_delay_up_to_the_cap_and_each_message_alone() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Duration::from_secs(10));
        assert_eq!(s.due(&key("a")), None, "never failed: due now");
        let waits: Vec<Duration> = (0..9).map(|_| s.failed(key("a"), t0) - t0).collect();
        assert_eq!(
            waits,
            [10, 20, 40, 80, 160, 320, 600, 600, 600].map(Duration::from_secs)
        );
        // Another message keeps its own count.
        assert_eq!(s.failed(key("b"), t0) - t0, Duration::from_secs(10));
        s.forget(&key("a"));
        assert_eq!(s.due(&key("a")), None);
        assert_eq!(s.due(&key("b")), Some(t0 + Duration::from_secs(10)));
        s.clear();
        assert_eq!(s.due(&key("b")), None);
    }

    #[tokio::test]
    async fn one_attempt_holds_a_message_and_a_refused_claim_leaves_it_held() {
        use std::sync::Arc;
        let m = Messenger::new(
            Arc::new(crate::client::store::MemoryCreds::default()),
            Arc::new(crate::client::link::Link::default()),
            Arc::new(crate::client::events::EventHub::default()),
            Arc::new(crate::util::clock::SystemClock),
            &crate::client::MessagingOptions::default(),
            None,
        );
        let chat = Jid::new("1", Server::User);
        let first = m.claim(&chat, "A").expect("free");
        // Refused, and the refusal does not release the first (nor hang on the lock).
        assert!(m.claim(&chat, "A").is_none());
        assert!(m.claim(&chat, "A").is_none());
        // Another chat's message with the same id is another message.
        let other = m.claim(&Jid::new("2", Server::User), "A").expect("free");
        drop(first);
        assert!(
            m.claim(&chat, "A").is_some(),
            "free again once the holder is done"
        );
        drop(other);
    }

    #[test]
    fn a_first_delay_past_the_cap_is_kept_and_the_schedule_stays_bounded() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Duration::from_secs(3600));
        assert_eq!(s.failed(key("a"), t0) - t0, Duration::from_secs(3600));
        let mut s = Schedule::new(Duration::from_millis(1));
        for i in 0..SCHEDULED + 5 {
            s.failed(key(&i.to_string()), t0);
        }
        assert!(s.next.len() <= SCHEDULED);
    }
}
