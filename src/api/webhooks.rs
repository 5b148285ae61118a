//! The webhook endpoints: set, show and remove an agent's webhook, list its deliveries (e.g. the
//! dead-lettered ones) and redeliver one.

use std::collections::HashMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::extract::{allow, body_json, ids, page, respond};
use super::limits::Endpoint;
#[allow(unused_imports)] // used by the #[utoipa::path] declarations
use super::schema::{
    AgentPath, DeliveriesData, Delivery, DeliveryFilter, Envelope, ErrorEnvelope, Object, Page,
    WebhookBody, WebhookData,
};
use super::{ApiError, AppState, Op};
use crate::service::{
    DeliveryState, FailureKind, SIGNATURE_HEADER, WEBHOOK_EVENTS, WebhookEvent, WebhookView,
};
use crate::util::clock::iso8601_ms;
use crate::util::url::without_credentials;

/// Longest webhook URL.
const MAX_URL: usize = 2048;
/// Shortest and longest secret (bytes).
const SECRET_LEN: std::ops::RangeInclusive<usize> = 16..=256;

/// A webhook as `GET …/webhook` shows it. Its URL may carry credentials (userinfo, a token in
/// the query): only callers who may write (who could set it themselves) see them.
fn view_json(w: &WebhookView, may_write: bool) -> Value {
    let url = if may_write {
        w.url.clone()
    } else {
        without_credentials(&w.url)
    };
    json!({
        "url": url,
        "events": w.events,
        "signatureHeader": SIGNATURE_HEADER,
        "createdBy": w.created_by,
        "createdAt": iso8601_ms(w.created_at),
        "updatedAt": iso8601_ms(w.updated_at),
    })
}

/// How an attempt failed, for viewers: what kind of failure, never the detail (addresses,
/// resolver and TLS messages, what the receiver said), which only those who may set the
/// webhook see.
fn coarse_error(e: &WebhookEvent) -> Option<String> {
    let status = || e.last_status.map(|s| format!("HTTP {s}"));
    Some(match e.last_error_kind {
        Some(FailureKind::Timeout) => "timed out".into(),
        Some(FailureKind::Connect) => "connection failed".into(),
        Some(FailureKind::NotAllowed) => "address not allowed".into(),
        Some(FailureKind::Status) => status().unwrap_or_else(|| "HTTP error".into()),
        Some(FailureKind::Answer) => "answer unreadable".into(),
        Some(FailureKind::Reply) => "reply not queued".into(),
        Some(FailureKind::Internal) => "internal error".into(),
        // Recorded before failures had kinds.
        None => {
            e.last_error.as_ref()?;
            status().unwrap_or_else(|| "failed".into())
        }
    })
}

/// A delivery as listed; `detailed` (for callers who may write) with the last error's detail.
fn event_json(e: &WebhookEvent, detailed: bool) -> Value {
    json!({
        "id": e.id,
        "event": e.kind,
        "state": e.state,
        "attempts": e.attempts,
        "lastStatus": e.last_status,
        "lastError": if detailed { e.last_error.clone() } else { coarse_error(e) },
        "replyIgnored": e.reply_ignored.map(|r| r.as_str()),
        "nextAttemptAt": (e.state == DeliveryState::Pending).then(|| iso8601_ms(e.next_ms)),
        "createdAt": iso8601_ms(e.created_ms),
        "deliveredAt": e.delivered_ms.map(iso8601_ms),
        "payload": e.payload.as_deref().and_then(|p| serde_json::from_str::<Value>(p).ok()),
    })
}

/// The URL, checked: http or https, with a host, not too long.
fn parse_url(v: &Value) -> Result<String, ApiError> {
    let s = match v.get("url") {
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err(ApiError::bad("invalid_url", "`url` must be a string")),
        None => return Err(ApiError::bad("missing_url", "`url` is required")),
    };
    if s.len() > MAX_URL {
        return Err(ApiError::bad(
            "invalid_url",
            format!("`url` is longer than {MAX_URL} characters"),
        ));
    }
    let url = reqwest::Url::parse(s)
        .map_err(|e| ApiError::bad("invalid_url", format!("`url` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::bad(
            "invalid_url",
            "`url` must be an http or https URL with a host",
        ));
    }
    Ok(url.to_string())
}

#[utoipa::path(
    put,
    path = "/api/whatsapp/{subaccountId}/{agentId}/webhook",
    tag = "webhooks",
    summary = "Set the agent's webhook (replaces it; waiting events go to the new URL)",
    description = "Each event is POSTed as JSON (schema WebhookEvent) with `X-WA-Gateway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + \".\" + raw body)>` (signed afresh at each attempt; refuse a `t` more than 5 minutes from your clock), `X-WA-Gateway-Event-Id`, `X-WA-Gateway-Event` and `X-WA-Gateway-Attempt`; at least once, in order per chat, retried with exponential backoff until the dead-letter time. Answer 2xx (with a body read whole within the attempt's time and 397,312 bytes) to take it; to an inbound message, `{\"reply\": \"text\"}` sends that text to the chat through the outbox (once per event). A URL whose host is a loopback, private, link-local or otherwise non-public address is refused (400 `webhook_url_not_allowed`), and names are only connected to at public addresses, unless the service allows private ones.",
    params(AgentPath),
    request_body = WebhookBody,
    responses(
        (status = 200, description = "The webhook", body = Envelope<WebhookData>),
        (status = 400, description = "Bad input; `webhook_url_not_allowed` for an address webhooks may not reach", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 409, description = "`agent_limit_reached`: a new agent, and its subaccount has as many as it may (WA_GATEWAY_MAX_AGENTS)", body = ErrorEnvelope),
        (status = 413, description = "Body or message too large", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn put_webhook(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r = async {
        let [sub, agent] = ids::<2>(path)?;
        let c = allow(&st, &headers, &sub, Endpoint::Webhook, true)?;
        let v = body_json(body)?;
        let url = parse_url(&v)?;
        let secret = match v.get("secret") {
            Some(Value::String(s)) if SECRET_LEN.contains(&s.len()) => s.clone(),
            Some(Value::String(_)) => {
                return Err(ApiError::bad(
                    "invalid_secret",
                    format!(
                        "`secret` must be {} to {} characters",
                        SECRET_LEN.start(),
                        SECRET_LEN.end()
                    ),
                ));
            }
            Some(_) => return Err(ApiError::bad("invalid_secret", "`secret` must be a string")),
            None => return Err(ApiError::bad("missing_secret", "`secret` is required")),
        };
        let events: Vec<&str> = match v.get("events") {
            None | Some(Value::Null) => WEBHOOK_EVENTS.to_vec(),
            Some(Value::Array(list)) if !list.is_empty() => {
                let mut out = Vec::new();
                for e in list {
                    let name = e
                        .as_str()
                        .and_then(|n| WEBHOOK_EVENTS.iter().find(|k| **k == n));
                    match name {
                        Some(n) if !out.contains(n) => out.push(*n),
                        Some(_) => {}
                        None => {
                            return Err(ApiError::bad(
                                "invalid_events",
                                format!("`events` may list {}", WEBHOOK_EVENTS.join(", ")),
                            ));
                        }
                    }
                }
                out
            }
            Some(_) => {
                return Err(ApiError::bad(
                    "invalid_events",
                    "`events` must be a non-empty array of event names",
                ));
            }
        };
        let view = st
            .service
            .set_webhook(&sub, &agent, &url, &secret, &events, Some(&c.sub))
            .await?;
        Ok(("Webhook set", view_json(&view, true)))
    }
    .await;
    respond(op, r)
}

#[utoipa::path(
    get,
    path = "/api/whatsapp/{subaccountId}/{agentId}/webhook",
    tag = "webhooks",
    summary = "The agent's webhook (never its secret; to viewers, its URL without userinfo, query or fragment)",
    params(AgentPath),
    responses(
        (status = 200, description = "The webhook", body = Envelope<WebhookData>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 404, description = "No such connection (or webhook, or event)", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn get_webhook(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let [sub, agent] = ids::<2>(path)?;
        let c = allow(&st, &headers, &sub, Endpoint::Webhook, false)?;
        let view = st.service.webhook(&sub, &agent).await?;
        Ok(("Webhook retrieved", view_json(&view, c.may_write())))
    }
    .await;
    respond(op, r)
}

#[utoipa::path(
    delete,
    path = "/api/whatsapp/{subaccountId}/{agentId}/webhook",
    tag = "webhooks",
    summary = "Remove the agent's webhook and the events still waiting for it",
    params(AgentPath),
    responses(
        (status = 200, description = "Removed", body = Envelope<Object>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 404, description = "No such connection (or webhook, or event)", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn delete_webhook(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let [sub, agent] = ids::<2>(path)?;
        allow(&st, &headers, &sub, Endpoint::Webhook, true)?;
        st.service.delete_webhook(&sub, &agent).await?;
        Ok(("Webhook removed", json!({})))
    }
    .await;
    respond(op, r)
}

#[utoipa::path(
    get,
    path = "/api/whatsapp/{subaccountId}/{agentId}/webhook/deliveries",
    tag = "webhooks",
    summary = "The agent's webhook events, newest first (to viewers, `lastError` is only the kind of failure)",
    params(AgentPath, DeliveryFilter, Page),
    responses(
        (status = 200, description = "The events", body = Envelope<DeliveriesData>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 404, description = "No such connection (or webhook, or event)", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn deliveries(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let [sub, agent] = ids::<2>(path)?;
        let c = allow(&st, &headers, &sub, Endpoint::Webhook, false)?;
        let state = match &query {
            Ok(Query(q)) => match q.get("status").map(String::as_str) {
                None => None,
                Some(s) if let Ok(s) = s.parse::<DeliveryState>() => Some(s),
                Some(_) => {
                    return Err(ApiError::bad(
                        "invalid_query",
                        "`status` must be pending, delivered or failed",
                    ));
                }
            },
            Err(_) => None,
        };
        let (limit, skip) = page(query)?;
        let rows = st
            .service
            .webhook_deliveries(&sub, &agent, state, limit, skip)
            .await?;
        let list: Vec<Value> = rows.iter().map(|e| event_json(e, c.may_write())).collect();
        Ok((
            "Webhook deliveries retrieved",
            json!({ "deliveries": list, "count": rows.len() }),
        ))
    }
    .await;
    respond(op, r)
}

#[utoipa::path(
    post,
    path = "/api/whatsapp/{subaccountId}/{agentId}/webhook/deliveries/{eventId}/redeliver",
    tag = "webhooks",
    summary = "Deliver an event again (same id, same body), now",
    params(AgentPath, ("eventId" = String, Path, description = "The event's id")),
    responses(
        (status = 200, description = "Queued", body = Envelope<Delivery>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 404, description = "No such connection (or webhook, or event)", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn redeliver(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let [sub, agent, id] = ids::<3>(path)?;
        allow(&st, &headers, &sub, Endpoint::Webhook, true)?;
        let e = st.service.redeliver(&sub, &agent, &id).await?;
        Ok(("Webhook event queued for delivery", event_json(&e, true)))
    }
    .await;
    respond(op, r)
}
