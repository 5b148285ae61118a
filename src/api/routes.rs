//! The guide's endpoints (connect, status, send, messages, connections, disconnect), the
//! activity log and health. Requests are read through `extract`; answers are the shapes of
//! `schema`.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::extract::{MAX_ID, allow, ids, page, respond};
use super::limits::Endpoint;
#[allow(unused_imports)] // used by the #[utoipa::path] declarations
use super::schema::{
    ActivitiesData, AgentPath, ConnectData, ConnectionsData, DisconnectData, Envelope,
    ErrorEnvelope, Health, LimitsData, MessagesData, Page, SendBody, SendData, SendForm,
    StatusData, SubaccountPath,
};
use super::{ApiError, AppState, Op};
use crate::binary::Jid;
use crate::service::{Connected, ConnectionStatus, Status, message_id, wire_user};
use crate::service::{OutboxRow, OutboxState, SendFailure};
use crate::util::clock::iso8601_ms;

/// Longest text (bytes), as the client accepts.

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    summary = "The process is up",
    responses((status = 200, description = "Up", body = Envelope<Health>)),
)]
pub(super) async fn healthz(Extension(op): Extension<Op>) -> Response {
    op.ok("ok", json!({}))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    summary = "Database reachable and linked sessions resumed",
    responses(
        (status = 200, description = "Ready", body = Envelope<Health>),
        (status = 503, description = "Not ready", body = ErrorEnvelope),
    ),
)]
pub(super) async fn readyz(Extension(op): Extension<Op>, State(st): State<AppState>) -> Response {
    let db = st.service.database_ok().await;
    let resumed = st.ready.load(std::sync::atomic::Ordering::Acquire);
    if db && resumed {
        op.ok("ready", json!({ "database": true, "resumed": true }))
    } else {
        op.fail(&ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("not ready (database: {db}, sessions resumed: {resumed})"),
        ))
    }
}

fn qr_url(code: &str) -> Value {
    crate::client::qr::qr_data_url(code)
        .map(Value::String)
        .unwrap_or(Value::Null)
}

/// A status as the guide shows it. The QR code links a phone to the account, so only callers
/// who may write (who could `connect` themselves) see it; viewers learn only that one shows.
fn status_json(s: &Status, may_write: bool) -> Value {
    if s.status == ConnectionStatus::NotInitialized {
        return json!({ "isConnected": false, "status": s.status });
    }
    let mut v = json!({
        "isConnected": s.is_connected,
        "isActive": s.is_active,
        "hasQR": s.qr.is_some(),
        "phoneNumber": s.phone_number,
        "platform": s.platform,
        "pushname": s.pushname,
        "status": s.status,
    });
    if may_write {
        v["qrCodeDataUrl"] = s.qr.as_deref().map(qr_url).unwrap_or(Value::Null);
    }
    if let Some(code) = &s.code {
        v["code"] = json!(code);
    }
    if let Some(reason) = &s.reason {
        v["reason"] = json!(reason);
    }
    if let Some(t) = &s.reachout_timelock {
        v["reachoutTimelock"] = json!({
            "isActive": t.active,
            "endsAt": t.ends_at.map(|s| iso8601_ms(i64::try_from(s).unwrap_or(i64::MAX / 1000) * 1000)),
            "enforcementType": t.enforcement,
        });
    }
    v
}

#[utoipa::path(
    post,
    path = "/api/whatsapp/{subaccountId}/{agentId}/connect",
    tag = "whatsapp",
    summary = "Start the connection: the QR code to scan, or the status when linked",
    params(AgentPath),
    responses(
        (status = 200, description = "QR code (or the status when already linked)", body = Envelope<ConnectData>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 409, description = "`connection_failed`, or `agent_limit_reached`: a new agent, and its subaccount has as many as it may (WA_GATEWAY_MAX_AGENTS)", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
        (status = 503, description = "WhatsApp unreachable", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn connect(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let [sub, agent] = ids::<2>(path)?;
        let c = allow(&st, &headers, &sub, Endpoint::Connect, true)?;
        match st.service.connect(&sub, &agent, Some(&c.sub)).await? {
            Connected::Qr(code) => Ok((
                "WhatsApp QR code generated. Scan with your mobile app.",
                json!({
                    "qrCode": code,
                    "qrCodeDataUrl": qr_url(&code),
                    "message": "Scan this QR code with WhatsApp mobile app",
                }),
            )),
            Connected::Status(s) => Ok((
                "WhatsApp is already connected",
                status_json(&s, c.may_write()),
            )),
        }
    }
    .await;
    respond(op, r)
}

#[utoipa::path(
    get,
    path = "/api/whatsapp/{subaccountId}/{agentId}/status",
    tag = "whatsapp",
    summary = "Connection status",
    params(AgentPath),
    responses(
        (status = 200, description = "The status", body = Envelope<StatusData>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn status(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let [sub, agent] = ids::<2>(path)?;
        let c = allow(&st, &headers, &sub, Endpoint::Status, false)?;
        let s = st.service.status(&sub, &agent).await?;
        Ok((
            "WhatsApp connection status retrieved",
            status_json(&s, c.may_write()),
        ))
    }
    .await;
    respond(op, r)
}

#[utoipa::path(
    get,
    path = "/api/whatsapp/{subaccountId}/{agentId}/limits",
    tag = "whatsapp",
    summary = "Reach-out limits: the time-lock, the new-chat message capping, and the cold-send policy",
    description = "WhatsApp may bar an account from starting new chats (a reach-out time-lock) or cap how many it starts per cycle. A send to a cold contact (one that never wrote to the account and gave it no valid privacy token) while either bars new chats is held until it lifts or refused at once (`coldSend`, WA_GATEWAY_COLD_SEND). Fields are absent until WhatsApp said them.",
    params(AgentPath),
    responses(
        (status = 200, description = "The limits", body = Envelope<LimitsData>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 404, description = "No such agent", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn limits(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let [sub, agent] = ids::<2>(path)?;
        allow(&st, &headers, &sub, Endpoint::Status, false)?;
        let l = st.service.limits(&sub, &agent).await?;
        let iso = |t: u64| iso8601_ms(i64::try_from(t).unwrap_or(i64::MAX / 1000) * 1000);
        let mut v =
            json!({ "coldSend": l.cold_send.as_str(), "newChatsBarred": l.barred.is_some() });
        if let Some((reason, until)) = l.barred {
            v["barredReason"] = json!(reason);
            v["barredUntil"] = json!(until.map(iso));
        }
        if let Some(t) = &l.timelock {
            v["reachoutTimelock"] = json!({
                "isActive": t.active,
                "endsAt": t.ends_at.map(iso),
                "enforcementType": t.enforcement,
            });
        }
        if let Some(c) = &l.capping {
            v["newChatCapping"] = json!({
                "totalQuota": c.total_quota,
                "usedQuota": c.used_quota,
                "remaining": c.remaining(),
                "cycleStart": c.cycle_start.map(iso),
                "cycleEnd": c.cycle_end.map(iso),
                "cappingStatus": c.capping_status,
                "oteStatus": c.ote_status,
                "mvStatus": c.mv_status,
            });
        }
        Ok(("Reach-out limits retrieved", v))
    }
    .await;
    respond(op, r)
}

#[utoipa::path(
    post,
    path = "/api/whatsapp/{subaccountId}/{agentId}/send",
    tag = "whatsapp",
    summary = "Send a text or a file",
    description = "Recorded first (durable, idempotent with Idempotency-Key), then sent in order at the account's pace; answers once WhatsApp acks, or `pending` after the configured wait. A file comes as JSON `media` (`url` or `base64`) or as `multipart/form-data` (fields `to`, `message`, `file`, `type`, `thumbnail`, …).",
    params(AgentPath, ("Idempotency-Key" = Option<String>, Header, description = "A retried request with the same key (and the same `to` and message) gets the first answer and sends nothing")),
    request_body(
        description = "JSON (a text, or a file by URL or base64), or a form with the file streamed",
        content(
            (SendBody = "application/json"),
            (SendForm = "multipart/form-data"),
        ),
    ),
    responses(
        (status = 200, description = "Sent (`server_ack`), or accepted and not yet confirmed (`pending`)", body = Envelope<SendData>),
        (status = 400, description = "Bad input (`invalid_idempotency_key` for a key starting with `webhook-reply:`, the service's own; `invalid_media` for bad base64 or a `media` without exactly one of `url` and `base64`; `media_url_not_allowed` for a URL that may not be fetched)", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 404, description = "No such connection (or webhook, or event)", body = ErrorEnvelope),
        (status = 409, description = "Not connected", body = ErrorEnvelope),
        (status = 410, description = "`send_record_gone`: accepted, but its record was removed (agent removed, record pruned) before it was confirmed; its fate is unknown", body = ErrorEnvelope),
        (status = 413, description = "Body, message, form field (`field_too_long`) or file (`media_too_large`) too large", body = ErrorEnvelope),
        (status = 415, description = "`media_type_not_accepted`: the file's bytes are not what its `type` or mimetype says, or WhatsApp takes no such file for that kind (images JPEG, PNG or WebP; stickers WebP; video MP4 or 3GPP; audio `audio/*`)", body = ErrorEnvelope),
        (status = 422, description = "Refused by WhatsApp, or `idempotency_key_reused`: the key was used for another message or recipient", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
        (status = 503, description = "WhatsApp unreachable", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn send(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Response {
    let r = async {
        let [sub, agent] = ids::<2>(path)?;
        let c = allow(&st, &headers, &sub, Endpoint::Send, true)?;
        let key = match headers.get("idempotency-key") {
            None => None,
            Some(k) => Some(
                k.to_str()
                    .ok()
                    .filter(|k| {
                        (1..=MAX_ID).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic())
                    })
                    .ok_or_else(|| {
                        ApiError::bad(
                            "invalid_idempotency_key",
                            format!(
                                "`Idempotency-Key` must be 1–{MAX_ID} visible ASCII characters"
                            ),
                        )
                    })?
                    .to_owned(),
            ),
        };
        let multipart = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("multipart/form-data"));
        let input = if multipart {
            let form =
                <axum::extract::Multipart as axum::extract::FromRequest<AppState>>::from_request(
                    req, &st,
                )
                .await
                .map_err(|e| ApiError::bad("invalid_body", e.body_text()))?;
            super::media::multipart_input(&st, form).await?
        } else {
            let body = super::media::read_json_send(req.into_body()).await?;
            super::media::json_input(&st, &body).await?
        };
        let queued = match &input.media {
            None => {
                st.service
                    .queue_send(
                        &sub,
                        &agent,
                        &input.to,
                        &input.text,
                        Some(&c.sub),
                        key.as_deref(),
                    )
                    .await?
            }
            Some(m) => {
                st.service
                    .queue_media_send(
                        &sub,
                        &agent,
                        &input.to,
                        &input.text,
                        m,
                        Some(&c.sub),
                        key.as_deref(),
                    )
                    .await?
            }
        };
        let row = if input.wait {
            st.service
                .await_send(queued.pk, st.service.send_wait())
                .await?
        } else {
            queued
        };
        let (said, mut answer) = send_answer(&row, input.wait)?;
        // Both names of the recipient as known now (its LID is learnt by the send's usync);
        // null for a group.
        let to = Some(&input.to).filter(|t| t.server != crate::binary::Server::Group);
        let ids = match to {
            Some(t) => st.service.ids_of(&sub, &agent, t).await,
            None => Default::default(),
        };
        ids.put(&mut answer, "to", to);
        Ok((said, answer))
    }
    .await;
    respond(op, r)
}

/// The send answer for an outbox row: WhatsApp's ack (or refusal) once it came, else the id
/// the message keeps with `status: "pending"`. Only an ack is "sent successfully": a send that
/// went out but whose ack did not come in time (the client answers `pending`; it is resent
/// with the same id at the next connection), or that still waits in the queue after the
/// request `waited`, is accepted, not yet confirmed.
fn send_answer(row: &OutboxRow, waited: bool) -> Result<(&'static str, Value), ApiError> {
    let result: Option<Value> = row
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok());
    match (row.state, result) {
        // Cancelled (disconnected first) and expired (past WA_GATEWAY_SEND_TTL) sends were
        // never sent: errors, as refusals are.
        (OutboxState::Failed | OutboxState::Cancelled | OutboxState::Expired, Some(r)) => {
            let failure = r["error"]["code"]
                .as_str()
                .and_then(SendFailure::from_code)
                .unwrap_or(SendFailure::SendFailed);
            let mut message = r["error"]["message"]
                .as_str()
                .unwrap_or("not sent")
                .to_owned();
            let mut e = ApiError::from_failure(failure, String::new());
            // What would lift a reach-out refusal (a 463 or 475 is never retried for you): in
            // the message for people, and as `error.remedy`/`error.until` for programs.
            if let Some(remedy) = r["error"]["remedy"].as_str() {
                message = format!("{message}; to lift it: {remedy}");
                let until = r["error"]["until"].as_str().map(str::to_owned);
                e.remedy = Some((remedy.to_owned(), until));
            }
            e.message = message;
            Err(e)
        }
        (OutboxState::Done, Some(r)) if r["status"] == json!("pending") => Ok((
            "WhatsApp message accepted, not yet confirmed: WhatsApp did not ack it in time; \
             it is sent again with the same id until it does",
            r,
        )),
        (OutboxState::Done, Some(r)) => Ok(("WhatsApp message sent successfully", r)),
        _ => {
            let to: Jid = row.to.parse().map_err(|_| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "unreadable outbox row",
                )
            })?;
            Ok((
                if waited {
                    "WhatsApp message accepted, not yet confirmed: it is still queued and will \
                     be sent"
                } else {
                    "WhatsApp message accepted; it is queued and will be sent"
                },
                {
                    let mut v = json!({
                        "messageId": message_id(&to, &row.message_id, true),
                        "to": wire_user(&to),
                        "message": row.body,
                        "timestamp": row.created_ms / 1000,
                        "status": "pending",
                    });
                    // Held: a cold contact while new chats are barred; it goes once they are
                    // not (WA_GATEWAY_COLD_SEND=hold).
                    if let Some(hold) = row
                        .hold
                        .as_deref()
                        .and_then(|h| serde_json::from_str::<Value>(h).ok())
                    {
                        v["status"] = json!("held");
                        v["hold"] = hold;
                    }
                    v
                },
            ))
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/whatsapp/{subaccountId}/{agentId}/messages",
    tag = "whatsapp",
    summary = "Message history, newest first",
    params(AgentPath, Page),
    responses(
        (status = 200, description = "The messages", body = Envelope<MessagesData>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 404, description = "No such connection (or webhook, or event)", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn messages(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let [sub, agent] = ids::<2>(path)?;
        allow(&st, &headers, &sub, Endpoint::Messages, false)?;
        let (limit, skip) = page(query)?;
        let (rows, ctx) = st.service.history(&sub, &agent, limit, skip).await?;
        Ok((
            "WhatsApp message history retrieved",
            crate::service::messages_page(&sub, &agent, &rows, &ctx),
        ))
    }
    .await;
    respond(op, r)
}

#[utoipa::path(
    get,
    path = "/api/whatsapp/{subaccountId}/connections",
    tag = "whatsapp",
    summary = "Every connection of a subaccount",
    params(SubaccountPath),
    responses(
        (status = 200, description = "The connections", body = Envelope<ConnectionsData>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn connections(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let [sub] = ids::<1>(path)?;
        allow(&st, &headers, &sub, Endpoint::Connections, false)?;
        let rows = st.service.connections(&sub).await?;
        let list: Vec<Value> = rows
            .iter()
            .map(|c| {
                json!({
                    "subaccountId": c.subaccount_id,
                    "agentId": c.agent_id,
                    "status": c.status,
                    "code": c.code,
                    "reason": c.reason,
                    "phoneNumber": c.phone_number,
                    "platform": c.platform,
                    "pushname": c.pushname,
                    "connectedAt": c.connected_at.map(iso8601_ms),
                    "disconnectedAt": c.disconnected_at.map(iso8601_ms),
                    "createdAt": iso8601_ms(c.created_at),
                    "updatedAt": iso8601_ms(c.updated_at),
                })
            })
            .collect();
        Ok((
            "WhatsApp connections retrieved",
            json!({ "connections": list, "count": rows.len() }),
        ))
    }
    .await;
    respond(op, r)
}

#[utoipa::path(
    post,
    path = "/api/whatsapp/{subaccountId}/{agentId}/disconnect",
    tag = "whatsapp",
    summary = "Unlink the device; the connection row and history stay",
    params(AgentPath),
    responses(
        (status = 200, description = "Disconnected", body = Envelope<DisconnectData>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 404, description = "No such connection (or webhook, or event)", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn disconnect(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let [sub, agent] = ids::<2>(path)?;
        let c = allow(&st, &headers, &sub, Endpoint::Disconnect, true)?;
        st.service.disconnect(&sub, &agent, Some(&c.sub)).await?;
        Ok((
            "WhatsApp disconnected successfully",
            json!({ "message": "WhatsApp disconnected successfully" }),
        ))
    }
    .await;
    respond(op, r)
}

#[utoipa::path(
    get,
    path = "/api/whatsapp/{subaccountId}/activities",
    tag = "whatsapp",
    summary = "Activity log, newest first",
    params(SubaccountPath, Page),
    responses(
        (status = 200, description = "The activities", body = Envelope<ActivitiesData>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn activities(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let [sub] = ids::<1>(path)?;
        allow(&st, &headers, &sub, Endpoint::Activities, false)?;
        let (limit, skip) = page(query)?;
        let rows = st.service.activities(&sub, limit, skip).await?;
        let list: Vec<Value> = rows
            .iter()
            .map(|a| {
                json!({
                    "id": a.id,
                    "type": a.kind,
                    "category": a.category,
                    "subaccountId": a.subaccount_id,
                    "agentId": a.agent_id,
                    "userId": a.user_id,
                    "details": serde_json::from_str::<Value>(&a.details).unwrap_or(Value::Null),
                    "createdAt": iso8601_ms(a.at_ms),
                })
            })
            .collect();
        Ok((
            "Activities retrieved",
            json!({ "activities": list, "count": rows.len() }),
        ))
    }
    .await;
    respond(op, r)
}
