//! The outbox: every accepted send is a row first (with its idempotency key and the WhatsApp id
//! it keeps), then one drain per account sends the rows in order, at a pace — messages per
//! minute with jitter, a burst allowance and a minimum gap per chat — so a burst of API calls is
//! queued, not blasted (the peers' most reported cause of restricted accounts). A row left
//! queued by a crash goes out after the restart with the same id, once: if its message was
//! recorded before the crash, the client answers from that record and never transmits it
//! again (a pending one is the client's resend loop's to send; one owner for resends). A row
//! that waited past the send TTL expires unsent; `disconnect` cancels what is queued.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{SendFailure, Service, ServiceError, Session, now_ms, wire_user};
use crate::binary::Jid;
use crate::client::{ConnState, SendError};
use crate::store::OutboxState;
use crate::store::connections::ConnectionRow;
use crate::store::outbox::{NewSend, OutboxRow};

/// How often a busy drain also expires its held sends (an idle one does each time it idles).
const HELD_CHECK: Duration = Duration::from_secs(30);
/// Held sends read per pass (the store's page).
const HELD_PAGE: usize = 1000;

/// How fast one account's outbox drains.
#[derive(Debug, Clone, PartialEq)]
pub struct Pacing {
    /// Messages per minute, sustained.
    pub per_minute: u32,
    /// Messages that may go at once after a quiet spell.
    pub burst: u32,
    /// Least time between two messages to the same chat.
    pub chat_gap: Duration,
    /// Random extra delay, as a fraction of the sustained interval (0–1).
    pub jitter: f64,
    /// How long a send request waits for WhatsApp's ack before answering `pending`.
    pub wait: Duration,
}

impl Default for Pacing {
    fn default() -> Pacing {
        Pacing {
            per_minute: 60,
            burst: 20,
            chat_gap: Duration::from_millis(1000),
            jitter: 0.2,
            wait: Duration::from_secs(15),
        }
    }
}

/// Attempts at a send that fails on our side or WhatsApp's silence before it is marked failed.
const MAX_ATTEMPTS: u32 = 8;

/// A token bucket with per-chat gaps.
struct Pacer {
    pacing: Pacing,
    tokens: f64,
    last: Instant,
    chats: HashMap<String, Instant>,
}

impl Pacer {
    fn new(pacing: Pacing) -> Pacer {
        Pacer {
            tokens: f64::from(pacing.burst.max(1)),
            last: Instant::now(),
            chats: HashMap::new(),
            pacing,
        }
    }

    /// Waits until a message to `chat` may go.
    async fn admit(&mut self, chat: &str) {
        let rate = f64::from(self.pacing.per_minute.max(1)) / 60.0;
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate)
            .min(f64::from(self.pacing.burst.max(1)));
        self.last = now;
        if self.tokens < 1.0 {
            let wait = (1.0 - self.tokens) / rate;
            let jitter = rand::random::<f64>() * self.pacing.jitter.clamp(0.0, 1.0) / rate;
            tokio::time::sleep(Duration::from_secs_f64(wait + jitter)).await;
            self.tokens = 1.0;
            self.last = Instant::now();
        }
        self.tokens -= 1.0;
        if let Some(at) = self.chats.get(chat) {
            let since = at.elapsed();
            if since < self.pacing.chat_gap {
                tokio::time::sleep(self.pacing.chat_gap - since).await;
            }
        }
        if self.chats.len() > 10_000 {
            self.chats.clear();
        }
        self.chats.insert(chat.to_owned(), Instant::now());
    }
}

impl Service {
    /// Accepts a send from (subaccount, agent): recorded (with its idempotency key) before
    /// anything else; the account's drain sends it. A retried request with the same key gets
    /// the first one's row, and nothing is sent twice.
    pub async fn queue_send(
        self: &Arc<Self>,
        subaccount: &str,
        agent: &str,
        to: &Jid,
        text: &str,
        user: Option<&str>,
        idem_key: Option<&str>,
    ) -> Result<OutboxRow, ServiceError> {
        self.queue(subaccount, agent, to, text, None, user, idem_key)
            .await
    }

    /// Accepts a media send (its file already in the media store, `media.sha256`), `caption`
    /// its text, as [`Service::queue_send`] does: a retried request with the same key gets the
    /// first one's row, so the file is uploaded to WhatsApp once.
    #[allow(clippy::too_many_arguments)]
    pub async fn queue_media_send(
        self: &Arc<Self>,
        subaccount: &str,
        agent: &str,
        to: &Jid,
        caption: &str,
        media: &super::media::OutboxMedia,
        user: Option<&str>,
        idem_key: Option<&str>,
    ) -> Result<OutboxRow, ServiceError> {
        self.queue(subaccount, agent, to, caption, Some(media), user, idem_key)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn queue(
        self: &Arc<Self>,
        subaccount: &str,
        agent: &str,
        to: &Jid,
        text: &str,
        media: Option<&super::media::OutboxMedia>,
        user: Option<&str>,
        idem_key: Option<&str>,
    ) -> Result<OutboxRow, ServiceError> {
        if let Some(key) = idem_key
            && key.starts_with(super::webhooks::REPLY_KEY_PREFIX)
        {
            return Err(ServiceError::ReservedIdempotencyKey(
                super::webhooks::REPLY_KEY_PREFIX,
            ));
        }
        let Some(row) = self.store.connection(subaccount, agent).await? else {
            return Err(ServiceError::NotFound);
        };
        let session = self.session(row.account);
        if let Some(key) = idem_key
            && let Some(done) = self.store.find_send(row.account, key).await?
        {
            return same_request(done, to, text, media);
        }
        let state = session.as_ref().map(|s| s.client.state());
        if state != Some(ConnState::Connected) {
            let code = state.as_ref().map(super::state_code).unwrap_or(row.code);
            return Err(ServiceError::NotConnected(code.as_str().to_owned()));
        }
        let queued = self
            .enqueue_with(&row, to, text, media, user, idem_key)
            .await?;
        // A concurrent request with the same key may have been recorded first.
        same_request(queued, to, text, media)
    }

    /// Records a send for `row`'s account, whatever its state now (the drain sends it once the
    /// account is connected). A known `idem_key` returns the first send's row.
    pub(super) async fn enqueue(
        &self,
        row: &ConnectionRow,
        to: &Jid,
        text: &str,
        user: Option<&str>,
        idem_key: Option<&str>,
    ) -> Result<OutboxRow, ServiceError> {
        self.enqueue_with(row, to, text, None, user, idem_key).await
    }

    async fn enqueue_with(
        &self,
        row: &ConnectionRow,
        to: &Jid,
        text: &str,
        media: Option<&super::media::OutboxMedia>,
        user: Option<&str>,
        idem_key: Option<&str>,
    ) -> Result<OutboxRow, ServiceError> {
        let own = row.phone_number.clone().unwrap_or_default();
        let message_id = crate::client::new_message_id(crate::util::clock::now_ms() / 1000, &own);
        let media_json = match media {
            Some(m) => Some((
                serde_json::to_string(m)
                    .map_err(|e| ServiceError::Blob(format!("unwritable media send: {e}")))?,
                crate::store::blobs::BlobId::parse(&m.sha256)
                    .ok_or_else(|| ServiceError::Blob("unreadable file id".into()))?
                    .0,
            )),
            None => None,
        };
        let (queued, fresh) = self
            .store
            .enqueue_send(
                row.account,
                &NewSend {
                    idem_key,
                    message_id: &message_id,
                    to: &to.to_string(),
                    body: text,
                    user_id: user,
                    now_ms: now_ms(),
                    media: media_json.as_ref().map(|(j, b)| (j.as_str(), *b)),
                },
            )
            .await?;
        if fresh {
            self.wake(row.account);
        }
        Ok(queued)
    }

    /// Waits up to `wait` for send `pk` to be acked or refused; returns its row as it is then.
    /// A request dropped while it waits (its client went away, or it timed out) stops waiting
    /// with it: the wake-up it held goes when its last waiter does.
    pub async fn await_send(&self, pk: i64, wait: Duration) -> Result<OutboxRow, ServiceError> {
        let notify = self.finished.hold(pk);
        let deadline = Instant::now() + wait;
        loop {
            let notified = notify.notified();
            let row = self
                .store
                .send_row(pk)
                .await?
                .ok_or(ServiceError::SendGone)?;
            // A held send answers at once: it waits for a limit to lift, not for the drain.
            if row.state != OutboxState::Queued || row.hold.is_some() || Instant::now() >= deadline
            {
                return Ok(row);
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// Wakes `account`'s drain, if one runs (one that starts reads the queue first).
    pub(super) fn wake(&self, account: crate::store::AccountId) {
        self.wakers.with(account, |n| n.notify_one());
    }

    /// Wakes the requests waiting for send `pk`, if any.
    pub(super) fn finished(&self, pk: i64) {
        self.finished.with(pk, |n| n.notify_waiters());
    }

    /// Sends an account's queued rows in order, at its pace, while its session lives.
    pub(super) async fn drain(self: Arc<Self>, session: Arc<Session>) {
        let account = session.account;
        let wake = self.wakers.hold(account);
        let paced = !self.unpaced.iter().any(|s| *s == session.subaccount);
        let mut pacer = Pacer::new(self.pacing.clone());
        let mut attempts = 0u32;
        // Held sends expire at the TTL even while warm sends keep the queue busy.
        let mut held_checked = Instant::now();
        loop {
            let current = self
                .session(account)
                .is_some_and(|s| Arc::ptr_eq(&s, &session));
            if !current {
                return;
            }
            let state = session
                .client
                .wait_for(|s| *s == ConnState::Connected || s.is_final())
                .await;
            if state.is_final() {
                return;
            }
            if held_checked.elapsed() >= HELD_CHECK {
                held_checked = Instant::now();
                self.expire_held(account).await;
            }
            let row = match self.store.next_send(account).await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    // Held sends honour the send TTL too: past it they expire unsent, as
                    // queued ones do; the drain wakes for the next one due.
                    held_checked = Instant::now();
                    let next_due = self.expire_held(account).await;
                    // Held sends go again once nothing bars new chats.
                    if self.limits_barred(&session).is_none()
                        && self.store.release_holds(account).await.unwrap_or(0) > 0
                    {
                        continue;
                    }
                    let mut idle = Duration::from_secs(30);
                    if let Some(due) = next_due {
                        let ms = u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0);
                        idle = idle.min(Duration::from_millis(ms.saturating_add(1)));
                    }
                    let _ = tokio::time::timeout(idle, wake.notified()).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox unreadable; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Ok(to) = row.to.parse::<Jid>() else {
                let f = SendFailure::InvalidTo;
                self.finish(
                    &row,
                    f.outbox_state(),
                    f.result_json("unreadable recipient"),
                )
                .await;
                continue;
            };
            // Past its time it expires unsent (a row whose message is recorded is not expired
            // here: the client answers for that message).
            let age_ms = now_ms().saturating_sub(row.created_ms);
            if u128::try_from(age_ms).unwrap_or(0) >= self.send_ttl.as_millis() {
                match self.store.expire_send(row.pk).await {
                    Ok(true) => {
                        self.finished(row.pk);
                        continue;
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot expire a send"),
                }
            }
            // The gate: a cold contact while new chats are barred is held or refused, never
            // sent (a refused first contact costs the account's standing).
            if let Some((reason, until)) = self.limits_barred(&session)
                && session.client.warmth(&to).await == crate::client::Warmth::Cold
            {
                let until_iso = until.map(|u| {
                    crate::util::clock::iso8601_ms(
                        i64::try_from(u).unwrap_or(i64::MAX / 1000) * 1000,
                    )
                });
                match self.cold_send() {
                    super::limits::ColdSend::Hold => {
                        let hold = serde_json::json!({ "reason": reason, "until": until_iso });
                        if let Err(e) = self.store.hold_send(row.pk, &hold.to_string()).await {
                            tracing::warn!(error = %e, "cannot hold a send");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        self.finished(row.pk);
                    }
                    super::limits::ColdSend::Refuse => {
                        let f = if reason == "capped" {
                            SendFailure::NewChatCapReached
                        } else {
                            SendFailure::AccountRestricted
                        };
                        let result = f.result_json_until(
                            &format!(
                                "not sent: the contact is cold and new chats are barred ({reason})"
                            ),
                            until,
                        );
                        self.finish(&row, f.outbox_state(), result).await;
                    }
                }
                continue;
            }
            if paced {
                pacer.admit(&row.to).await;
            }
            let outcome = match &row.media {
                None => session
                    .client
                    .send_text_with_id(&to, &row.body, &row.message_id)
                    .await
                    .map_err(super::media::MediaSendError::Send),
                Some(media) => self.send_media_row(&session, &row, &to, media).await,
            };
            let outcome = match outcome {
                Ok(sent) => Ok(sent),
                Err(super::media::MediaSendError::Send(e)) => Err(e),
                // A record that cannot be read now never will be: failed at once, with why,
                // so the sends behind it go.
                Err(super::media::MediaSendError::Unreadable(why)) => {
                    tracing::warn!(pk = row.pk, "media send record unreadable; failed");
                    attempts = 0;
                    let f = SendFailure::MediaUploadFailed;
                    self.finish(&row, f.outbox_state(), f.result_json(&why))
                        .await;
                    continue;
                }
                Err(super::media::MediaSendError::Media(e)) => {
                    attempts += 1;
                    tracing::warn!(error = %e, attempts, "media upload failed");
                    if e.is_permanent() || attempts >= MAX_ATTEMPTS {
                        attempts = 0;
                        let f = SendFailure::MediaUploadFailed;
                        self.finish(&row, f.outbox_state(), f.result_json(&e.to_string()))
                            .await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(250 << attempts.min(7))).await;
                    }
                    continue;
                }
            };
            match outcome {
                Ok(sent) => {
                    attempts = 0;
                    let result = serde_json::json!({
                        "messageId": super::message_id(&to, &sent.id, true),
                        "to": wire_user(&to),
                        "message": row.body,
                        "timestamp": sent.timestamp,
                        "status": sent.status.as_str(),
                    });
                    self.finish(&row, OutboxState::Done, result).await;
                    self.activity(
                        &session,
                        row.user_id.as_deref(),
                        "whatsapp_message_sent",
                        serde_json::json!({
                            "messageId": super::message_id(&to, &sent.id, true),
                            "to": wire_user(&to),
                            "status": sent.status.as_str(),
                        }),
                    )
                    .await;
                }
                Err(e) => match SendFailure::final_of(&e) {
                    // Final: never tried again (a 463 or 475 retried only burns the
                    // account's standing); the answer says what would lift it.
                    Some(f) => {
                        attempts = 0;
                        let result = self.refusal(&session, f, &e.to_string());
                        self.finish(&row, f.outbox_state(), result).await;
                    }
                    None if matches!(e, SendError::NotConnected) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    None => {
                        attempts += 1;
                        tracing::warn!(error = %e, attempts, "send failed; trying again");
                        if attempts >= MAX_ATTEMPTS {
                            attempts = 0;
                            let f = SendFailure::SendFailed;
                            self.finish(&row, f.outbox_state(), f.result_json(&e.to_string()))
                                .await;
                        } else {
                            let backoff = Duration::from_millis(250 << attempts.min(7));
                            tokio::time::sleep(backoff).await;
                        }
                    }
                },
            }
        }
    }

    /// The result of a send refused with `f`, read under the account's limits as its client
    /// knows them now (it asks them again after a 463 or 475, before the send answers): a
    /// 463 while time-locked is `account_restricted`, until the lock ends.
    fn refusal(&self, session: &Session, f: SendFailure, message: &str) -> serde_json::Value {
        let now = crate::util::clock::now_ms() / 1000;
        let lock = session.client.reachout_timelock();
        let f = f.under(lock.as_ref(), now);
        let until = match f {
            SendFailure::AccountRestricted => {
                super::failure::timelocked(lock.as_ref(), now).flatten()
            }
            SendFailure::NewChatCapReached => session
                .client
                .new_chat_capping()
                .and_then(|c| c.cycle_end)
                .filter(|end| *end > now),
            _ => None,
        };
        f.result_json_until(message, until)
    }

    /// Expires `account`'s held sends past the send TTL (each with its `message.status`
    /// event, as a queued send's expiry); returns when the next held one is due (unix ms).
    async fn expire_held(&self, account: crate::store::AccountId) -> Option<i64> {
        let ttl = i64::try_from(self.send_ttl.as_millis()).unwrap_or(i64::MAX);
        let held = match self.store.held_sends(account).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the held sends");
                return None;
            }
        };
        let mut next: Option<i64> = None;
        // A full page of them all past due: more may be, so the next is due now.
        if held.len() >= HELD_PAGE && held.iter().all(|(_, c)| c.saturating_add(ttl) <= now_ms()) {
            next = Some(now_ms());
        }
        for (pk, created_ms) in held {
            let due = created_ms.saturating_add(ttl);
            if due > now_ms() {
                next = Some(next.map_or(due, |n| n.min(due)));
                continue;
            }
            match self.store.expire_send(pk).await {
                Ok(true) => {
                    self.finished(pk);
                    self.wake_webhooks();
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot expire a held send"),
            }
        }
        next
    }

    /// Why new chats are barred for `session`'s account now, and until when, if they are.
    fn limits_barred(&self, session: &Session) -> Option<(&'static str, Option<u64>)> {
        super::limits::barred(
            session.client.reachout_timelock().as_ref(),
            session.client.new_chat_capping().as_ref(),
            crate::util::clock::now_ms() / 1000,
        )
    }

    async fn finish(&self, row: &OutboxRow, state: OutboxState, result: serde_json::Value) {
        if let Err(e) = self
            .store
            .finish_send(row.pk, state, &result.to_string())
            .await
        {
            tracing::warn!(error = %e, "cannot record a send's outcome");
        }
        self.finished(row.pk);
    }
}

/// `row`, the send an idempotency key named, if it is the one asked for again (same recipient,
/// same text, as Stripe's keys: a key names one request); else the key was reused.
fn same_request(
    row: OutboxRow,
    to: &Jid,
    text: &str,
    media: Option<&super::media::OutboxMedia>,
) -> Result<OutboxRow, ServiceError> {
    let file = |json: &str| {
        serde_json::from_str::<super::media::OutboxMedia>(json)
            .ok()
            .map(|m| m.sha256)
    };
    let same_file = match (&row.media, media) {
        (None, None) => true,
        (Some(kept), Some(asked)) => file(kept).as_deref() == Some(asked.sha256.as_str()),
        _ => false,
    };
    if row.to == to.to_string() && row.body == text && same_file {
        Ok(row)
    } else {
        Err(ServiceError::IdempotencyKeyReused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_the_pace_holds_and_a_chat_waits_its_gap() {
        let mut p = Pacer::new(Pacing {
            per_minute: 60,
            burst: 3,
            chat_gap: Duration::from_secs(5),
            jitter: 0.0,
            wait: Duration::ZERO,
        });
        let t0 = Instant::now();
        for chat in ["a", "b", "c"] {
            p.admit(chat).await;
        }
        assert_eq!(t0.elapsed(), Duration::ZERO, "the burst goes at once");
        p.admit("d").await;
        assert_eq!(t0.elapsed(), Duration::from_secs(1), "then one a second");
        p.admit("e").await;
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
        // `a` was last written at 0 s: its gap of 5 s holds it even with a token at hand.
        tokio::time::advance(Duration::from_secs(1)).await;
        p.admit("a").await;
        assert_eq!(t0.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_only_ever_adds_delay_within_its_bound() {
        let mut p = Pacer::new(Pacing {
            per_minute: 60,
            burst: 1,
            chat_gap: Duration::ZERO,
            jitter: 0.5,
            wait: Duration::ZERO,
        });
        p.admit("a").await;
        let t0 = Instant::now();
        for i in 0..20 {
            let before = Instant::now();
            p.admit(&i.to_string()).await;
            let waited = before.elapsed();
            assert!(
                waited >= Duration::from_secs(1) && waited <= Duration::from_millis(1500),
                "{waited:?}"
            );
        }
        assert!(t0.elapsed() > Duration::from_secs(20));
    }
}
