//! The simulator's control API (axum), for scripts and tests that drive simulated users:
//! `POST /phones/{number}/scan`, `POST /phones/{number}/send` (a content, or a media message),
//! `GET /phones/{number}/messages`,
//! `DELETE /phones/{number}` (the user deletes their account),
//! `POST /phones/{number}/echo`, `POST /phones/{number}/devices`,
//! `POST /phones/{number}/appstate` (the phone archives, mutes, pins, marks read, adds a
//! contact or sets its NCT salt), `GET /phones/{number}/appstate/{collection}` (the phone's
//! reading of it), `POST /phones/{number}/appstate/{collection}/faults` (the server's copy
//! is damaged), `POST /faults`, `POST /groups`,
//! `GET /groups/{jid}`, `POST /groups/{jid}/participants`, `GET /stanzas?id=…` (how many
//! times real devices transmitted a message id), and the media CDN's `GET /cdn/media` (the
//! blobs it holds), `GET /cdn/transfers` (uploads and downloads under way) and
//! `POST /cdn/faults`. Errors come back as
//! `{"error": "…"}` with a 4xx status; bad bodies never reach the simulator.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::appstate::{Corruption, PhoneAction};
use super::cdn::CdnFault;
use super::compose::Compose;
use super::error::SimError;
use super::phone_media::{MediaData, MediaKind, MediaSend};
use super::server::Fault;
use super::simulator::Simulator;

/// Body of `POST /phones/{number}/scan`.
#[derive(Debug, Deserialize)]
pub struct ScanBody {
    /// The QR text the companion shows.
    pub qr: String,
    /// The phone's push name.
    pub push_name: Option<String>,
    /// The phone's platform (default `android`).
    pub platform: Option<String>,
}

/// Body of `POST /faults`.
#[derive(Debug, Deserialize)]
pub struct FaultBody {
    /// The phone number whose linked devices get the fault.
    pub account: String,
    /// `drop`, `stop_pings`, `resume_pings`, `stream_error`, `unlink`.
    pub fault: String,
    /// For `stream_error`: the code (515, 503, 401…).
    pub code: Option<u16>,
    /// For `stream_error`: a conflict type (`replaced`, `device_removed`).
    pub conflict: Option<String>,
    /// For `withhold_receipts` / `withhold_acks`: on (default) or off (lifts it).
    pub on: Option<bool>,
}

/// Body of `POST /cdn/faults`.
#[derive(Debug, Deserialize)]
pub struct CdnFaultBody {
    /// `expire_media` (downloads answer 404), `corrupt_media` (one byte flipped in place),
    /// `refuse_uploads` (the next `count` uploads answer 401), `expire_auth` (every
    /// `media_conn` auth expires now), `slow_transfers` (a slow link).
    pub fault: String,
    /// For the media faults: the blob's enc SHA-256 (base64 or hex) or its direct path or URL.
    pub media: Option<String>,
    /// For `refuse_uploads`: how many (default 1).
    pub count: Option<u32>,
    /// For `slow_transfers`: bytes a second each upload and download may move (absent or 0
    /// lifts it).
    pub bytes_per_second: Option<u64>,
}

/// Body of `POST /phones/{number}/send`: the recipient and what to send (see [`Compose`]),
/// or a media message (`media`, alone).
#[derive(Debug, Deserialize)]
pub struct SendBody {
    /// Digits, or a PN, LID or group JID.
    pub to: String,
    /// A media message instead of a composed content.
    pub media: Option<MediaBody>,
    /// The content.
    #[serde(flatten)]
    pub content: Compose,
}

/// `media` of `POST /phones/{number}/send`: the kind, the file as exactly one of `base64` or
/// `generate`, and how it is described.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MediaBody {
    /// image, video, ptv, audio, ptt, document or sticker.
    pub kind: MediaKind,
    /// The file, base64 (standard alphabet).
    pub base64: Option<String>,
    /// A file of `bytes` deterministic bytes from `seed` (large files without a large body).
    pub generate: Option<Generate>,
    /// One of the simulator's sample files (`photo.jpg`, `photo.png`, `voice.ogg`): real
    /// media, described as a phone would (mimetype, dimensions, length).
    pub sample: Option<String>,
    /// Its mimetype (default per kind, as Baileys').
    pub mimetype: Option<String>,
    /// A document's file name.
    pub file_name: Option<String>,
    /// A caption (image, video, document).
    pub caption: Option<String>,
    /// Length in seconds (audio, video).
    pub seconds: Option<u32>,
    /// Width in pixels.
    pub width: Option<u32>,
    /// Height in pixels.
    pub height: Option<u32>,
}

/// `media.generate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    /// The file's length (1 byte to 2 GiB).
    pub bytes: u64,
    /// The seed (default 0).
    #[serde(default)]
    pub seed: u64,
}

impl MediaBody {
    /// What the phone is to send; Err says what is wrong with the body.
    fn into_send(self) -> Result<MediaSend, String> {
        use base64::Engine as _;
        let (mut mimetype, mut seconds, mut width, mut height) =
            (self.mimetype, self.seconds, self.width, self.height);
        let data = match (self.base64, self.generate, self.sample) {
            (Some(b), None, None) => MediaData::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .map_err(|_| "media.base64 must be base64".to_owned())?,
            ),
            (None, Some(g), None) => MediaData::Generate {
                bytes: g.bytes,
                seed: g.seed,
            },
            (None, None, Some(name)) => {
                let Some((bytes, mime)) = super::samples::sample(&name) else {
                    let names: Vec<&str> = super::samples::SAMPLES.iter().map(|s| s.0).collect();
                    return Err(format!("media.sample is one of {}", names.join(", ")));
                };
                mimetype.get_or_insert_with(|| mime.to_owned());
                if let Some((w, h)) = crate::media::dimensions(&bytes) {
                    width.get_or_insert(w);
                    height.get_or_insert(h);
                }
                if let Some(d) = crate::media::ogg_opus_duration(&bytes, &bytes) {
                    seconds.get_or_insert(d.as_secs() as u32);
                }
                MediaData::Bytes(bytes)
            }
            _ => return Err("media needs exactly one of base64, generate or sample".into()),
        };
        let text_ok = |t: &Option<String>| t.as_ref().is_none_or(|t| t.len() <= 65_536);
        if !text_ok(&self.caption) || !text_ok(&self.file_name) || !text_ok(&mimetype) {
            return Err("caption, fileName and mimetype are at most 65,536 bytes".into());
        }
        Ok(MediaSend {
            kind: self.kind,
            data,
            mimetype,
            file_name: self.file_name,
            caption: self.caption,
            seconds,
            width,
            height,
        })
    }
}

/// Body of `POST /phones/{number}/appstate`: what the phone's user does.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppStateBody {
    /// `archive`, `unarchive`, `mute`, `unmute`, `pin`, `unpin`, `read`, `unread`,
    /// `contact`, `remove_contact`, `set_nct_salt`, `remove_nct_salt`.
    pub action: String,
    /// The chat (digits, or a PN, LID or group JID) for the chat actions.
    pub chat: Option<String>,
    /// For `mute`: until when (unix ms; absent or -1: forever).
    pub until: Option<i64>,
    /// For `contact`: its number or PN JID.
    pub jid: Option<String>,
    /// For `contact`: the full name.
    pub full_name: Option<String>,
    /// For `contact`: the first name.
    pub first_name: Option<String>,
    /// For `contact`: its LID JID (default: the simulator's LID of that number).
    pub lid: Option<String>,
    /// For `set_nct_salt`: the salt in hex (default: 32 random bytes).
    pub salt: Option<String>,
}

/// Body of `POST /phones/{number}/appstate/{collection}/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppStateFaultBody {
    /// `corrupt_patch` (the latest patch's snapshotMAC is wrong), `corrupt_snapshot` (the
    /// snapshot's MAC too) or `drop_patch` (the latest patch is lost).
    pub fault: String,
}

/// Body of `POST /phones/{number}/echo`.
#[derive(Debug, Deserialize)]
pub struct EchoBody {
    /// Answer every text with the same text.
    pub on: bool,
}

/// Body of `POST /phones/{number}/devices`.
#[derive(Debug, Deserialize)]
pub struct DevicesBody {
    /// Devices the user has, the phone included (1–16).
    pub count: usize,
}

/// Body of `POST /groups`.
#[derive(Debug, Deserialize)]
pub struct GroupBody {
    /// The subject.
    pub subject: String,
    /// The creator's phone number (super admin).
    pub creator: String,
    /// The other members' phone numbers.
    #[serde(default)]
    pub participants: Vec<String>,
    /// `pn` (default) or `lid`.
    pub addressing_mode: Option<String>,
}

/// Body of `POST /groups/{jid}/participants`.
#[derive(Debug, Deserialize)]
pub struct ParticipantsBody {
    /// Phone numbers to add.
    #[serde(default)]
    pub add: Vec<String>,
    /// Phone numbers to remove.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Tell the member devices (default true; false leaves their member lists stale).
    pub notify: Option<bool>,
}

/// Query of `GET /stanzas`.
#[derive(Debug, Deserialize)]
pub struct StanzasQuery {
    /// The message id.
    pub id: String,
}

type Reply = (StatusCode, Json<Value>);

fn bad(status: StatusCode, msg: impl std::fmt::Display) -> Reply {
    (status, Json(json!({ "error": msg.to_string() })))
}

/// The control router.
pub fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "ok": true })) }))
        .route("/phones/{number}/scan", post(scan))
        .route("/phones/{number}/send", post(send))
        .route("/phones/{number}/messages", get(messages))
        .route("/phones/{number}/echo", post(echo))
        .route("/phones/{number}", delete(delete_account))
        .route("/phones/{number}/devices", post(devices))
        .route("/phones/{number}/appstate", post(app_state_action))
        .route("/phones/{number}/appstate/{collection}", get(app_state))
        .route(
            "/phones/{number}/appstate/{collection}/faults",
            post(app_state_fault),
        )
        .route(
            "/phones/{number}/history",
            post(seed_history).get(history_sent),
        )
        .route("/phones/{number}/capping", post(set_capping).get(capping))
        .route("/faults", post(fault))
        .route("/groups", post(create_group))
        .route("/groups/{jid}", get(group))
        .route("/groups/{jid}/participants", post(participants))
        .route("/stanzas", get(stanzas))
        .route("/cdn/media", get(cdn_media))
        .route("/cdn/transfers", get(cdn_transfers))
        .route("/samples/{name}", get(sample_file))
        .route("/cdn/faults", post(cdn_fault))
        .with_state(sim)
}

async fn scan(
    State(sim): State<Simulator>,
    Path(number): Path<String>,
    body: Result<Json<ScanBody>, JsonRejection>,
) -> Reply {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if !super::server::valid_number(&number) {
        return bad(StatusCode::BAD_REQUEST, SimError::BadNumber);
    }
    match sim
        .scan(
            &number,
            &b.qr,
            b.push_name.as_deref(),
            b.platform.as_deref(),
        )
        .await
    {
        Ok(jid) => (StatusCode::OK, Json(json!({ "jid": jid.to_string() }))),
        Err(e @ SimError::BadNumber) => bad(StatusCode::BAD_REQUEST, e),
        Err(e @ (SimError::Pair(_) | SimError::UnknownRef)) => {
            bad(StatusCode::UNPROCESSABLE_ENTITY, e)
        }
        Err(e) => bad(StatusCode::CONFLICT, e),
    }
}

async fn fault(
    State(sim): State<Simulator>,
    body: Result<Json<FaultBody>, JsonRejection>,
) -> Reply {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let f = match b.fault.as_str() {
        "drop" => Fault::Drop,
        "stop_pings" => Fault::AnswerPings(false),
        "resume_pings" => Fault::AnswerPings(true),
        "stream_error" => Fault::StreamError {
            code: b.code,
            conflict: b.conflict,
        },
        "unlink" => Fault::Unlink,
        "corrupt_next" => Fault::CorruptNext,
        "withhold_receipts" => Fault::WithholdReceipts(b.on.unwrap_or(true)),
        "withhold_acks" => Fault::WithholdAcks(b.on.unwrap_or(true)),
        "reach_out_lock" => Fault::ReachOutLock(b.on.unwrap_or(true)),
        "lid_unmigrated" => Fault::LidUnmigrated(b.on.unwrap_or(true)),
        "aggregate_receipts" => Fault::AggregateReceipts(b.on.unwrap_or(true)),
        "media_deleted" => Fault::MediaDeleted(b.on.unwrap_or(true)),
        "require_cstoken" => Fault::RequireCsToken(b.on.unwrap_or(true)),
        other => {
            return bad(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown fault {other:?} (drop, stop_pings, resume_pings, stream_error, \
                     unlink, corrupt_next, withhold_receipts, withhold_acks, reach_out_lock, lid_unmigrated, \
                     aggregate_receipts, media_deleted, require_cstoken)"
                ),
            );
        }
    };
    let reached = sim.fault(&b.account, f).await;
    if reached == 0 {
        return bad(
            StatusCode::NOT_FOUND,
            "no linked device of that account is connected",
        );
    }
    (StatusCode::OK, Json(json!({ "devices": reached })))
}

fn sim_error(e: SimError) -> Reply {
    match e {
        e @ (SimError::BadNumber
        | SimError::BadDeviceCount
        | SimError::TooMany
        | SimError::BadMessage
        | SimError::BadMedia(_)) => bad(StatusCode::BAD_REQUEST, e),
        e @ SimError::NoSuchGroup => bad(StatusCode::NOT_FOUND, e),
        e => bad(StatusCode::CONFLICT, e),
    }
}

async fn send(
    State(sim): State<Simulator>,
    Path(number): Path<String>,
    body: Result<Json<SendBody>, JsonRejection>,
) -> Reply {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if let Some(media) = b.media {
        if !b.content.is_empty() {
            return bad(StatusCode::BAD_REQUEST, "media goes alone");
        }
        let send = match media.into_send() {
            Ok(s) => s,
            Err(e) => return bad(StatusCode::BAD_REQUEST, e),
        };
        return match sim.phone_send_media(&number, &b.to, send).await {
            Ok((id, info)) => (
                StatusCode::OK,
                Json(json!({
                    "id": id,
                    "sha256": info.sha256,
                    "size": info.size,
                    "encSha256": info.enc_sha256,
                    "directPath": info.direct_path,
                })),
            ),
            Err(e) => sim_error(e),
        };
    }
    if b.content
        .text
        .as_ref()
        .is_some_and(|t| t.is_empty() || t.len() > 65_536)
    {
        return bad(StatusCode::BAD_REQUEST, "text must be 1–65,536 bytes");
    }
    // Keys in the content name the chat as the sender addresses it.
    let chat = if b.to.contains('@') {
        b.to.clone()
    } else {
        format!("{}@s.whatsapp.net", b.to)
    };
    let composed = match b.content.build(&chat, crate::util::clock::now_ms_i64()) {
        Ok(c) => c,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e),
    };
    match sim
        .phone_send_message(&number, &b.to, &composed.plain, composed.admin)
        .await
    {
        Ok(id) => (StatusCode::OK, Json(json!({ "id": id }))),
        Err(e) => sim_error(e),
    }
}

async fn messages(State(sim): State<Simulator>, Path(number): Path<String>) -> Reply {
    if !super::server::valid_number(&number) {
        return bad(StatusCode::BAD_REQUEST, SimError::BadNumber);
    }
    (StatusCode::OK, Json(json!(sim.phone_messages(&number))))
}

/// `POST /phones/{number}/history` `{chats, messages, recent?, fault?}`: seeds the phone's
/// chat history before a companion links.
async fn seed_history(
    State(sim): State<Simulator>,
    Path(number): Path<String>,
    body: Result<Json<super::history::HistorySeed>, JsonRejection>,
) -> Reply {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match sim.seed_history(&number, &b) {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "chats": b.chats, "messages": b.messages })),
        ),
        Err(e) => sim_error(e),
    }
}

/// `GET /phones/{number}/history`: per linked companion of the phone, the history-sync
/// notifications the phone sent it (`sent`: message id, syncType, chunk) and the receipts it
/// sent back (`receipts`: message id and type, `hist_sync` among them), oldest first.
async fn history_sent(State(sim): State<Simulator>, Path(number): Path<String>) -> Reply {
    if !super::server::valid_number(&number) {
        return bad(StatusCode::BAD_REQUEST, SimError::BadNumber);
    }
    let companions: Vec<serde_json::Value> = sim
        .linked_devices(&number)
        .iter()
        .map(|d| {
            let receipts: Vec<serde_json::Value> = sim
                .receipts(d)
                .into_iter()
                .map(|(id, kind)| json!({ "id": id, "type": kind }))
                .collect();
            json!({ "device": d.to_string(), "sent": sim.history_sent(d), "receipts": receipts })
        })
        .collect();
    (StatusCode::OK, Json(json!(companions)))
}

async fn delete_account(State(sim): State<Simulator>, Path(number): Path<String>) -> Reply {
    match sim.delete_account(&number).await {
        Ok(()) => (StatusCode::OK, Json(json!({ "deleted": number }))),
        Err(e) => sim_error(e),
    }
}

/// Body of `POST /phones/{number}/capping`: the account's new-chat message capping (fields as
/// the `w:mex` answer names them, camelCase), or `{"off": true}` to lift it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CappingBody {
    /// Lift the capping altogether.
    #[serde(default)]
    pub off: bool,
    /// New chats allowed per cycle.
    pub total_quota: Option<u64>,
    /// New chats used this cycle.
    pub used_quota: Option<u64>,
    /// Cycle start (unix seconds).
    pub cycle_start: Option<u64>,
    /// Cycle end (unix seconds).
    pub cycle_end: Option<u64>,
    /// `NONE`, `FIRST_WARNING`, `SECOND_WARNING`, `CAPPED`.
    pub capping_status: Option<String>,
    /// One-time-extension status.
    pub ote_status: Option<String>,
    /// Meta Verified status.
    pub mv_status: Option<String>,
}

async fn set_capping(
    State(sim): State<Simulator>,
    Path(number): Path<String>,
    body: Result<Json<CappingBody>, JsonRejection>,
) -> Reply {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let word = |s: &Option<String>| {
        s.as_ref()
            .is_none_or(|s| s.len() <= 64 && s.bytes().all(|c| c.is_ascii_uppercase() || c == b'_'))
    };
    if !word(&b.capping_status) || !word(&b.ote_status) || !word(&b.mv_status) {
        return bad(StatusCode::BAD_REQUEST, "statuses are upper-case words");
    }
    let capping = (!b.off).then_some(crate::stanza::mex::NewChatCapping {
        total_quota: b.total_quota,
        used_quota: b.used_quota,
        cycle_start: b.cycle_start,
        cycle_end: b.cycle_end,
        server_sent: None,
        capping_status: b.capping_status,
        ote_status: b.ote_status,
        mv_status: b.mv_status,
    });
    match sim.set_capping(&number, capping) {
        Ok(told) => (
            StatusCode::OK,
            Json(json!({ "capping": sim.capping(&number), "devices": told })),
        ),
        Err(e) => sim_error(e),
    }
}

async fn capping(State(sim): State<Simulator>, Path(number): Path<String>) -> Reply {
    (
        StatusCode::OK,
        Json(json!({ "capping": sim.capping(&number) })),
    )
}

async fn echo(
    State(sim): State<Simulator>,
    Path(number): Path<String>,
    body: Result<Json<EchoBody>, JsonRejection>,
) -> Reply {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match sim.set_echo(&number, b.on) {
        Ok(()) => (StatusCode::OK, Json(json!({ "echo": b.on }))),
        Err(e) => sim_error(e),
    }
}

async fn devices(
    State(sim): State<Simulator>,
    Path(number): Path<String>,
    body: Result<Json<DevicesBody>, JsonRejection>,
) -> Reply {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match sim.set_devices(&number, b.count) {
        Ok(()) => (StatusCode::OK, Json(json!({ "devices": b.count }))),
        Err(e) => sim_error(e),
    }
}

fn group_jid(s: &str) -> Option<crate::binary::Jid> {
    let j: crate::binary::Jid = if s.contains('@') {
        s.parse().ok()?
    } else {
        crate::binary::Jid::new(s, crate::binary::Server::Group)
    };
    (j.server == crate::binary::Server::Group && !j.user.is_empty()).then_some(j)
}

fn group_json(g: &crate::stanza::group::GroupInfo) -> Value {
    json!({
        "jid": g.jid.to_string(),
        "subject": g.subject,
        "creator": g.creator.as_ref().map(|c| c.to_string()),
        "addressing_mode": g.addressing.as_str(),
        "participants": g.participants.iter().map(|p| json!({
            "jid": p.jid.to_string(),
            "phone_number": p.phone_number.as_ref().map(|j| j.to_string()),
            "lid": p.lid.as_ref().map(|j| j.to_string()),
            "admin": p.admin,
        })).collect::<Vec<_>>(),
    })
}

async fn create_group(
    State(sim): State<Simulator>,
    body: Result<Json<GroupBody>, JsonRejection>,
) -> Reply {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let mode = match b.addressing_mode.as_deref() {
        None | Some("pn") => crate::stanza::group::AddressingMode::Pn,
        Some("lid") => crate::stanza::group::AddressingMode::Lid,
        Some(_) => return bad(StatusCode::BAD_REQUEST, "addressing_mode must be pn or lid"),
    };
    if b.subject.is_empty() || b.subject.len() > 1024 {
        return bad(StatusCode::BAD_REQUEST, "subject must be 1–1,024 bytes");
    }
    match sim.create_group(&b.subject, &b.creator, &b.participants, mode) {
        Ok(jid) => (StatusCode::OK, Json(json!({ "jid": jid.to_string() }))),
        Err(e) => sim_error(e),
    }
}

async fn group(State(sim): State<Simulator>, Path(jid): Path<String>) -> Reply {
    let Some(j) = group_jid(&jid) else {
        return bad(StatusCode::BAD_REQUEST, "not a group JID");
    };
    match sim.group_info(&j) {
        Some(g) => (StatusCode::OK, Json(group_json(&g))),
        None => sim_error(SimError::NoSuchGroup),
    }
}

async fn participants(
    State(sim): State<Simulator>,
    Path(jid): Path<String>,
    body: Result<Json<ParticipantsBody>, JsonRejection>,
) -> Reply {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Some(j) = group_jid(&jid) else {
        return bad(StatusCode::BAD_REQUEST, "not a group JID");
    };
    if b.add.len() + b.remove.len() > super::groups::MAX_MEMBERS {
        return sim_error(SimError::TooMany);
    }
    match sim
        .group_members(&j, &b.add, &b.remove, !b.notify.unwrap_or(true))
        .await
    {
        Ok(results) => (
            StatusCode::OK,
            Json(json!({
                "results": results
                    .iter()
                    .map(|(n, e)| json!({ "number": n, "error": e }))
                    .collect::<Vec<_>>(),
            })),
        ),
        Err(e) => sim_error(e),
    }
}

async fn stanzas(
    State(sim): State<Simulator>,
    query: Result<Query<StanzasQuery>, QueryRejection>,
) -> Reply {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if q.id.is_empty() || q.id.len() > 128 {
        return bad(StatusCode::BAD_REQUEST, "id must be 1–128 bytes");
    }
    (StatusCode::OK, Json(json!(sim.transmissions(&q.id))))
}

/// `GET /samples/{name}`: one of the sample files, to send through a client under test.
async fn sample_file(Path(name): Path<String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match super::samples::sample(&name) {
        Some((bytes, mime)) => ([(axum::http::header::CONTENT_TYPE, mime)], bytes).into_response(),
        None => bad(StatusCode::NOT_FOUND, "no such sample").into_response(),
    }
}

async fn cdn_media(State(sim): State<Simulator>) -> Reply {
    (StatusCode::OK, Json(json!(sim.cdn_media())))
}

async fn cdn_transfers(State(sim): State<Simulator>) -> Reply {
    (StatusCode::OK, Json(json!(sim.cdn_transfers())))
}

async fn cdn_fault(
    State(sim): State<Simulator>,
    body: Result<Json<CdnFaultBody>, JsonRejection>,
) -> Reply {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let media = || b.media.clone().filter(|m| !m.is_empty() && m.len() <= 4096);
    let f = match b.fault.as_str() {
        "expire_media" | "corrupt_media" => {
            let Some(m) = media() else {
                return bad(
                    StatusCode::BAD_REQUEST,
                    "media (enc sha256 or direct path) required",
                );
            };
            if b.fault == "expire_media" {
                CdnFault::Expire(m)
            } else {
                CdnFault::Corrupt(m)
            }
        }
        "refuse_uploads" => CdnFault::RefuseUploads(b.count.unwrap_or(1)),
        "expire_auth" => CdnFault::ExpireAuth,
        "slow_transfers" => CdnFault::SlowTransfers(b.bytes_per_second.filter(|r| *r > 0)),
        other => {
            return bad(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown CDN fault {other:?} (expire_media, corrupt_media, refuse_uploads, \
                     expire_auth, slow_transfers)"
                ),
            );
        }
    };
    match sim.cdn_fault(&f) {
        0 => bad(StatusCode::NOT_FOUND, "no stored media matches"),
        n => (StatusCode::OK, Json(json!({ "affected": n }))),
    }
}

/// A JID as the control API takes it: digits are a phone number.
fn jid_of(s: &str) -> Option<crate::binary::Jid> {
    if s.contains('@') {
        s.parse().ok()
    } else {
        super::server::valid_number(s)
            .then(|| crate::binary::Jid::new(s, crate::binary::Server::User))
    }
}

/// The action a body asks for; Err says what is wrong with it.
fn phone_action(sim: &Simulator, b: AppStateBody) -> Result<PhoneAction, String> {
    let chat = || {
        b.chat
            .as_deref()
            .and_then(jid_of)
            .map(|j| j.to_non_ad())
            .ok_or_else(|| format!("{} needs chat (digits or a JID)", b.action))
    };
    Ok(match b.action.as_str() {
        "archive" | "unarchive" => PhoneAction::Archive {
            chat: chat()?,
            archived: b.action == "archive",
        },
        "mute" => PhoneAction::Mute {
            chat: chat()?,
            until_ms: Some(b.until.unwrap_or(-1)),
        },
        "unmute" => PhoneAction::Mute {
            chat: chat()?,
            until_ms: None,
        },
        "pin" | "unpin" => PhoneAction::Pin {
            chat: chat()?,
            pinned: b.action == "pin",
        },
        "read" | "unread" => PhoneAction::MarkRead {
            chat: chat()?,
            read: b.action == "read",
        },
        "contact" => {
            let jid = b
                .jid
                .as_deref()
                .and_then(jid_of)
                .filter(|j| j.server == crate::binary::Server::User)
                .ok_or("contact needs jid (digits or a PN JID)")?;
            let full_name = b
                .full_name
                .filter(|n| !n.is_empty() && n.len() <= 1024)
                .ok_or("contact needs fullName (1–1,024 bytes)")?;
            if b.first_name.as_ref().is_some_and(|n| n.len() > 1024) {
                return Err("firstName is at most 1,024 bytes".into());
            }
            let lid = match b.lid {
                Some(l) => Some(
                    jid_of(&l)
                        .filter(|j| j.server == crate::binary::Server::Lid)
                        .ok_or("lid must be a LID JID")?
                        .to_non_ad(),
                ),
                None => sim
                    .lid_of(&jid.user)
                    .map(|l| crate::binary::Jid::new(l, crate::binary::Server::Lid)),
            };
            PhoneAction::Contact {
                jid: jid.to_non_ad(),
                full_name,
                first_name: b.first_name,
                lid,
            }
        }
        "remove_contact" => PhoneAction::RemoveContact {
            jid: b
                .jid
                .as_deref()
                .and_then(jid_of)
                .filter(|j| j.server == crate::binary::Server::User)
                .ok_or("remove_contact needs jid (digits or a PN JID)")?
                .to_non_ad(),
        },
        "set_nct_salt" => {
            let salt = match b.salt {
                Some(h) => crate::util::hex::decode(&h)
                    .filter(|s| !s.is_empty() && s.len() <= 256)
                    .ok_or("salt must be 1–256 bytes of hex")?,
                None => rand::random::<[u8; 32]>().to_vec(),
            };
            PhoneAction::NctSalt(Some(salt))
        }
        "remove_nct_salt" => PhoneAction::NctSalt(None),
        other => {
            return Err(format!(
                "unknown action {other:?} (archive, unarchive, mute, unmute, pin, unpin, read, \
                 unread, contact, remove_contact, set_nct_salt, remove_nct_salt)"
            ));
        }
    })
}

async fn app_state_action(
    State(sim): State<Simulator>,
    Path(number): Path<String>,
    body: Result<Json<AppStateBody>, JsonRejection>,
) -> Reply {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if !super::server::valid_number(&number) {
        return bad(StatusCode::BAD_REQUEST, SimError::BadNumber);
    }
    let action = match phone_action(&sim, b) {
        Ok(a) => a,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e),
    };
    match sim.app_state_action(&number, &action) {
        Ok((collection, version)) => (
            StatusCode::OK,
            Json(json!({ "collection": collection, "version": version })),
        ),
        Err(e) => sim_error(e),
    }
}

async fn app_state(
    State(sim): State<Simulator>,
    Path((number, collection)): Path<(String, String)>,
) -> Reply {
    match sim.app_state(&number, &collection) {
        Some(view) => (StatusCode::OK, Json(json!(view))),
        None => bad(StatusCode::NOT_FOUND, "no such user or collection"),
    }
}

async fn app_state_fault(
    State(sim): State<Simulator>,
    Path((number, collection)): Path<(String, String)>,
    body: Result<Json<AppStateFaultBody>, JsonRejection>,
) -> Reply {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let how = match b.fault.as_str() {
        "corrupt_patch" => Corruption::Patch,
        "corrupt_snapshot" => Corruption::Snapshot,
        "drop_patch" => Corruption::DropPatch,
        other => {
            return bad(
                StatusCode::BAD_REQUEST,
                format!("unknown fault {other:?} (corrupt_patch, corrupt_snapshot, drop_patch)"),
            );
        }
    };
    if sim.app_state_fault(&number, &collection, how) {
        (StatusCode::OK, Json(json!({ "collection": collection })))
    } else {
        bad(
            StatusCode::NOT_FOUND,
            "nothing to damage in that collection",
        )
    }
}
