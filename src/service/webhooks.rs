//! Webhook delivery: one dispatcher drains the durable queue the store fills (in the same
//! transactions as the messages, status changes and connection changes it announces). Each
//! chat's events go out one at a time in commit order, many chats at once; a failed attempt
//! waits an exponential backoff with jitter; an event still failing after `dead_after` is
//! dead-lettered, listed by the API, and can be redelivered. Delivery is at least once: the
//! receiver deduplicates by the event id. Each attempt is signed afresh over its time and the
//! body (`t=<unix>,v1=<hex>`, Stripe's scheme), so a receiver can refuse replays, while the body
//! stays byte-identical on every retry. An answer is taken once it is read whole; a
//! `{"reply": "…"}` answer to an inbound message is queued in the outbox under an idempotency
//! key derived from the event id, before the event is marked delivered, so a redelivery never
//! answers twice; a reply not sent is recorded with why. Attempts connect only to public
//! addresses unless private ones are allowed (`egress`).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Service, ServiceError, egress, now_ms, wire_user};
use crate::binary::Jid;
use crate::client::messages::StoredMessage;
use crate::client::messenger::MAX_TEXT_BYTES;
use crate::store::connections::ConnectionRow;
use crate::store::webhooks::{
    self as kinds, Attempt, FailureKind, ReplyIgnored, Webhook, WebhookEvent,
};
use crate::store::{AccountId, DeliveryState};
use crate::util::clock::iso8601_ms;
use tokio::sync::mpsc;

/// The header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>`.
pub const SIGNATURE_HEADER: &str = "x-wa-gateway-signature";
/// The header carrying the event id (the body's `id`).
pub const EVENT_ID_HEADER: &str = "x-wa-gateway-event-id";
/// The header carrying the event name (the body's `event`).
pub const EVENT_HEADER: &str = "x-wa-gateway-event";
/// The header carrying the attempt number (1 for the first).
pub const ATTEMPT_HEADER: &str = "x-wa-gateway-attempt";

/// The idempotency keys of webhook replies start with this (then the event id); REST callers
/// may not use it, so no request can take or block a reply's key.
pub const REPLY_KEY_PREFIX: &str = "webhook-reply:";

/// Most bytes of a receiver's answer: room for the longest reply (`MAX_TEXT_BYTES` of text)
/// escaped at its worst, every character as `\uXXXX` (RFC 8259 §7 lets a receiver escape any
/// character: six bytes for a one-byte character; a two-, three- or four-byte one takes six or
/// twelve), plus 4 KiB for the object around it. A longer answer is not read: the attempt fails.
pub const MAX_ANSWER: usize = 6 * MAX_TEXT_BYTES + 4096;

/// How webhooks are delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    /// How long one attempt may take.
    pub timeout: Duration,
    /// The first retry's delay; each next one doubles it.
    pub retry_base: Duration,
    /// The longest delay between two attempts.
    pub retry_max: Duration,
    /// How long an event keeps being tried before it is dead-lettered.
    pub dead_after: Duration,
    /// Most attempts in flight at once (over every account).
    pub concurrency: usize,
    /// Most attempts in flight at once for one account.
    pub per_account: usize,
    /// How long delivered events are kept (for the deliveries listing) before they are pruned.
    pub retain: Duration,
    /// Whether webhooks may reach loopback, private, link-local, metadata and other
    /// non-public addresses (a deployment whose receivers are on its own network, or the
    /// offline simulator). Off, such a URL is refused when set and at each attempt, checked on
    /// the address actually connected to.
    pub allow_private: bool,
}

impl Default for WebhookSettings {
    fn default() -> WebhookSettings {
        WebhookSettings {
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
            dead_after: Duration::from_secs(24 * 3600),
            concurrency: 64,
            per_account: 8,
            retain: Duration::from_secs(7 * 24 * 3600),
            allow_private: false,
        }
    }
}

impl WebhookSettings {
    /// The delay before attempt `attempts + 1`: base·2^(attempts−1), capped, then scaled by a
    /// random factor in [0.5, 1) so receivers coming back are not hit by every sender at once.
    fn backoff(&self, attempts: u32) -> Duration {
        let exp = self
            .retry_base
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
            .min(self.retry_max);
        exp.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }
}

/// `t=<t>,v1=<hex>`: the signature header's value for `body` sent at `t` (unix seconds) under
/// `secret`, where `v1` is HMAC-SHA256 over `t`, a dot and the body (Stripe's scheme: the
/// receiver refuses a `t` too old, so a captured request cannot be replayed later).
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={t},v1={}",
        crate::util::hex::encode(&mac.finalize().into_bytes())
    )
}

/// A webhook as the API shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookView {
    /// Where events go.
    pub url: String,
    /// The events it gets.
    pub events: Vec<String>,
    /// Who set it first.
    pub created_by: Option<String>,
    /// When it was first set (unix ms).
    pub created_at: i64,
    /// When it was last set (unix ms).
    pub updated_at: i64,
}

impl From<Webhook> for WebhookView {
    fn from(w: Webhook) -> WebhookView {
        WebhookView {
            url: w.url,
            events: w.events,
            created_by: w.created_by,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// Where an account's events go, with what names them; or why they cannot go.
type Target = Result<(Arc<Webhook>, Arc<ConnectionRow>), String>;

/// What became of one attempt.
enum Outcome {
    /// Taken; its reply, if it was not sent, and why.
    Delivered { reply_ignored: Option<ReplyIgnored> },
    /// Not taken: how, with the receiver's status if it answered, and the detail.
    Failed {
        kind: FailureKind,
        status: Option<u16>,
        error: String,
    },
}

fn failed(kind: FailureKind, status: Option<u16>, error: impl Into<String>) -> Outcome {
    Outcome::Failed {
        kind,
        status,
        error: error.into(),
    }
}

impl Service {
    /// Sets (subaccount, agent)'s webhook; events already waiting go to the new URL.
    pub async fn set_webhook(
        &self,
        subaccount: &str,
        agent: &str,
        url: &str,
        secret: &str,
        events: &[&str],
        user: Option<&str>,
    ) -> Result<WebhookView, ServiceError> {
        if !self.webhook_settings.allow_private
            && let Some(ip) = egress::refused_literal(url)
        {
            return Err(ServiceError::WebhookUrlNotAllowed(ip));
        }
        // Set before the first `connect`, it hears that connection's events too.
        let account = self.account_within_cap(subaccount, agent).await?;
        self.store
            .set_webhook(account, url, secret.as_bytes(), events, user)
            .await?;
        self.has_webhooks.store(true, Relaxed);
        self.webhook_wake.notify_one();
        let hook = self.store.webhook(account).await?;
        hook.map(WebhookView::from).ok_or(ServiceError::NotFound)
    }

    /// (subaccount, agent)'s webhook.
    pub async fn webhook(
        &self,
        subaccount: &str,
        agent: &str,
    ) -> Result<WebhookView, ServiceError> {
        let account = self
            .account(subaccount, agent, ServiceError::NoWebhook)
            .await?;
        let hook = self.store.webhook(account).await?;
        hook.map(WebhookView::from).ok_or(ServiceError::NoWebhook)
    }

    /// Removes (subaccount, agent)'s webhook and what still waits for it.
    pub async fn delete_webhook(&self, subaccount: &str, agent: &str) -> Result<(), ServiceError> {
        let account = self
            .account(subaccount, agent, ServiceError::NoWebhook)
            .await?;
        if self.store.delete_webhook(account).await? {
            Ok(())
        } else {
            Err(ServiceError::NoWebhook)
        }
    }

    /// (subaccount, agent)'s webhook events in `state` (all when None), newest first.
    pub async fn webhook_deliveries(
        &self,
        subaccount: &str,
        agent: &str,
        state: Option<DeliveryState>,
        limit: u32,
        skip: u32,
    ) -> Result<Vec<WebhookEvent>, ServiceError> {
        let account = self
            .account(subaccount, agent, ServiceError::NoWebhook)
            .await?;
        Ok(self
            .store
            .webhook_events(account, state, limit, skip)
            .await?)
    }

    /// Queues event `id` of (subaccount, agent) again, same id and body, due now.
    pub async fn redeliver(
        &self,
        subaccount: &str,
        agent: &str,
        id: &str,
    ) -> Result<WebhookEvent, ServiceError> {
        let account = self
            .account(subaccount, agent, ServiceError::NoEvent)
            .await?;
        match self.store.redeliver_webhook_event(account, id).await? {
            Some(e) => {
                self.webhook_wake.notify_one();
                Ok(e)
            }
            None => match self.store.webhook_event(account, id).await? {
                // Waiting already: nothing to do, and saying so is the truth.
                Some(e) => Ok(e),
                None => Err(ServiceError::NoEvent),
            },
        }
    }

    /// The account of (subaccount, agent), or `missing` when it was never used.
    async fn account(
        &self,
        subaccount: &str,
        agent: &str,
        missing: ServiceError,
    ) -> Result<crate::store::AccountId, ServiceError> {
        self.store
            .find_account(subaccount, agent)
            .await?
            .ok_or(missing)
    }

    /// Account `account`'s webhook and connection row.
    async fn target(&self, account: AccountId) -> Target {
        let hook = match self.store.webhook(account).await {
            Ok(Some(h)) => h,
            Ok(None) => return Err("no webhook is set".into()),
            Err(e) => return Err(format!("storage: {e}")),
        };
        match self.store.connection_by_account(account).await {
            Ok(Some(c)) => Ok((Arc::new(hook), Arc::new(c))),
            Ok(None) => Err("no connection for the account".into()),
            Err(e) => Err(format!("storage: {e}")),
        }
    }

    /// Wakes the dispatcher when something may have been queued (there is a webhook at all).
    pub(super) fn wake_webhooks(&self) {
        if self.has_webhooks.load(Relaxed) {
            self.webhook_wake.notify_one();
        }
    }

    /// The body of event `e`, as the receiver gets it; `message` is the row it is about
    /// (read for the whole batch), `ctx` both names of the users the batch names and why its
    /// failed sends failed (read for the whole batch too). Every contact named carries both
    /// forms beside it: `toPn`/`toLid` beside `to`, `byPn`/`byLid` beside `by`, and the
    /// message's own `fromPn`/`fromLid`/`toPn`/`toLid`.
    async fn render(
        &self,
        e: &WebhookEvent,
        conn: &ConnectionRow,
        message: Option<(StoredMessage, Option<i64>)>,
        ctx: &super::RowContext,
    ) -> Result<String, ServiceError> {
        let data = match e.kind.as_str() {
            // A send that ended before its message was recorded (cancelled, expired): the
            // event carries the recipient and the id instead of a message row.
            kinds::MESSAGE_STATUS if e.message_pk.is_none() => {
                let unsent: serde_json::Value = e
                    .data
                    .as_deref()
                    .and_then(|d| serde_json::from_str(d).ok())
                    .ok_or(ServiceError::NotFound)?;
                let to: crate::binary::Jid = unsent["to"]
                    .as_str()
                    .and_then(|t| t.parse().ok())
                    .ok_or(ServiceError::NotFound)?;
                let id = unsent["id"].as_str().ok_or(ServiceError::NotFound)?;
                let mut data = json!({
                    "messageId": super::message_id(&to, id, true),
                    "to": wire_user(&to),
                    "status": e.status,
                    "errorCode": e.error,
                    "error": ctx.send_error(id),
                });
                let to = Some(&to).filter(|t| t.server != crate::binary::Server::Group);
                ctx.ids.put(&mut data, "to", to);
                data
            }
            kinds::MESSAGE_RECEIVED | kinds::MESSAGE_STATUS | kinds::MESSAGE_UNDECRYPTABLE => {
                let (m, created) = message.ok_or(ServiceError::NotFound)?;
                if e.kind != kinds::MESSAGE_STATUS {
                    let url = match &m.file {
                        // Serialized, so the link names this chat's message only.
                        Some(_) => {
                            let id = super::message_id(&m.chat, &m.id, m.from_me);
                            self.media_link(e.account, &id).await
                        }
                        None => None,
                    };
                    super::message_json(&m, created, url.as_deref(), ctx)
                } else {
                    let mut data = json!({
                        "messageId": super::message_id(&m.chat, &m.id, m.from_me),
                        "to": wire_user(&m.chat),
                        "status": e.status,
                        "errorCode": e.error,
                        "error": e.error.and(ctx.error(&m)),
                    });
                    let to = Some(&m.chat).filter(|t| t.server != crate::binary::Server::Group);
                    ctx.ids.put(&mut data, "to", to);
                    data
                }
            }
            kinds::MESSAGE_REACTION | kinds::MESSAGE_EDITED | kinds::MESSAGE_REVOKED => {
                let (m, created) = message.ok_or(ServiceError::NotFound)?;
                let by: Value = e
                    .data
                    .as_deref()
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or(Value::Null);
                let mut actor = by["by"]
                    .as_str()
                    .and_then(|j| j.parse::<Jid>().ok())
                    .unwrap_or_else(|| m.sender.clone());
                ctx.ids.by_number(&mut actor);
                let mut data = json!({
                    "messageId": super::message_id(&m.chat, &m.id, m.from_me),
                    "chat": wire_user(&m.chat),
                    "by": wire_user(&actor),
                    "fromMe": by["fromMe"],
                    "timestamp": by["t"].as_i64().map(|t| iso8601_ms(t.saturating_mul(1000))),
                    "message": super::message_json(&m, created, None, ctx),
                });
                ctx.ids.put(&mut data, "by", Some(&actor));
                if e.kind == kinds::MESSAGE_REACTION {
                    let emoji = by["text"].as_str().unwrap_or_default();
                    data["emoji"] = json!(emoji);
                    data["removed"] = json!(emoji.is_empty());
                } else if e.kind == kinds::MESSAGE_REVOKED {
                    data["admin"] = by["admin"].clone();
                }
                data
            }
            _ => {
                // `{code, reason}` (an event queued before codes moved out of `status` carries
                // the bare reason: its status is what the row then said).
                let d = e.data.as_deref().map(serde_json::from_str::<Value>);
                let (code, reason) = match d {
                    Some(Ok(Value::Object(o))) => {
                        (o.get("code").cloned(), o.get("reason").cloned())
                    }
                    _ => (
                        e.status.clone().map(Value::String),
                        e.data.clone().map(Value::String),
                    ),
                };
                json!({
                    "status": e.status,
                    "code": code,
                    "reason": reason,
                    "phoneNumber": conn.phone_number,
                })
            }
        };
        Ok(json!({
            "id": e.id,
            "event": e.kind,
            "createdAt": iso8601_ms(e.created_ms),
            "subaccountId": conn.subaccount_id,
            "agentId": conn.agent_id,
            "data": data,
        })
        .to_string())
    }

    /// Fixes the bodies of the claimed events that have none yet: their messages read in one
    /// query, the bodies stored in one transaction (so every later attempt sends the same
    /// bytes). An event whose body cannot be made or kept gets why instead.
    async fn prepare(
        &self,
        events: &[WebhookEvent],
        targets: &HashMap<AccountId, Target>,
    ) -> HashMap<i64, Result<String, String>> {
        let mut out = HashMap::new();
        let fresh: Vec<&WebhookEvent> = events.iter().filter(|e| e.payload.is_none()).collect();
        let pks: Vec<i64> = fresh.iter().filter_map(|e| e.message_pk).collect();
        let mut messages = match self.store.messages_by_pks(&pks).await {
            Ok(m) => m,
            Err(err) => {
                for e in &fresh {
                    out.insert(e.pk, Err(format!("storage: {err}")));
                }
                return out;
            }
        };
        // Per account, one read of the LID mappings and the sends' results the batch names.
        let mut contexts: HashMap<AccountId, super::RowContext> = HashMap::new();
        for (account, target) in targets {
            let Ok((_, conn)) = target else { continue };
            let mine: Vec<&WebhookEvent> = fresh
                .iter()
                .copied()
                .filter(|e| e.account == *account)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let pks: std::collections::HashSet<i64> =
                mine.iter().filter_map(|e| e.message_pk).collect();
            let (mut users, mut sends) = (Vec::new(), Vec::new());
            for e in &mine {
                let data: Option<Value> =
                    e.data.as_deref().and_then(|d| serde_json::from_str(d).ok());
                if let Some(d) = data {
                    for k in ["by", "to"] {
                        if let Some(j) = d[k].as_str().and_then(|j| j.parse::<Jid>().ok()) {
                            users.push(j);
                        }
                    }
                    if e.message_pk.is_none()
                        && let Some(id) = d["id"].as_str()
                    {
                        sends.push(id.to_owned());
                    }
                }
            }
            let mut rows: Vec<&mut StoredMessage> = messages
                .iter_mut()
                .filter(|(pk, _)| pks.contains(*pk))
                .map(|(_, (m, _))| m)
                .collect();
            let ctx = self
                .row_context(
                    *account,
                    conn.phone_number.as_deref(),
                    &mut rows,
                    &users,
                    &sends,
                )
                .await;
            contexts.insert(*account, ctx);
        }
        let mut made = Vec::new();
        for e in fresh {
            let Some(Ok((_, conn))) = targets.get(&e.account) else {
                continue;
            };
            let message = e.message_pk.and_then(|pk| messages.remove(&pk));
            let ctx = contexts.entry(e.account).or_default();
            match self.render(e, conn, message, ctx).await {
                Ok(p) => made.push((e.pk, p)),
                Err(err) => {
                    out.insert(e.pk, Err(format!("cannot build the event: {err}")));
                }
            }
        }
        match self.store.set_webhook_payloads(&made).await {
            Ok(()) => out.extend(made.into_iter().map(|(pk, p)| (pk, Ok(p)))),
            Err(err) => out.extend(
                made.into_iter()
                    .map(|(pk, _)| (pk, Err(format!("storage: {err}")))),
            ),
        }
        out
    }

    /// One attempt at event `e` with `payload`, its outcome handed to the recorder.
    async fn deliver(
        self: Arc<Self>,
        e: WebhookEvent,
        target: Target,
        payload: Result<String, String>,
        record: mpsc::Sender<Attempt>,
    ) {
        let settings = self.webhook_settings.clone();
        let attempt = u32::try_from(e.attempts)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let outcome = match (target, payload) {
            (Ok((hook, conn)), Ok(payload)) => {
                self.attempt(&e, attempt, &hook, &conn, payload).await
            }
            (Err(error), _) | (_, Err(error)) => failed(FailureKind::Internal, None, error),
        };
        let now = now_ms();
        let a = match outcome {
            Outcome::Delivered { reply_ignored } => Attempt {
                pk: e.pk,
                state: DeliveryState::Delivered,
                next_ms: now,
                http_status: None,
                error: None,
                error_kind: None,
                reply_ignored,
            },
            Outcome::Failed {
                kind,
                status,
                error,
            } => {
                let waited = Duration::from_millis(u64::try_from(now - e.since_ms).unwrap_or(0));
                let (state, next) = if waited >= settings.dead_after {
                    tracing::warn!(event = %e.id, %error, "webhook event dead-lettered");
                    (DeliveryState::Failed, now)
                } else {
                    (
                        DeliveryState::Pending,
                        now.saturating_add(millis(settings.backoff(attempt))),
                    )
                };
                Attempt {
                    pk: e.pk,
                    state,
                    next_ms: next,
                    http_status: status,
                    error: Some(error),
                    error_kind: Some(kind),
                    reply_ignored: None,
                }
            }
        };
        // If the recorder is gone (shutdown), the event stays leased and goes again later.
        let _ = record.send(a).await;
    }

    /// One POST of `payload` to `hook`, its answer read whole and its reply queued.
    async fn attempt(
        &self,
        e: &WebhookEvent,
        attempt: u32,
        hook: &Webhook,
        conn: &ConnectionRow,
        payload: String,
    ) -> Outcome {
        // The HTTP client connects to an address in the URL without resolving it, so the
        // resolver's check never sees it: checked here, at every attempt (the setting may have
        // changed since the URL was stored).
        if !self.webhook_settings.allow_private
            && let Some(ip) = egress::refused_literal(&hook.url)
        {
            return failed(
                FailureKind::NotAllowed,
                None,
                format!(
                    "address not allowed: the URL's host is {ip}, an address webhooks may not \
                     reach (WA_GATEWAY_WEBHOOK_ALLOW_PRIVATE allows it)"
                ),
            );
        }
        let t = crate::util::clock::now_ms() / 1000;
        let sig = signature(&hook.secret, t, payload.as_bytes());
        let sent = self
            .http
            .post(&hook.url)
            .timeout(self.webhook_settings.timeout)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, sig)
            .header(EVENT_ID_HEADER, &e.id)
            .header(EVENT_HEADER, &e.kind)
            .header(ATTEMPT_HEADER, attempt.to_string())
            .body(payload)
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(err) => return failed(failure_kind(&err), None, short_error(&err)),
        };
        let status = resp.status();
        if !status.is_success() {
            return failed(
                FailureKind::Status,
                Some(status.as_u16()),
                format!("answered {status}"),
            );
        }
        let code = Some(status.as_u16());
        let too_long = || {
            failed(
                FailureKind::Answer,
                code,
                format!("the answer is larger than {MAX_ANSWER} bytes"),
            )
        };
        if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
            return too_long();
        }
        // The request's timeout covers the body too: a stalled answer ends in an error.
        let mut answer = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) if answer.len() + chunk.len() > MAX_ANSWER => return too_long(),
                Ok(Some(chunk)) => answer.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(err) => {
                    let kind = if err.is_timeout() {
                        FailureKind::Timeout
                    } else {
                        FailureKind::Answer
                    };
                    return failed(
                        kind,
                        code,
                        format!("the answer could not be read: {}", short_error(&err)),
                    );
                }
            }
        }
        match self.reply(e, conn, &answer).await {
            Ok(reply_ignored) => Outcome::Delivered { reply_ignored },
            // The reply could not be queued: the event goes again, so the reply is not lost.
            Err(err) => failed(
                FailureKind::Reply,
                code,
                format!("cannot queue the reply: {err}"),
            ),
        }
    }

    /// Queues the `reply` of an answer to inbound event `e`, once per event; or why not.
    async fn reply(
        &self,
        e: &WebhookEvent,
        conn: &ConnectionRow,
        answer: &[u8],
    ) -> Result<Option<ReplyIgnored>, ServiceError> {
        let reply = match serde_json::from_slice::<Value>(answer) {
            Ok(Value::Object(mut obj)) => obj.remove("reply"),
            // Nothing said: nothing to reply.
            _ if answer.trim_ascii().is_empty() => None,
            _ if e.kind != kinds::MESSAGE_RECEIVED => return Ok(None),
            _ => return Ok(Some(ReplyIgnored::NotJson)),
        };
        let reply = reply.filter(|r| !r.is_null());
        if e.kind != kinds::MESSAGE_RECEIVED {
            // Only an inbound message has someone to answer; say so only when asked to.
            return Ok(reply.map(|_| ReplyIgnored::NotRepliable));
        }
        let text = match &reply {
            None => return Ok(Some(ReplyIgnored::NoReply)),
            Some(Value::String(t)) => t.trim(),
            Some(_) => return Ok(Some(ReplyIgnored::NotText)),
        };
        if text.is_empty() {
            return Ok(Some(ReplyIgnored::Empty));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Ok(Some(ReplyIgnored::TooLong));
        }
        let Ok(chat) = e.chat.parse::<Jid>() else {
            return Ok(Some(ReplyIgnored::NoChat));
        };
        let key = format!("{REPLY_KEY_PREFIX}{}", e.id);
        let row = self.enqueue(conn, &chat, text, None, Some(&key)).await?;
        tracing::info!(event = %e.id, outbox = row.pk, "webhook reply queued");
        Ok(None)
    }
}

/// How a request that got no answer failed.
fn failure_kind(e: &reqwest::Error) -> FailureKind {
    if egress::is_not_allowed(e) {
        FailureKind::NotAllowed
    } else if e.is_timeout() {
        FailureKind::Timeout
    } else {
        FailureKind::Connect
    }
}

/// An HTTP error with its causes, without the URL (it may carry credentials).
fn short_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut why = e.to_string();
    if let Some(u) = e.url() {
        why = why.replace(u.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        why.push_str(": ");
        why.push_str(&s.to_string());
        source = s.source();
    }
    format!("{kind}: {why}")
}

/// The dispatcher: claims due events (one per chat, a few per account), delivers them
/// concurrently, and sleeps until woken or until the next one is due. Ends when the service is
/// dropped or shut down.
pub(super) async fn dispatch(service: Weak<Service>) {
    // Per account: attempts in flight.
    let inflight: Arc<Mutex<HashMap<AccountId, usize>>> = Arc::default();
    // Attempts' outcomes are recorded by one task, many per transaction.
    let (record, outcomes) = mpsc::channel::<Attempt>(RECORD_QUEUE);
    tokio::spawn(recorder(service.clone(), outcomes));
    if let Some(svc) = service.upgrade()
        && svc.store.any_webhook().await.unwrap_or(true)
    {
        svc.has_webhooks.store(true, Relaxed);
    }
    loop {
        let Some(svc) = service.upgrade() else { return };
        if svc.stopping.load(Relaxed) {
            return;
        }
        let wake = svc.webhook_wake.clone();
        let notified = wake.notified();
        let settings = svc.webhook_settings.clone();
        let busy: usize = inflight.lock().map(|m| m.values().sum()).unwrap_or(0);
        let room = settings.concurrency.saturating_sub(busy);
        let now = now_ms();
        if room > 0 {
            let per_account = u32::try_from(settings.per_account.max(1)).unwrap_or(u32::MAX);
            let limit = u32::try_from(room).unwrap_or(u32::MAX);
            // A lease: not due again until this attempt has surely ended (the request's own
            // timeout covers the answer's body too; rendering and recording get as long again).
            let lease = now
                .saturating_add(millis(settings.timeout).saturating_mul(2))
                .saturating_add(5_000);
            let full: Vec<AccountId> = inflight
                .lock()
                .map(|m| {
                    m.iter()
                        .filter(|(_, n)| **n >= settings.per_account.max(1))
                        .map(|(a, _)| *a)
                        .collect()
                })
                .unwrap_or_default();
            match svc
                .store
                .claim_webhook_events(now, per_account, limit, lease, &full)
                .await
            {
                Ok(events) => {
                    // Each account's webhook and connection, read once for the batch.
                    let mut targets: HashMap<AccountId, Target> = HashMap::new();
                    for e in &events {
                        if let std::collections::hash_map::Entry::Vacant(v) =
                            targets.entry(e.account)
                        {
                            v.insert(svc.target(e.account).await);
                        }
                    }
                    let mut prepared = svc.prepare(&events, &targets).await;
                    // An account below its share may go past it by one batch: in flight
                    // stays under twice the share.
                    for e in events {
                        let target = targets
                            .get(&e.account)
                            .cloned()
                            .unwrap_or_else(|| Err("no webhook is set".into()));
                        let payload = match &e.payload {
                            Some(p) => Ok(p.clone()),
                            None => prepared
                                .remove(&e.pk)
                                .unwrap_or_else(|| Err("no body".into())),
                        };
                        let record = record.clone();
                        if let Ok(mut m) = inflight.lock() {
                            *m.entry(e.account).or_default() += 1;
                        }
                        let (svc2, inflight2) = (svc.clone(), inflight.clone());
                        tokio::spawn(async move {
                            let account = e.account;
                            svc2.clone().deliver(e, target, payload, record).await;
                            if let Ok(mut m) = inflight2.lock()
                                && let Some(n) = m.get_mut(&account)
                            {
                                *n -= 1;
                                if *n == 0 {
                                    m.remove(&account);
                                }
                            }
                            // The account has room again.
                            svc2.webhook_wake.notify_one();
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhook queue unreadable"),
            }
        }
        let next = svc.store.next_webhook_due().await.ok().flatten();
        let idle = Duration::from_millis(match next {
            Some(t) => u64::try_from(t - now_ms()).unwrap_or(0).min(1_000),
            None => 1_000,
        });
        drop(svc);
        let _ = tokio::time::timeout(idle.max(Duration::from_millis(5)), notified).await;
    }
}

/// Outcomes waiting to be recorded (the senders wait beyond it).
const RECORD_QUEUE: usize = 1024;

/// Records attempts' outcomes, as many per transaction as are waiting, then wakes the
/// dispatcher (a chat's next event may go once its head is recorded).
async fn recorder(service: Weak<Service>, mut outcomes: mpsc::Receiver<Attempt>) {
    let mut batch = Vec::with_capacity(256);
    while outcomes.recv_many(&mut batch, 256).await > 0 {
        let Some(svc) = service.upgrade() else { return };
        if let Err(e) = svc.store.webhook_attempts(&batch).await {
            // Those events stay pending under their leases and go again when they end.
            tracing::warn!(error = %e, n = batch.len(), "cannot record webhook attempts");
        }
        batch.clear();
        svc.webhook_wake.notify_one();
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_stripes_scheme_over_the_time_and_the_body() {
        // Made with: printf '%s' '1700000000.{"id":"x"}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature(b"whsec_test", 1_700_000_000, br#"{"id":"x"}"#),
            "t=1700000000,v1=80e8d098018f757aa814ab1abb924f35d304affa1d93d29611a54696207eb7c3"
        );
        // The time is signed: the same body at another time signs differently.
        assert_eq!(
            signature(b"whsec_test", 1_700_000_300, br#"{"id":"x"}"#),
            "t=1700000300,v1=372b19c318ec7f5827da526879248cb8f947f1b3d64b5959589db804a788a424"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_below_it() {
        let s = WebhookSettings {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            ..Default::default()
        };
        for (attempt, full) in [(1, 1), (2, 2), (3, 4), (7, 60), (40, 60)] {
            let full = Duration::from_secs(full);
            for _ in 0..50 {
                let d = s.backoff(attempt);
                assert!(d >= full / 2 && d < full, "attempt {attempt}: {d:?}");
            }
        }
    }
}
