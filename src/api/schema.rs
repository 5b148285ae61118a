//! The typed shapes of the API's requests and answers, as the OpenAPI document declares them.
//! The handlers answer the same shapes as JSON; `openapi` assembles these into the document.
//! This module knows nothing of handlers or routing.

use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

/// `meta` of every answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Meta {
    /// This request's id (also on its log lines).
    #[schema(format = "uuid")]
    operation_id: String,
    /// How long the request took.
    #[schema(example = "123ms")]
    duration: String,
}

/// A successful answer.
#[derive(Serialize, ToSchema)]
pub(super) struct Envelope<T> {
    /// Always true here.
    success: bool,
    /// What happened, for people.
    message: String,
    /// The answer.
    data: T,
    /// About the request.
    meta: Meta,
}

/// The stable code of a refusal.
#[derive(Serialize, ToSchema)]
pub(super) struct ErrorCode {
    /// e.g. `invalid_to`, `not_connected`, `rate_limited`.
    code: String,
    /// A send WhatsApp refused (`privacy_token_required`, `account_restricted`,
    /// `privacy_token_rejected`, `new_chat_cap_reached`): what would lift it.
    #[serde(skip_serializing_if = "Option::is_none")]
    remedy: Option<String>,
    /// With `remedy`: when the time-lock or the capping cycle ends (ISO 8601), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<String>,
}

/// A refusal.
#[derive(Serialize, ToSchema)]
pub(super) struct ErrorEnvelope {
    /// Always false here.
    success: bool,
    /// What was wrong, for people.
    message: String,
    /// What was wrong, for programs.
    error: ErrorCode,
    /// About the request.
    meta: Meta,
}

/// `connect`'s answer while a QR code is to be scanned.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct QrData {
    /// The QR text.
    qr_code: String,
    /// The same as a PNG data URL.
    qr_code_data_url: String,
    /// What to do with it.
    message: String,
}

/// `connect`'s answer: a QR code to scan, or the status of an agent already linked.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // a schema: the handler answers the same shapes as JSON
pub(super) enum ConnectData {
    /// Scan this.
    Qr(QrData),
    /// Linked already.
    Status(StatusData),
}

/// A connection's status.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct StatusData {
    /// Logged in to WhatsApp and heard from recently.
    is_connected: bool,
    /// A client runs for it (absent when never connected).
    is_active: Option<bool>,
    /// A QR code is showing.
    #[serde(rename = "hasQR")]
    has_qr: Option<bool>,
    /// The QR code showing, as a PNG data URL; absent for viewers (whoever holds it can link
    /// a phone to the account).
    qr_code_data_url: Option<String>,
    /// The linked phone number.
    phone_number: Option<String>,
    /// The phone's platform.
    platform: Option<String>,
    /// The WhatsApp display name.
    pushname: Option<String>,
    /// The guide's status: `not_initialized` (never connected), `pending` (on its way:
    /// connecting, showing a QR, logging in, reconnecting), `connected` or `disconnected`.
    status: String,
    /// The precise state (absent when `not_initialized`): `connecting`, `awaiting_pair`,
    /// `logging_in`, `connected`, `unresponsive` (logged in but silent past the keepalive's
    /// limit), `reconnecting`, `disconnected`, `logged_out`, `qr_timeout`, `temp_banned`,
    /// `client_outdated`, `replaced`, `error`.
    code: Option<String>,
    /// The client's stable failure code when the state came with one (a stream error's code,
    /// `qr_timeout`, …; `interrupted`: the service stopped before a link was made).
    reason: Option<String>,
    /// The account's reach-out time-lock, once WhatsApp told it.
    reachout_timelock: Option<Timelock>,
}

/// WhatsApp's reach-out time-lock: while active, sends to new chats are refused (463).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Timelock {
    /// New chats are barred now.
    is_active: bool,
    /// Until when, when WhatsApp says.
    #[schema(format = DateTime)]
    ends_at: Option<String>,
    /// Why (`DEFAULT`, `BIZ_COMMERCE_VIOLATION_…`).
    enforcement_type: String,
}

/// An account's reach-out limits (`GET …/limits`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a schema: the handler answers the same shape as JSON
#[serde(rename_all = "camelCase")]
pub(super) struct LimitsData {
    /// `hold` or `refuse`: what a send to a cold contact meets while new chats are barred.
    cold_send: String,
    /// New chats are barred now (time-locked, or the capping quota used up).
    new_chats_barred: bool,
    /// `timelocked` or `capped`, while barred.
    barred_reason: Option<String>,
    /// Until when, while barred and WhatsApp says.
    #[schema(format = DateTime)]
    barred_until: Option<String>,
    /// The time-lock, once WhatsApp said it.
    reachout_timelock: Option<Timelock>,
    /// The new-chat capping, once WhatsApp said it.
    new_chat_capping: Option<Capping>,
}

/// WhatsApp's new-chat message capping: new 1:1 chats per cycle (every field optional: WhatsApp
/// omits what does not apply to the account).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a schema
#[serde(rename_all = "camelCase")]
pub(super) struct Capping {
    /// New chats allowed per cycle.
    total_quota: Option<u64>,
    /// New chats started this cycle.
    used_quota: Option<u64>,
    /// Left this cycle.
    remaining: Option<u64>,
    /// Cycle start.
    #[schema(format = DateTime)]
    cycle_start: Option<String>,
    /// Cycle end: the quota resets then.
    #[schema(format = DateTime)]
    cycle_end: Option<String>,
    /// `NONE`, `FIRST_WARNING`, `SECOND_WARNING`, `CAPPED`.
    capping_status: Option<String>,
    /// One-time-extension status.
    ote_status: Option<String>,
    /// Meta Verified status.
    mv_status: Option<String>,
}

/// `send`'s JSON body (unknown fields are ignored). At most 512 KiB, or 24 MiB with `media`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "to": "1234567890", "message": "Hello from our chat agent!" }))]
pub(super) struct SendBody {
    /// International digits without `+`, or a `…@c.us`, `…@s.whatsapp.net`, `…@lid` or
    /// `…@g.us` JID.
    to: String,
    /// The text (`text` is accepted too); with `media`, its optional caption.
    #[schema(max_length = 65536)]
    message: Option<String>,
    /// Wait for WhatsApp's ack (up to the configured time); default true.
    wait: Option<bool>,
    /// The file's kind: `image`, `video`, `gif`, `ptv`, `audio`, `ptt`, `document` or
    /// `sticker`; by default the bytes (or the mimetype) decide.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// A file to send.
    media: Option<SendMedia>,
}

/// A JSON send's file: exactly one of `url` and `base64`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SendMedia {
    /// Where to fetch it (http or https; public addresses only unless
    /// `WA_GATEWAY_MEDIA_URL_ALLOW_PRIVATE`; redirects are not followed).
    url: Option<String>,
    /// The file, standard base64 (RFC 4648 §4, padded).
    #[schema(content_encoding = "base64")]
    base64: Option<String>,
    /// Its mimetype (else sniffed from the bytes).
    mimetype: Option<String>,
    /// A document's file name.
    filename: Option<String>,
    /// A JPEG thumbnail of at most 64 KiB, standard base64 (else one is made for images).
    #[schema(content_encoding = "base64")]
    thumbnail: Option<String>,
}

/// `send`'s `multipart/form-data` body: the file streamed, never held whole.
#[derive(Serialize, ToSchema)]
pub(super) struct SendForm {
    /// As in the JSON body.
    to: String,
    /// The caption (`text` and `caption` are accepted too).
    #[schema(max_length = 65536)]
    message: Option<String>,
    /// The file; its part's `Content-Type` and file name count when `mimetype` and
    /// `filename` are not given.
    #[schema(value_type = Option<String>, format = Binary)]
    file: Option<Vec<u8>>,
    /// As in the JSON body; may come before or after `file`.
    #[serde(rename = "type")]
    #[schema(max_length = 1024)]
    kind: Option<String>,
    /// A JPEG thumbnail of at most 64 KiB (raw bytes).
    #[schema(value_type = Option<String>, format = Binary)]
    thumbnail: Option<Vec<u8>>,
    /// The file's mimetype.
    #[schema(max_length = 1024)]
    mimetype: Option<String>,
    /// A document's file name.
    #[schema(max_length = 1024)]
    filename: Option<String>,
    /// `true` or `false`, as in the JSON body.
    #[schema(max_length = 1024)]
    wait: Option<String>,
}

/// A file's bytes, as stored.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub(super) struct FileBytes(#[allow(dead_code)] Vec<u8>);

/// `send`'s answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SendData {
    /// `true_<chat>_<id>`, kept however often it is tried.
    message_id: String,
    /// The recipient, `…@c.us` for numbers.
    to: String,
    /// The recipient's phone number (`…@c.us`), when known; null for a group.
    to_pn: Option<String>,
    /// The recipient's LID (`<user>@lid`), when known (before the send, or learnt by it);
    /// null when unknown and for a group.
    to_lid: Option<String>,
    /// The text.
    message: String,
    /// When WhatsApp took it (unix seconds).
    timestamp: Option<u64>,
    /// `server_ack` once acked, `held` while a cold send waits for the account's limits to
    /// lift (WA_GATEWAY_COLD_SEND=hold), else `pending`.
    status: String,
    /// While `held`: why (`timelocked` or `capped`) and until when.
    hold: Option<Hold>,
}

/// Why a send is held, and until when.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a schema
pub(super) struct Hold {
    /// `timelocked` or `capped`.
    reason: String,
    /// When the limit ends, when WhatsApp says.
    #[schema(format = DateTime)]
    until: Option<String>,
}

/// A message as history (and a `message.received` webhook) shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Message {
    /// `<fromMe>_<chat>_<id>`.
    message_id: String,
    /// The author of an inbound message.
    from: Option<String>,
    /// The recipient of an outbound message.
    to: Option<String>,
    /// The author's phone number (`…@c.us`): the sender of an inbound message (a group
    /// message's participant), the account itself for an outbound one; null when not known.
    from_pn: Option<String>,
    /// The author's LID (`<user>@lid`), from the account's PN↔LID mappings; null when not
    /// known.
    from_lid: Option<String>,
    /// The recipient's phone number: the contact of an outbound 1:1 message, the account
    /// itself for an inbound 1:1 one; null for a group message (`chat` names the group) and
    /// when not known.
    to_pn: Option<String>,
    /// The recipient's LID, as `toPn`; null for a group message and when not known.
    to_lid: Option<String>,
    /// The text, or a media caption (what stands for them: a reaction's emoji, a poll's
    /// question, a vCard); null when the kind has none or the message was revoked.
    message: Option<String>,
    /// `inbound` or `outbound`.
    direction: String,
    /// The message's own time.
    #[schema(format = DateTime)]
    timestamp: String,
    /// True for the media kinds (`image`, `video`, `ptv`, `audio`, `ptt`, `document`,
    /// `sticker`).
    has_media: bool,
    /// whatsapp-web.js's type name: `chat`, `image`, `video`, `ptv`, `audio`, `ptt`,
    /// `document`, `sticker`, `location`, `vcard`, `multi_vcard`, `revoked`, `poll_creation`,
    /// `poll_vote`, `buttons_response`, `list_response`, `template_button_reply`,
    /// `interactive_response`, `groups_v4_invite`, `scheduled_event_creation`, `pin_in_chat`,
    /// `reaction`, … and `unknown` (with the protobuf field numbers in `content.fields`).
    #[serde(rename = "type")]
    kind: String,
    /// When it was stored.
    #[schema(format = DateTime)]
    created_at: String,
    /// The conversation (`…@c.us` or `…@g.us`).
    chat: String,
    /// The delivery ladder: `pending`, `server_ack`, `delivered`, `read`, `played`,
    /// `failed`, or never acked and no longer sent: `cancelled` (disconnected), `expired`;
    /// `received` for inbound.
    status: String,
    /// WhatsApp's error code of a failed send.
    error_code: Option<u16>,
    /// Why a failed send failed and what would lift it (null otherwise).
    error: Option<SendFailureInfo>,
    /// What the kind carries, camelCase: a location's `latitude`, `longitude`, `name`,
    /// `address`, `comment`, `live`; a vCard's `displayName`, `vcard` (`contacts` for several);
    /// media `mimetype`, `fileLength`, `seconds`, `width`, `height`, `fileName`; a reaction's
    /// `emoji`, `targetId`, `removed`; a poll's `name`, `options`, `selectableCount`; replies'
    /// `selectedButtonId`/`selectedRowId`/`selectedId`; and for any kind `quoted` (`id`,
    /// `participant`), `mentions`, `forwarded`, `expirationSeconds`. Empty for plain text.
    content: Object,
    /// Came in a disappearing-messages envelope or with a timer.
    ephemeral: bool,
    /// Came as view once.
    view_once: bool,
    /// When its author last edited it (`message` is the edited text).
    #[schema(format = DateTime)]
    edited_at: Option<String>,
    /// Deleted for everyone by its author (or a group admin): `type` is `revoked`.
    revoked: bool,
    /// Reactions on it, the latest per person.
    reactions: Vec<Reaction>,
    /// A media message's file (absent for other kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    media: Option<MediaFile>,
}

/// A media message's file as stored.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct MediaFile {
    /// The mimetype its message declared.
    mimetype: Option<String>,
    /// Its length as declared.
    size: Option<u64>,
    /// SHA-256 of the file, hex (the download's ETag).
    sha256: Option<String>,
    /// A document's file name.
    file_name: Option<String>,
    /// Audio or video length.
    seconds: Option<u32>,
    /// Width.
    width: Option<u32>,
    /// Height.
    height: Option<u32>,
    /// `pending` (to be fetched), `stored`, `failed` (`error` says why) or `skipped` (not
    /// fetched unasked; fetched on download).
    state: String,
    /// Why it failed or was skipped.
    error: Option<String>,
    /// Where to download it: the API path (takes the JWT), or in webhooks with
    /// `WA_GATEWAY_PUBLIC_URL` set, a signed link that expires.
    download_url: Option<String>,
}

/// Why a send failed, and what would lift it.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a schema
pub(super) struct SendFailureInfo {
    /// The stable code: `privacy_token_required` (a 463 without a token: the contact never
    /// wrote and no cstoken could go), `account_restricted` (a 463 under a reach-out
    /// time-lock), `privacy_token_rejected` (a 463 although a token went, no time-lock
    /// known), `new_chat_cap_reached` (475), `send_expired`, …; `refused_by_whatsapp` for a
    /// 463 whose circumstances were not kept (its outbox record pruned).
    code: String,
    /// What happened.
    message: String,
    /// What would lift it, for the reach-out refusals (never retried automatically).
    remedy: Option<String>,
    /// When the time-lock or the capping cycle ends, when WhatsApp says.
    #[schema(format = DateTime)]
    until: Option<String>,
}

/// A reaction on a message.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Reaction {
    /// Who reacted (`…@c.us`).
    from: String,
    /// Who reacted, by phone number, when known.
    from_pn: Option<String>,
    /// Who reacted, by LID (`<user>@lid`), when known.
    from_lid: Option<String>,
    /// The emoji.
    emoji: String,
    #[schema(format = DateTime)]
    timestamp: String,
}

/// A page of history.
#[derive(Serialize, ToSchema)]
pub(super) struct MessagesData {
    /// Newest first.
    messages: Vec<Message>,
    /// How many are on this page.
    count: usize,
}

/// A connection row.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Connection {
    subaccount_id: String,
    agent_id: String,
    /// As `status` answers it: `pending`, `connected` or `disconnected`.
    status: String,
    /// The precise state, as `status` answers it.
    code: String,
    /// The client's stable failure code, as `status` answers it.
    reason: Option<String>,
    phone_number: Option<String>,
    platform: Option<String>,
    pushname: Option<String>,
    #[schema(format = DateTime)]
    connected_at: Option<String>,
    #[schema(format = DateTime)]
    disconnected_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// A subaccount's connections.
#[derive(Serialize, ToSchema)]
pub(super) struct ConnectionsData {
    connections: Vec<Connection>,
    count: usize,
}

/// `disconnect`'s answer.
#[derive(Serialize, ToSchema)]
pub(super) struct DisconnectData {
    message: String,
}

/// The answer of removing an agent: which one went.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeleteAgentData {
    /// Its subaccount.
    subaccount_id: String,
    /// The agent removed, with all its data.
    agent_id: String,
}

/// One activity.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Activity {
    id: i64,
    /// `whatsapp_connected`, `whatsapp_disconnected`, `whatsapp_message_sent`,
    /// `whatsapp_message_received`.
    #[serde(rename = "type")]
    kind: String,
    /// `chat`.
    category: String,
    subaccount_id: String,
    agent_id: String,
    user_id: Option<String>,
    details: Object,
    #[schema(format = DateTime)]
    created_at: String,
}

/// A JSON object.
#[derive(Serialize, ToSchema)]
pub(super) struct Object {}

/// The activity log.
#[derive(Serialize, ToSchema)]
pub(super) struct ActivitiesData {
    activities: Vec<Activity>,
    count: usize,
}

/// `PUT …/webhook`'s body.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "url": "https://agent.example.com/whatsapp", "secret": "a-long-random-secret", "events": ["message.received"] }))]
pub(super) struct WebhookBody {
    /// An http or https URL.
    #[schema(format = "uri", max_length = 2048)]
    url: String,
    /// The HMAC-SHA256 key of the signature header; never shown again.
    #[schema(min_length = 16, max_length = 256)]
    secret: String,
    /// `message.received`, `message.status`, `connection.update`, `message.reaction`,
    /// `message.edited`, `message.revoked`, `message.undecryptable`; default all.
    events: Option<Vec<String>>,
}

/// A webhook as shown (never its secret).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct WebhookData {
    url: String,
    events: Vec<String>,
    /// The header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>`.
    signature_header: String,
    created_by: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// What a webhook receives: the body of each POST.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct WebhookEvent {
    /// A ULID: unique and sortable; deduplicate on it (a retry carries the same).
    id: String,
    /// `message.received`, `message.status`, `connection.update`, `message.reaction`,
    /// `message.edited`, `message.revoked` or `message.undecryptable`.
    event: String,
    #[schema(format = DateTime)]
    created_at: String,
    subaccount_id: String,
    agent_id: String,
    /// `message.received`: a history message (with `fromPn`, `fromLid`, `toPn`, `toLid`);
    /// `message.status`: `messageId`, `to`, `toPn`, `toLid` (null for a group), `status`,
    /// `errorCode`, `error` (`code`, `message`, `remedy`, `until`: why a failed or unsent send
    /// failed and what would lift it); `connection.update`: `status`, `code`, `reason`,
    /// `phoneNumber`; `message.reaction` / `message.edited` / `message.revoked`: `messageId`
    /// (the message acted on), `chat`, `by`, `byPn`, `byLid`, `fromMe`, `timestamp`, `message`
    /// (it as history now shows it), plus `emoji` and `removed` for a reaction and `admin` for
    /// a revoke. A contact's phone number is `…@c.us`, its LID `<user>@lid`; null when the
    /// account does not know that form.
    data: Object,
}

/// One webhook event and how its delivery goes.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Delivery {
    id: String,
    event: String,
    /// `pending`, `delivered` or `failed` (dead-lettered).
    state: String,
    attempts: i64,
    /// The HTTP status of the last attempt.
    last_status: Option<i64>,
    /// Why the last attempt failed. To viewers only its kind: `timed out`, `connection
    /// failed`, `address not allowed`, `HTTP <status>`, `answer unreadable`, `reply not
    /// queued` or `internal error`; to members and admins the detail (never the URL).
    last_error: Option<String>,
    /// Why the taken answer's `reply` was not sent: `not_json` (not a JSON object),
    /// `no_reply`, `not_text`, `empty`, `too_long` (over 65,536 bytes), `not_repliable` (a
    /// reply to an event other than `message.received`), `no_chat`; null when a reply was
    /// queued or none was expected.
    reply_ignored: Option<String>,
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    delivered_at: Option<String>,
    /// The body as sent (once it was first tried).
    payload: Option<WebhookEvent>,
}

/// A page of deliveries.
#[derive(Serialize, ToSchema)]
pub(super) struct DeliveriesData {
    deliveries: Vec<Delivery>,
    count: usize,
}

/// `/healthz` and `/readyz`'s data.
#[derive(Serialize, ToSchema)]
pub(super) struct Health {
    database: Option<bool>,
    resumed: Option<bool>,
}

/// (subaccount, agent) in the path.
#[derive(IntoParams)]
#[into_params(names("subaccountId", "agentId"), parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct AgentPath(
    /// The tenant's subaccount (1–128 of `A-Z a-z 0-9 _ - . @ :`).
    String,
    /// The chat agent (same alphabet).
    String,
);

/// The subaccount in the path.
#[derive(IntoParams)]
#[into_params(names("subaccountId"), parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct SubaccountPath(
    /// The tenant's subaccount.
    String,
);

/// A page of a list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct Page {
    /// Page size.
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<u32>,
    /// Rows to skip.
    #[param(minimum = 0, default = 0)]
    skip: Option<u32>,
}

/// The deliveries listing's filter.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct DeliveryFilter {
    /// `pending`, `delivered` or `failed`; all when absent.
    status: Option<String>,
}

/// The agent and a chat in the path.
#[derive(IntoParams)]
#[into_params(names("subaccountId", "agentId", "chatId"), parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct ChatPath(
    /// The tenant's subaccount.
    String,
    /// The chat agent.
    String,
    /// The chat: `…@c.us` (or `…@s.whatsapp.net`) for a number, `…@lid`, or `…@g.us`.
    String,
);

/// The agent and a contact in the path.
#[derive(IntoParams)]
#[into_params(names("subaccountId", "agentId", "contactId"), parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct ContactPath(
    /// The tenant's subaccount.
    String,
    /// The chat agent.
    String,
    /// The contact: `…@c.us` (or digits) for a number, or `…@lid`.
    String,
);

/// A chat's newest message.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct LastMessage {
    /// The serialized message id.
    id: String,
    /// Its kind (`text`, `image`, …).
    r#type: String,
    /// The first 100 characters of its text or caption.
    body: Option<String>,
    #[schema(format = DateTime)]
    timestamp: String,
    from_me: bool,
}

/// One chat.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Chat {
    /// The chat as the API names it (`…@c.us` when the number is known, else `…@lid`, or
    /// `…@g.us`).
    id: String,
    /// The contact's number (`…@c.us`), when known.
    pn: Option<String>,
    /// The contact's LID (`…@lid`), when known.
    lid: Option<String>,
    /// The chat's name, else the contact's full name, else its push name.
    name: Option<String>,
    archived: bool,
    /// Pinned since, or null.
    #[schema(format = DateTime)]
    pinned: Option<String>,
    /// Muted until (`forever`, or a time), or null.
    muted_until: Option<String>,
    marked_unread: bool,
    /// The phone's count plus inbound messages after the read marker.
    unread_count: u32,
    /// Disappearing-messages timer (seconds), or null.
    ephemeral_seconds: Option<u32>,
    last_message: Option<LastMessage>,
}

/// A page of chats.
#[derive(Serialize, ToSchema)]
pub(super) struct ChatsData {
    /// Pinned first, then by their newest message.
    chats: Vec<Chat>,
    count: usize,
}

/// One contact.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Contact {
    /// The contact as the API names it (`…@c.us` when the number is known, else `…@lid`).
    id: String,
    /// `…@c.us`, when known.
    pn: Option<String>,
    /// `…@lid`, when known.
    lid: Option<String>,
    full_name: Option<String>,
    first_name: Option<String>,
    push_name: Option<String>,
    username: Option<String>,
    /// Whether the number is on WhatsApp (null: unknown).
    on_whats_app: Option<bool>,
    /// Warm: we hold the contact's unexpired privacy token or it wrote to us. A send to a cold
    /// contact starts a new chat, which WhatsApp's reach-out limits count (see `GET …/limits`).
    warm: bool,
}

/// A page of contacts.
#[derive(Serialize, ToSchema)]
pub(super) struct ContactsData {
    contacts: Vec<Contact>,
    count: usize,
}

/// A chat action, done.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ChatActionData {
    /// The chat.
    chat_id: String,
    /// The action done.
    action: String,
}

/// An on-demand history request, sent.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct HistoryRequestData {
    /// The chat.
    chat_id: String,
    /// The request's message id (to our phone).
    request_id: String,
    /// Messages asked for.
    count: u32,
}
