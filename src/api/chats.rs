//! Chats and contacts of an agent (issue 23): the chat list, one chat's messages, the
//! on-demand history request, the contacts. Every chat and contact names the contact by both
//! its number and its LID when known.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::extract::{allow, ids, page, parse_to, respond};
use super::limits::Endpoint;
#[allow(unused_imports)] // used by the #[utoipa::path] declarations
use super::schema::{
    ChatActionData, ChatPath, ChatsData, ContactPath, ContactsData, Envelope, ErrorEnvelope,
    HistoryRequestData, MessagesData, Page,
};
use super::{ApiError, AppState, Op};
use crate::binary::{Jid, Server};
use crate::client::ChatAction;
use crate::client::account::{ChatSummary, Contact};
use crate::service::{message_id, wire_user};
use crate::util::clock::iso8601_ms;

/// How the API names a contact: by its number when known, else its LID.
fn name_of(jid: &Jid, pn: Option<&Jid>) -> String {
    match (jid.server.clone(), pn) {
        (Server::Lid, Some(pn)) => wire_user(pn),
        _ => wire_user(jid),
    }
}

fn secs(t: u64) -> String {
    iso8601_ms(i64::try_from(t).unwrap_or(i64::MAX).saturating_mul(1000))
}

fn chat_json(c: &ChatSummary) -> Value {
    let name_chat = c.pn.clone().filter(|_| c.chat.server == Server::Lid);
    json!({
        "id": name_of(&c.chat, c.pn.as_ref()),
        "pn": c.pn.as_ref().map(wire_user),
        "lid": c.lid.as_ref().map(wire_user),
        "name": c.name,
        "archived": c.archived,
        "pinned": c.pinned.map(secs),
        "mutedUntil": c.muted_until.map(|m| if m < 0 {
            "forever".to_owned()
        } else {
            iso8601_ms(m)
        }),
        "markedUnread": c.marked_unread,
        "unreadCount": c.unread_count,
        "ephemeralSeconds": c.ephemeral,
        "lastMessage": c.last_message.as_ref().map(|m| json!({
            "id": message_id(name_chat.as_ref().unwrap_or(&c.chat), &m.id, m.from_me),
            "type": m.kind,
            "body": m.preview,
            "timestamp": secs(m.timestamp),
            "fromMe": m.from_me,
        })),
    })
}

fn contact_json((c, warm): &(Contact, bool)) -> Value {
    json!({
        "id": name_of(&c.jid, c.pn.as_ref()),
        "pn": c.pn.as_ref().map(wire_user),
        "lid": c.lid.as_ref().map(wire_user),
        "fullName": c.full_name,
        "firstName": c.first_name,
        "pushName": c.push_name,
        "username": c.username,
        "onWhatsApp": c.on_whatsapp,
        "warm": warm,
    })
}

/// The chat in the path, as `to` is read.
fn chat_of(s: &str) -> Result<Jid, ApiError> {
    parse_to(s).map_err(|e| ApiError::bad("invalid_chat", e.message.replace("`to`", "`chatId`")))
}

#[utoipa::path(
    get,
    path = "/api/whatsapp/{subaccountId}/{agentId}/chats",
    tag = "whatsapp",
    summary = "Chats: pinned first, then by their newest message",
    description = "What the phone shared at linking (history sync) and what happened since: name, archived, pinned, muted until, unread count (the phone's count plus inbound messages after the read marker) and the newest message.",
    params(super::schema::AgentPath, Page),
    responses(
        (status = 200, description = "The chats", body = Envelope<ChatsData>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 404, description = "No such connection", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn chats(
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
        let chats = st.service.chats(&sub, &agent, limit, skip).await?;
        let chats: Vec<Value> = chats.iter().map(chat_json).collect();
        Ok((
            "WhatsApp chats retrieved",
            json!({ "count": chats.len(), "chats": chats }),
        ))
    }
    .await;
    respond(op, r)
}

#[utoipa::path(
    get,
    path = "/api/whatsapp/{subaccountId}/{agentId}/chats/{chatId}/messages",
    tag = "whatsapp",
    summary = "One chat's messages, newest first",
    params(ChatPath, Page),
    responses(
        (status = 200, description = "The messages", body = Envelope<MessagesData>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 404, description = "No such connection", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn chat_messages(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let [sub, agent, chat] = ids::<3>(path)?;
        allow(&st, &headers, &sub, Endpoint::Messages, false)?;
        let chat = chat_of(&chat)?;
        let (limit, skip) = page(query)?;
        let (rows, ctx) = st
            .service
            .chat_messages(&sub, &agent, &chat, limit, skip)
            .await?;
        Ok((
            "WhatsApp chat messages retrieved",
            crate::service::messages_page(&sub, &agent, &rows, &ctx),
        ))
    }
    .await;
    respond(op, r)
}

#[utoipa::path(
    post,
    path = "/api/whatsapp/{subaccountId}/{agentId}/chats/{chatId}/history",
    tag = "whatsapp",
    summary = "Ask the phone for older messages of the chat",
    description = "Sends an on-demand history request (a peer data operation) to the agent's phone, anchored at the oldest stored message of the chat; `?count=` 1–500, default 50. The messages arrive later as history: they show in the chat's messages and are not announced as `message.received`.",
    params(ChatPath),
    responses(
        (status = 202, description = "Asked", body = Envelope<HistoryRequestData>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 404, description = "No such connection", body = ErrorEnvelope),
        (status = 409, description = "`not_connected`: the agent is not logged in", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn request_history(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let [sub, agent, chat] = ids::<3>(path)?;
        allow(&st, &headers, &sub, Endpoint::Send, true)?;
        let chat = chat_of(&chat)?;
        let Query(q) = query.map_err(|e| ApiError::bad("invalid_query", e.body_text()))?;
        let count = match q.get("count") {
            None => crate::client::messenger::ON_DEMAND_COUNT,
            Some(c) => c
                .parse::<u32>()
                .ok()
                .filter(|c| (1..=crate::client::messenger::MAX_ON_DEMAND_COUNT).contains(c))
                .ok_or_else(|| {
                    ApiError::bad(
                        "invalid_query",
                        "`count` must be a whole number from 1 to 500",
                    )
                })?,
        };
        let id = st
            .service
            .request_history(&sub, &agent, &chat, count)
            .await?;
        Ok(json!({ "chatId": wire_user(&chat), "requestId": id, "count": count }))
    }
    .await;
    match r {
        Ok(data) => op.ok_with(
            StatusCode::ACCEPTED,
            "WhatsApp history requested from the phone",
            data,
        ),
        Err(e) => op.fail(&e),
    }
}

#[utoipa::path(
    get,
    path = "/api/whatsapp/{subaccountId}/{agentId}/contacts",
    tag = "whatsapp",
    summary = "Contacts: names, number and LID",
    params(super::schema::AgentPath, Page),
    responses(
        (status = 200, description = "The contacts", body = Envelope<ContactsData>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 404, description = "No such connection", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn contacts(
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
        let contacts = st.service.contacts(&sub, &agent, limit, skip).await?;
        let contacts: Vec<Value> = contacts.iter().map(contact_json).collect();
        Ok((
            "WhatsApp contacts retrieved",
            json!({ "count": contacts.len(), "contacts": contacts }),
        ))
    }
    .await;
    respond(op, r)
}

#[utoipa::path(
    get,
    path = "/api/whatsapp/{subaccountId}/{agentId}/contacts/{contactId}",
    tag = "whatsapp",
    summary = "One contact: names, number and LID",
    params(ContactPath),
    responses(
        (status = 200, description = "The contact", body = Envelope<super::schema::Contact>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 404, description = "No such connection, or `contact_not_found`", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn contact(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let [sub, agent, id] = ids::<3>(path)?;
        allow(&st, &headers, &sub, Endpoint::Messages, false)?;
        let jid = chat_of(&id)?;
        let c = st
            .service
            .contact(&sub, &agent, &jid)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "contact_not_found",
                    "no such contact known to this agent",
                )
            })?;
        Ok(("WhatsApp contact retrieved", contact_json(&c)))
    }
    .await;
    respond(op, r)
}

/// What `POST …/chats/{chatId}/{action}` names.
fn chat_action(action: &str, body: &Value, now: u64) -> Result<ChatAction, ApiError> {
    Ok(match action {
        "archive" => ChatAction::Archive(true),
        "unarchive" => ChatAction::Archive(false),
        "pin" => ChatAction::Pin(true),
        "unpin" => ChatAction::Pin(false),
        "read" => ChatAction::Read(true),
        "unread" => ChatAction::Read(false),
        "unmute" => ChatAction::Mute(None),
        "mute" => {
            let until = match (body.get("until"), body.get("seconds")) {
                (None | Some(Value::Null), None | Some(Value::Null)) => None,
                (Some(u), None) => Some(u.as_u64().filter(|u| *u > now).ok_or_else(|| {
                    ApiError::bad(
                        "invalid_body",
                        "`until` must be a future unix time in seconds",
                    )
                })?),
                (None, Some(s)) => Some(
                    s.as_u64()
                        .filter(|s| (1..=MAX_MUTE_SECONDS).contains(s))
                        .map(|s| now + s)
                        .ok_or_else(|| {
                            ApiError::bad(
                                "invalid_body",
                                "`seconds` must be a whole number from 1 to 31536000",
                            )
                        })?,
                ),
                _ => {
                    return Err(ApiError::bad(
                        "invalid_body",
                        "give `until` or `seconds`, not both",
                    ));
                }
            };
            // WhatsApp's mute end is in ms; -1 is "forever" (whatsmeow `BuildMuteAbs`).
            ChatAction::Mute(Some(
                until.map_or(-1, |u| i64::try_from(u).unwrap_or(i64::MAX / 1000) * 1000),
            ))
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_action",
                "the action is one of archive, unarchive, pin, unpin, mute, unmute, read, unread",
            ));
        }
    })
}

/// Longest mute given as a duration (a year); `until` or no body mutes longer.
const MAX_MUTE_SECONDS: u64 = 365 * 86_400;

#[utoipa::path(
    post,
    path = "/api/whatsapp/{subaccountId}/{agentId}/chats/{chatId}/{action}",
    tag = "whatsapp",
    summary = "Archive, pin, mute or mark read a chat (or undo it) on every device",
    description = "`action` is `archive`, `unarchive`, `pin`, `unpin`, `mute`, `unmute`, `read` or `unread`. Sent as an app-state patch, so the phone and every other linked device show the change; a change another device made first is applied before ours. `mute` takes an optional JSON body: `{\"until\": <unix seconds>}` or `{\"seconds\": <1–31536000>}`; without one the chat is muted for good.",
    params(ChatPath, ("action" = String, Path, description = "archive, unarchive, pin, unpin, mute, unmute, read or unread")),
    responses(
        (status = 200, description = "Done", body = Envelope<ChatActionData>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = ErrorEnvelope),
        (status = 404, description = "No such connection, or `unknown_action`", body = ErrorEnvelope),
        (status = 409, description = "`not_connected`: the agent is not logged in; `app_state_not_ready`: the phone has not shared its app-state keys yet, or the chats are still syncing", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
        (status = 502, description = "`app_state_refused`: WhatsApp refused the change", body = ErrorEnvelope),
        (status = 503, description = "`whatsapp_unreachable`: WhatsApp did not answer", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn act_on_chat(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let r = async {
        let [sub, agent, chat, action] = ids::<4>(path)?;
        allow(&st, &headers, &sub, Endpoint::Send, true)?;
        let chat = chat_of(&chat)?;
        let body = match &body {
            Ok(b) if b.is_empty() => Value::Null,
            _ => super::extract::body_json(body)?,
        };
        // The client's clock, not the system's: the mute end counts from the time the
        // client stamps its app-state actions with.
        let now = st.service.client_now(&sub, &agent).await?;
        let what = chat_action(&action, &body, now)?;
        st.service.chat_action(&sub, &agent, &chat, what).await?;
        Ok(json!({ "chatId": wire_user(&chat), "action": action }))
    }
    .await;
    match r {
        Ok(data) => op.ok("WhatsApp chat updated", data),
        Err(e) => op.fail(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_their_mute_bodies_read_as_the_app_state_actions() {
        let now = 1_000;
        assert_eq!(
            chat_action("archive", &Value::Null, now).unwrap(),
            ChatAction::Archive(true)
        );
        assert_eq!(
            chat_action("unread", &Value::Null, now).unwrap(),
            ChatAction::Read(false)
        );
        assert_eq!(
            chat_action("mute", &Value::Null, now).unwrap(),
            ChatAction::Mute(Some(-1))
        );
        assert_eq!(
            chat_action("mute", &json!({"seconds": 60}), now).unwrap(),
            ChatAction::Mute(Some(1_060_000))
        );
        assert_eq!(
            chat_action("mute", &json!({"until": 5000}), now).unwrap(),
            ChatAction::Mute(Some(5_000_000))
        );
        assert!(chat_action("mute", &json!({"until": 10}), now).is_err());
        assert!(chat_action("mute", &json!({"until": 5000, "seconds": 1}), now).is_err());
        assert!(chat_action("mute", &json!({"seconds": 0}), now).is_err());
        assert_eq!(
            chat_action("star", &Value::Null, now).unwrap_err().status,
            StatusCode::NOT_FOUND
        );
    }
}
