//! What a `Message` plaintext is: its kind (whatsapp-web.js's type names where one exists), its
//! text or caption, a typed summary of what that kind carries, the envelopes it came in
//! (ephemeral, view once) and, for reactions, edits and revokes, the message they act on.
//!
//! Pure: bytes in, a [`Classified`] out. Envelopes are unwrapped on the wire (field numbers from
//! whatsmeow's `WAWebProtobufsE2E.proto`), so a field this build does not know is still seen and
//! reported as `unknown` with its number instead of being mistaken for an empty message.

use prost::Message as _;
use serde_json::{Map, Value, json};

use crate::proto::wa;

/// Envelopes unwrapped at most (a real message nests two or three).
const MAX_DEPTH: usize = 8;

/// `Message` fields that are envelopes around another `Message` (`FutureProofMessage`, field 1
/// inside), with the flag each sets.
const ENVELOPES: &[(u32, Envelope)] = &[
    (37, Envelope::ViewOnce),
    (40, Envelope::Ephemeral),
    (53, Envelope::Plain),    // document with caption
    (55, Envelope::ViewOnce), // view once v2
    (58, Envelope::Plain),    // edited (whatsmeow's edit form)
    (59, Envelope::ViewOnce), // view once v2 extension
    (62, Envelope::Plain),    // group mentioned
    (67, Envelope::Plain),    // bot invoke
    (74, Envelope::Plain),    // lottie sticker
    (93, Envelope::Plain),    // poll creation v4
    (99, Envelope::Plain),    // limit sharing
    (100, Envelope::Plain),   // bot task
    (101, Envelope::Plain),   // question
    (104, Envelope::Plain),   // bot forwarded
    (106, Envelope::Plain),   // question reply
    (118, Envelope::Plain),   // spoiler
];

/// The device-sent envelope (our other device's copy of what it sent): `DeviceSentMessage`,
/// the content in its field 2.
const DEVICE_SENT: u32 = 31;

/// Fields that carry no conversation content of their own: key distributions, the context
/// every message may carry, and keys or sync payloads between devices.
const PROTOCOL_FIELDS: &[u32] = &[2, 12, 15, 35, 47, 70, 102, 123, 127];

#[derive(Clone, Copy)]
enum Envelope {
    Plain,
    ViewOnce,
    Ephemeral,
}

/// A message's kind, named as whatsapp-web.js names it where it has a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Text (`conversation` or `extendedTextMessage`).
    Chat,
    /// A photo.
    Image,
    /// A video (or GIF).
    Video,
    /// A round video note.
    Ptv,
    /// An audio file.
    Audio,
    /// A voice note.
    Ptt,
    /// A document.
    Document,
    /// A sticker.
    Sticker,
    /// A location pin, or a live location.
    Location,
    /// One contact card.
    Vcard,
    /// Several contact cards.
    MultiVcard,
    /// A message its sender deleted for everyone.
    Revoked,
    /// A poll.
    PollCreation,
    /// A vote on a poll (encrypted to the poll's creator).
    PollVote,
    /// A tap on a button of a buttons message.
    ButtonsResponse,
    /// A choice from a list message.
    ListResponse,
    /// A tap on a template's button.
    TemplateButtonReply,
    /// An answer to an interactive (native flow) message.
    InteractiveResponse,
    /// A buttons message.
    Buttons,
    /// A list message.
    List,
    /// A template message.
    Template,
    /// A highly structured (HSM) message.
    Hsm,
    /// An interactive message.
    Interactive,
    /// An invitation to a group.
    GroupInvite,
    /// A catalogue product.
    Product,
    /// An order.
    Order,
    /// A payment, payment request or invoice.
    Payment,
    /// A call record.
    CallLog,
    /// An event invitation.
    Event,
    /// An album header (its photos and videos follow as their own messages).
    Album,
    /// A message pinned or unpinned in the chat.
    Pin,
    /// A message kept in a disappearing chat.
    KeepInChat,
    /// A placeholder the phone sends for a message it cannot show here yet.
    Ciphertext,
    /// A reaction to a message.
    Reaction,
    /// An edit of an earlier message (applied to it; not listed on its own).
    Edit,
    /// A delete-for-everyone of an earlier message (applied to it; not listed on its own).
    Revoke,
    /// Content this gateway does not render (its field numbers are in the content).
    Unknown,
}

impl Kind {
    /// Every kind, for tests and documentation.
    pub const ALL: &'static [Kind] = &[
        Kind::Chat,
        Kind::Image,
        Kind::Video,
        Kind::Ptv,
        Kind::Audio,
        Kind::Ptt,
        Kind::Document,
        Kind::Sticker,
        Kind::Location,
        Kind::Vcard,
        Kind::MultiVcard,
        Kind::Revoked,
        Kind::PollCreation,
        Kind::PollVote,
        Kind::ButtonsResponse,
        Kind::ListResponse,
        Kind::TemplateButtonReply,
        Kind::InteractiveResponse,
        Kind::Buttons,
        Kind::List,
        Kind::Template,
        Kind::Hsm,
        Kind::Interactive,
        Kind::GroupInvite,
        Kind::Product,
        Kind::Order,
        Kind::Payment,
        Kind::CallLog,
        Kind::Event,
        Kind::Album,
        Kind::Pin,
        Kind::KeepInChat,
        Kind::Ciphertext,
        Kind::Reaction,
        Kind::Edit,
        Kind::Revoke,
        Kind::Unknown,
    ];

    /// The stable name (stored, and the API's `type`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::Image => "image",
            Kind::Video => "video",
            Kind::Ptv => "ptv",
            Kind::Audio => "audio",
            Kind::Ptt => "ptt",
            Kind::Document => "document",
            Kind::Sticker => "sticker",
            Kind::Location => "location",
            Kind::Vcard => "vcard",
            Kind::MultiVcard => "multi_vcard",
            Kind::Revoked => "revoked",
            Kind::PollCreation => "poll_creation",
            Kind::PollVote => "poll_vote",
            Kind::ButtonsResponse => "buttons_response",
            Kind::ListResponse => "list_response",
            Kind::TemplateButtonReply => "template_button_reply",
            Kind::InteractiveResponse => "interactive_response",
            Kind::Buttons => "buttons",
            Kind::List => "list",
            Kind::Template => "template",
            Kind::Hsm => "hsm",
            Kind::Interactive => "interactive",
            Kind::GroupInvite => "groups_v4_invite",
            Kind::Product => "product",
            Kind::Order => "order",
            Kind::Payment => "payment",
            Kind::CallLog => "call_log",
            Kind::Event => "scheduled_event_creation",
            Kind::Album => "album",
            Kind::Pin => "pin_in_chat",
            Kind::KeepInChat => "keep_in_chat",
            Kind::Ciphertext => "ciphertext",
            Kind::Reaction => "reaction",
            Kind::Edit => "edit",
            Kind::Revoke => "revoke",
            Kind::Unknown => "unknown",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Whether the kind carries a media file (downloadable with its keys).
    pub fn has_media(self) -> bool {
        matches!(
            self,
            Kind::Image
                | Kind::Video
                | Kind::Ptv
                | Kind::Audio
                | Kind::Ptt
                | Kind::Document
                | Kind::Sticker
        )
    }

    /// Whether the kind acts on another message (and is shown through it).
    pub fn is_mutation(self) -> bool {
        matches!(self, Kind::Reaction | Kind::Edit | Kind::Revoke)
    }

    /// Whether history lists it on its own: edits and revokes show through their target.
    pub fn is_listed(self) -> bool {
        !matches!(self, Kind::Edit | Kind::Revoke)
    }
}

/// The message another one acts on, as its key names it (from the actor's point of view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetKey {
    /// The target's id.
    pub id: String,
    /// The chat as the actor saw it.
    pub remote_jid: Option<String>,
    /// Whether the actor sent the target.
    pub from_me: bool,
    /// The target's author in a group, when not the actor.
    pub participant: Option<String>,
}

/// What a plaintext is.
#[derive(Debug, Clone, PartialEq)]
pub enum Classified {
    /// Nothing for a conversation: key distributions, protocol messages other than edits and
    /// revokes, device-to-device payloads, an empty message.
    Protocol,
    /// A stored message (content, or a reaction/edit/revoke acting on `target`).
    Stored(Content),
}

/// What a stored message shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    /// Its kind.
    pub kind: Kind,
    /// The text, caption, or what stands for them (the emoji of a reaction, the new text of an
    /// edit, a poll's question).
    pub text: Option<String>,
    /// Came in a disappearing-messages envelope (or with a timer in its context).
    pub ephemeral: bool,
    /// Came in a view-once envelope (or carries the view-once flag).
    pub view_once: bool,
    /// What the kind carries (a JSON object, camelCase keys; never media keys).
    pub details: Value,
    /// For reactions, edits, revokes, votes and pins: the message acted on.
    pub target: Option<TargetKey>,
    /// For a revoke: an admin removed someone else's message (`edit="8"`).
    pub admin_revoke: bool,
    /// For a media message: its file.
    pub media: Option<Box<super::media_ref::MediaRef>>,
}

/// Why a plaintext could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The bytes are not protobuf wire format.
    #[error("malformed protobuf: {0}")]
    Wire(&'static str),
    /// They are, but not a `Message`.
    #[error(transparent)]
    Protobuf(#[from] prost::DecodeError),
}

/// Classifies an unpadded `Message` plaintext. Errors only when the bytes are not a protobuf.
pub fn classify(plain: &[u8]) -> Result<Classified, ContentError> {
    let mut ephemeral = false;
    let mut view_once = false;
    let mut body = plain;
    for _ in 0..MAX_DEPTH {
        match envelope_of(body)? {
            Some((inner, env)) => {
                match env {
                    Envelope::ViewOnce => view_once = true,
                    Envelope::Ephemeral => ephemeral = true,
                    Envelope::Plain => {}
                }
                body = inner;
            }
            None => break,
        }
    }
    let fields = field_numbers(body)?;
    let m = wa::Message::decode(body)?;
    let mut c = match content_of(&m, &fields) {
        Some(c) => c,
        None => return Ok(Classified::Protocol),
    };
    let ctx = context_of(&m);
    if let Some(ctx) = ctx {
        if ctx.expiration.is_some_and(|e| e > 0) {
            ephemeral = true;
        }
        if let Value::Object(map) = &mut c.details {
            merge_context(map, ctx);
        }
    }
    if media_view_once(&m) {
        view_once = true;
    }
    if c.kind.has_media() {
        c.media = super::media_ref::media_ref_of(&m).map(Box::new);
    }
    c.ephemeral = ephemeral;
    c.view_once = view_once;
    Ok(Classified::Stored(c))
}

/// The content of a plaintext for display (text or caption) without the rest: what an edit
/// turns its target's text into.
pub fn text_of(m: &wa::Message) -> Option<String> {
    m.conversation
        .clone()
        .or_else(|| {
            m.extended_text_message
                .as_ref()
                .and_then(|e| e.text.clone())
        })
        .or_else(|| m.image_message.as_ref().and_then(|i| i.caption.clone()))
        .or_else(|| m.video_message.as_ref().and_then(|v| v.caption.clone()))
        .or_else(|| m.document_message.as_ref().and_then(|d| d.caption.clone()))
}

/// The (inner bytes, envelope) of `body` when it is an envelope: its first envelope field,
/// or the device-sent copy.
fn envelope_of(body: &[u8]) -> Result<Option<(&[u8], Envelope)>, ContentError> {
    for (field, bytes) in wire::fields(body) {
        let (field, bytes) = (field?, bytes);
        let Some(bytes) = bytes else { continue };
        if field == DEVICE_SENT {
            if let Some(inner) = wire::first(bytes, 2)? {
                return Ok(Some((inner, Envelope::Plain)));
            }
            continue;
        }
        if let Some((_, env)) = ENVELOPES.iter().find(|(f, _)| *f == field)
            && let Some(inner) = wire::first(bytes, 1)?
        {
            return Ok(Some((inner, *env)));
        }
    }
    Ok(None)
}

/// Distinct field numbers kept per message: a peer's message of a million made-up fields
/// costs one pass, and its row and webhook name the first few only.
const MAX_FIELDS: usize = 64;

/// The top-level field numbers of a message, in order, each once (the first [`MAX_FIELDS`]).
fn field_numbers(body: &[u8]) -> Result<Vec<u32>, ContentError> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (field, _) in wire::fields(body) {
        let f = field?;
        if out.len() < MAX_FIELDS && seen.insert(f) {
            out.push(f);
        }
    }
    Ok(out)
}

fn key_of(k: Option<&wa::MessageKey>) -> Option<TargetKey> {
    let k = k?;
    Some(TargetKey {
        id: k.id.clone().filter(|i| !i.is_empty())?,
        remote_jid: k.remote_jid.clone().filter(|s| !s.is_empty()),
        from_me: k.from_me.unwrap_or(false),
        participant: k.participant.clone().filter(|s| !s.is_empty()),
    })
}

/// Content of `kind` with no flags or target.
pub(crate) fn stored(kind: Kind, text: Option<String>, details: Value) -> Content {
    Content {
        kind,
        text: text.filter(|t| !t.is_empty()),
        ephemeral: false,
        view_once: false,
        details: compact(details),
        target: None,
        admin_revoke: false,
        media: None,
    }
}

/// Drops null members, so a kind's object has only what the message carried.
fn compact(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, compact(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(compact).collect()),
        v => v,
    }
}

fn media(mimetype: &Option<String>, length: Option<u64>, extra: Value) -> Value {
    let mut v = json!({ "mimetype": mimetype, "fileLength": length });
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    v
}

fn location(l: &wa::LocationMessage) -> Value {
    json!({
        "latitude": l.degrees_latitude,
        "longitude": l.degrees_longitude,
        "name": l.name,
        "address": l.address,
        "url": l.url,
        "comment": l.comment,
        "accuracyInMeters": l.accuracy_in_meters,
        "live": l.is_live.unwrap_or(false),
    })
}

fn vcard(c: &wa::ContactMessage) -> Value {
    json!({ "displayName": c.display_name, "vcard": c.vcard })
}

/// The content of an unwrapped message; None for protocol-only ones.
fn content_of(m: &wa::Message, fields: &[u32]) -> Option<Content> {
    if let Some(p) = &m.protocol_message {
        use wa::protocol_message::Type;
        // An absent type is no revoke (prost would default it to REVOKE, 0).
        return match p.r#type.and_then(|t| Type::try_from(t).ok()) {
            Some(Type::Revoke) => {
                let target = key_of(p.key.as_ref())?;
                let mut c = stored(
                    Kind::Revoke,
                    None,
                    json!({ "targetId": target.id, "fromMe": target.from_me }),
                );
                c.target = Some(target);
                Some(c)
            }
            Some(Type::MessageEdit) => {
                let target = key_of(p.key.as_ref())?;
                let new = p.edited_message.as_deref();
                let text = new.and_then(text_of);
                let mut c = stored(
                    Kind::Edit,
                    text,
                    json!({ "targetId": target.id, "editedAtMs": p.timestamp_ms }),
                );
                c.target = Some(target);
                Some(c)
            }
            _ => None,
        };
    }
    if let Some(r) = &m.reaction_message {
        let target = key_of(r.key.as_ref())?;
        let emoji = r.text.clone().unwrap_or_default();
        let mut c = stored(
            Kind::Reaction,
            Some(emoji.clone()),
            json!({
                "emoji": emoji,
                "removed": emoji.is_empty(),
                "targetId": target.id,
                "targetFromMe": target.from_me,
                "senderTimestampMs": r.sender_timestamp_ms,
            }),
        );
        c.target = Some(target);
        return Some(c);
    }
    if let Some(r) = &m.enc_reaction_message {
        // Encrypted under the target's message secret (community announcements): kept and
        // listed, not applied to the target.
        let target = key_of(r.target_message_key.as_ref());
        return Some(stored(
            Kind::Reaction,
            None,
            json!({ "encrypted": true, "targetId": target.map(|t| t.id) }),
        ));
    }
    if let Some(t) = &m.conversation {
        return Some(stored(Kind::Chat, Some(t.clone()), json!({})));
    }
    if let Some(e) = &m.extended_text_message {
        let preview = e
            .matched_text
            .as_ref()
            .map(|url| json!({ "url": url, "title": e.title, "description": e.description }));
        return Some(stored(
            Kind::Chat,
            e.text.clone(),
            json!({ "linkPreview": preview }),
        ));
    }
    if let Some(i) = &m.image_message {
        return Some(stored(
            Kind::Image,
            i.caption.clone(),
            media(
                &i.mimetype,
                i.file_length,
                json!({ "width": i.width, "height": i.height }),
            ),
        ));
    }
    if let Some(v) = m.video_message.as_ref().or(m.ptv_message.as_ref()) {
        let kind = if m.video_message.is_some() {
            Kind::Video
        } else {
            Kind::Ptv
        };
        return Some(stored(
            kind,
            v.caption.clone(),
            media(
                &v.mimetype,
                v.file_length,
                json!({
                    "seconds": v.seconds,
                    "width": v.width,
                    "height": v.height,
                    "gif": v.gif_playback.filter(|g| *g),
                }),
            ),
        ));
    }
    if let Some(a) = &m.audio_message {
        let kind = if a.ptt.unwrap_or(false) {
            Kind::Ptt
        } else {
            Kind::Audio
        };
        return Some(stored(
            kind,
            None,
            media(&a.mimetype, a.file_length, json!({ "seconds": a.seconds })),
        ));
    }
    if let Some(d) = &m.document_message {
        return Some(stored(
            Kind::Document,
            d.caption.clone(),
            media(
                &d.mimetype,
                d.file_length,
                json!({ "fileName": d.file_name, "title": d.title, "pageCount": d.page_count }),
            ),
        ));
    }
    if let Some(s) = &m.sticker_message {
        return Some(stored(
            Kind::Sticker,
            None,
            media(
                &s.mimetype,
                s.file_length,
                json!({
                    "width": s.width,
                    "height": s.height,
                    "animated": s.is_animated.filter(|a| *a),
                    "lottie": s.is_lottie.filter(|a| *a),
                }),
            ),
        ));
    }
    if let Some(l) = &m.location_message {
        return Some(stored(
            Kind::Location,
            l.comment.clone().or_else(|| l.name.clone()),
            location(l),
        ));
    }
    if let Some(l) = &m.live_location_message {
        return Some(stored(
            Kind::Location,
            l.caption.clone(),
            json!({
                "latitude": l.degrees_latitude,
                "longitude": l.degrees_longitude,
                "accuracyInMeters": l.accuracy_in_meters,
                "caption": l.caption,
                "sequenceNumber": l.sequence_number,
                "live": true,
            }),
        ));
    }
    if let Some(c) = &m.contact_message {
        return Some(stored(Kind::Vcard, c.vcard.clone(), vcard(c)));
    }
    if let Some(a) = &m.contacts_array_message {
        let contacts: Vec<Value> = a.contacts.iter().map(vcard).collect();
        return Some(stored(
            Kind::MultiVcard,
            None,
            json!({ "displayName": a.display_name, "contacts": contacts }),
        ));
    }
    let poll = m
        .poll_creation_message
        .as_ref()
        .or(m.poll_creation_message_v2.as_ref())
        .or(m.poll_creation_message_v3.as_ref())
        .or(m.poll_creation_message_v5.as_ref())
        .or(m.poll_creation_message_v6.as_ref());
    if let Some(p) = poll {
        let options: Vec<Value> = p
            .options
            .iter()
            .map(|o| json!(o.option_name.clone().unwrap_or_default()))
            .collect();
        return Some(stored(
            Kind::PollCreation,
            p.name.clone(),
            json!({
                "name": p.name,
                "options": options,
                "selectableCount": p.selectable_options_count,
            }),
        ));
    }
    if let Some(v) = &m.poll_update_message {
        let target = key_of(v.poll_creation_message_key.as_ref());
        let mut c = stored(
            Kind::PollVote,
            None,
            json!({ "pollId": target.as_ref().map(|t| t.id.clone()), "encrypted": true }),
        );
        c.target = target;
        return Some(c);
    }
    if let Some(b) = &m.buttons_response_message {
        return Some(stored(
            Kind::ButtonsResponse,
            b.selected_display_text.clone(),
            json!({
                "selectedButtonId": b.selected_button_id,
                "selectedDisplayText": b.selected_display_text,
            }),
        ));
    }
    if let Some(l) = &m.list_response_message {
        return Some(stored(
            Kind::ListResponse,
            l.title.clone(),
            json!({
                "title": l.title,
                "description": l.description,
                "selectedRowId": l.single_select_reply.as_ref().and_then(|r| r.selected_row_id.clone()),
            }),
        ));
    }
    if let Some(t) = &m.template_button_reply_message {
        return Some(stored(
            Kind::TemplateButtonReply,
            t.selected_display_text.clone(),
            json!({
                "selectedId": t.selected_id,
                "selectedDisplayText": t.selected_display_text,
                "selectedIndex": t.selected_index,
            }),
        ));
    }
    if let Some(i) = &m.interactive_response_message {
        let body = i.body.as_ref().and_then(|b| b.text.clone());
        let flow = i.native_flow_response_message.as_ref();
        return Some(stored(
            Kind::InteractiveResponse,
            body.clone(),
            json!({
                "body": body,
                "name": flow.and_then(|f| f.name.clone()),
                "paramsJson": flow.and_then(|f| f.params_json.clone()),
            }),
        ));
    }
    if let Some(g) = &m.group_invite_message {
        return Some(stored(
            Kind::GroupInvite,
            g.caption.clone(),
            json!({
                "groupJid": g.group_jid,
                "groupName": g.group_name,
                "inviteCode": g.invite_code,
                "inviteExpiration": g.invite_expiration,
            }),
        ));
    }
    if let Some(p) = &m.pin_in_chat_message {
        let target = key_of(p.key.as_ref());
        let pinned = p.r#type() == wa::pin_in_chat_message::Type::PinForAll;
        let mut c = stored(
            Kind::Pin,
            None,
            json!({ "targetId": target.as_ref().map(|t| t.id.clone()), "pinned": pinned }),
        );
        c.target = target;
        return Some(c);
    }
    if let Some(e) = &m.event_message {
        return Some(stored(
            Kind::Event,
            e.name.clone(),
            json!({
                "name": e.name,
                "description": e.description,
                "startTime": e.start_time,
                "endTime": e.end_time,
                "canceled": e.is_canceled.filter(|c| *c),
                "joinLink": e.join_link,
                "location": e.location.as_deref().map(location),
            }),
        ));
    }
    // Kinds kept without a rendering: named by their field.
    let named: &[(u32, Kind)] = &[
        (10, Kind::CallLog),
        (69, Kind::CallLog),
        (14, Kind::Hsm),
        (16, Kind::Payment),
        (22, Kind::Payment),
        (23, Kind::Payment),
        (24, Kind::Payment),
        (41, Kind::Payment),
        (44, Kind::Payment),
        (124, Kind::Payment),
        (125, Kind::Payment),
        (128, Kind::Payment),
        (25, Kind::Template),
        (30, Kind::Product),
        (36, Kind::List),
        (38, Kind::Order),
        (42, Kind::Buttons),
        (45, Kind::Interactive),
        (51, Kind::KeepInChat),
        (80, Kind::Ciphertext),
        (83, Kind::Album),
    ];
    if let Some((f, kind)) = named.iter().find(|(f, _)| fields.contains(f)) {
        return Some(stored(*kind, None, json!({ "field": f })));
    }
    let unknown: Vec<u32> = fields
        .iter()
        .copied()
        .filter(|f| !PROTOCOL_FIELDS.contains(f))
        .collect();
    if unknown.is_empty() {
        return None;
    }
    Some(stored(Kind::Unknown, None, json!({ "fields": unknown })))
}

/// What a message's context says that every kind shows.
struct Context<'a> {
    quoted_id: Option<&'a str>,
    quoted_participant: Option<&'a str>,
    quoted_remote: Option<&'a str>,
    mentions: &'a [String],
    forwarded: bool,
    forwarding_score: Option<u32>,
    expiration: Option<u32>,
}

fn context_of(m: &wa::Message) -> Option<Context<'_>> {
    let ctx = m
        .extended_text_message
        .as_ref()
        .and_then(|e| e.context_info.as_ref())
        .or_else(|| m.image_message.as_ref()?.context_info.as_ref())
        .or_else(|| m.video_message.as_ref()?.context_info.as_ref())
        .or_else(|| m.ptv_message.as_ref()?.context_info.as_ref())
        .or_else(|| m.audio_message.as_ref()?.context_info.as_ref())
        .or_else(|| m.document_message.as_ref()?.context_info.as_ref())
        .or_else(|| m.sticker_message.as_ref()?.context_info.as_ref())
        .or_else(|| m.location_message.as_ref()?.context_info.as_ref())
        .or_else(|| m.live_location_message.as_ref()?.context_info.as_ref())
        .or_else(|| m.contact_message.as_ref()?.context_info.as_ref())
        .or_else(|| m.contacts_array_message.as_ref()?.context_info.as_ref())
        .or_else(|| m.buttons_response_message.as_ref()?.context_info.as_ref())
        .or_else(|| m.list_response_message.as_ref()?.context_info.as_ref())
        .or_else(|| {
            m.template_button_reply_message
                .as_ref()?
                .context_info
                .as_ref()
        })
        .or_else(|| {
            m.interactive_response_message
                .as_ref()?
                .context_info
                .as_ref()
        })
        .or_else(|| m.poll_creation_message.as_ref()?.context_info.as_ref())
        .or_else(|| m.group_invite_message.as_ref()?.context_info.as_ref())
        .or_else(|| m.event_message.as_ref()?.context_info.as_ref())?;
    Some(Context {
        quoted_id: ctx.stanza_id.as_deref().filter(|s| !s.is_empty()),
        quoted_participant: ctx.participant.as_deref().filter(|s| !s.is_empty()),
        quoted_remote: ctx.remote_jid.as_deref().filter(|s| !s.is_empty()),
        mentions: &ctx.mentioned_jid,
        forwarded: ctx.is_forwarded.unwrap_or(false),
        forwarding_score: ctx.forwarding_score.filter(|s| *s > 0),
        expiration: ctx.expiration,
    })
}

fn merge_context(map: &mut Map<String, Value>, ctx: Context<'_>) {
    if let Some(id) = ctx.quoted_id {
        let mut q = Map::new();
        q.insert("id".into(), json!(id));
        if let Some(p) = ctx.quoted_participant {
            q.insert("participant".into(), json!(p));
        }
        if let Some(r) = ctx.quoted_remote {
            q.insert("remoteJid".into(), json!(r));
        }
        map.insert("quoted".into(), Value::Object(q));
    }
    if !ctx.mentions.is_empty() {
        map.insert("mentions".into(), json!(ctx.mentions));
    }
    if ctx.forwarded {
        map.insert("forwarded".into(), json!(true));
        if let Some(s) = ctx.forwarding_score {
            map.insert("forwardingScore".into(), json!(s));
        }
    }
    if let Some(e) = ctx.expiration.filter(|e| *e > 0) {
        map.insert("expirationSeconds".into(), json!(e));
    }
}

/// The view-once flag media may carry without an envelope (WhatsApp's newer form).
fn media_view_once(m: &wa::Message) -> bool {
    m.image_message.as_ref().and_then(|i| i.view_once) == Some(true)
        || m.video_message.as_ref().and_then(|v| v.view_once) == Some(true)
        || m.audio_message.as_ref().and_then(|a| a.view_once) == Some(true)
}

/// A minimal protobuf wire reader: enough to walk a message's top-level fields and take a
/// length-delimited one's bytes, so envelopes and unknown fields are seen without a schema.
mod wire {
    use super::ContentError;

    /// Top-level fields of `buf`: (field number, the bytes of a length-delimited field).
    pub(super) fn fields(
        buf: &[u8],
    ) -> impl Iterator<Item = (Result<u32, ContentError>, Option<&[u8]>)> {
        let mut rest = buf;
        let mut failed = false;
        std::iter::from_fn(move || {
            if rest.is_empty() || failed {
                return None;
            }
            match next(rest) {
                Ok((field, bytes, after)) => {
                    rest = after;
                    Some((Ok(field), bytes))
                }
                Err(e) => {
                    failed = true;
                    Some((Err(e), None))
                }
            }
        })
    }

    /// The bytes of the first length-delimited field `want` of `buf`.
    pub(super) fn first(buf: &[u8], want: u32) -> Result<Option<&[u8]>, ContentError> {
        for (field, bytes) in fields(buf) {
            if field? == want
                && let Some(b) = bytes
            {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    fn varint(buf: &[u8]) -> Result<(u64, &[u8]), ContentError> {
        let mut v = 0u64;
        for (i, b) in buf.iter().enumerate().take(10) {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((v, &buf[i + 1..]));
            }
        }
        Err(ContentError::Wire("invalid varint"))
    }

    type Field<'a> = (u32, Option<&'a [u8]>, &'a [u8]);

    fn next(buf: &[u8]) -> Result<Field<'_>, ContentError> {
        let (key, rest) = varint(buf)?;
        let field = u32::try_from(key >> 3)
            .ok()
            .filter(|f| *f > 0)
            .ok_or(ContentError::Wire("invalid field number"))?;
        match key & 7 {
            0 => Ok((field, None, varint(rest)?.1)),
            1 => rest
                .get(8..)
                .map(|r| (field, None, r))
                .ok_or(ContentError::Wire("truncated fixed64")),
            2 => {
                let (len, rest) = varint(rest)?;
                let len = usize::try_from(len).map_err(|_| ContentError::Wire("length"))?;
                if len > rest.len() {
                    return Err(ContentError::Wire("truncated field"));
                }
                Ok((field, Some(&rest[..len]), &rest[len..]))
            }
            5 => rest
                .get(4..)
                .map(|r| (field, None, r))
                .ok_or(ContentError::Wire("truncated fixed32")),
            3 => Ok((field, None, skip_group(rest)?)),
            _ => Err(ContentError::Wire("unsupported wire type")),
        }
    }

    /// What follows a group started before `buf` (deprecated, but valid protobuf that prost
    /// skips): its fields, nested groups included, walked with a depth count, not recursion.
    fn skip_group(mut buf: &[u8]) -> Result<&[u8], ContentError> {
        let mut depth = 1usize;
        while depth > 0 {
            let (key, rest) = varint(buf)?;
            buf = match key & 7 {
                3 => {
                    depth += 1;
                    rest
                }
                4 => {
                    depth -= 1;
                    rest
                }
                _ => next(buf)?.2,
            };
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(m: &wa::Message) -> Vec<u8> {
        m.encode_to_vec()
    }

    fn content(plain: &[u8]) -> Content {
        match classify(plain).expect("decodes") {
            Classified::Stored(c) => c,
            Classified::Protocol => panic!("classified as protocol"),
        }
    }

    #[test]
    fn every_kind_name_parses_back_and_only_media_kinds_have_media() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(*k));
        }
        let media: Vec<&str> = Kind::ALL
            .iter()
            .filter(|k| k.has_media())
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            media,
            [
                "image", "video", "ptv", "audio", "ptt", "document", "sticker"
            ]
        );
    }

    #[test]
    fn an_unknown_field_is_kept_as_unknown_with_its_number() {
        // Field 200 (length-delimited), unknown to this build, beside a context info.
        let mut plain = vec![0xc2, 0x0c, 0x02, 0x08, 0x01];
        plain.extend(enc(&wa::Message {
            message_context_info: Some(wa::MessageContextInfo::default()),
            ..Default::default()
        }));
        let c = content(&plain);
        assert_eq!(c.kind, Kind::Unknown);
        assert_eq!(c.details, json!({ "fields": [200] }));
    }

    #[test]
    fn key_distributions_and_protocol_messages_are_protocol_only() {
        let skdm = wa::Message {
            sender_key_distribution_message: Some(wa::SenderKeyDistributionMessage::default()),
            message_context_info: Some(wa::MessageContextInfo::default()),
            ..Default::default()
        };
        assert_eq!(classify(&enc(&skdm)).unwrap(), Classified::Protocol);
        let setting = wa::Message {
            protocol_message: Some(Box::new(wa::ProtocolMessage {
                r#type: Some(wa::protocol_message::Type::EphemeralSetting as i32),
                ephemeral_expiration: Some(86_400),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(classify(&enc(&setting)).unwrap(), Classified::Protocol);
        assert_eq!(classify(&[]).unwrap(), Classified::Protocol);
    }

    #[test]
    fn malformed_bytes_are_an_error_not_a_panic() {
        assert!(classify(&[0x0a, 0x05, 0x01]).is_err());
        assert!(classify(&[0xff; 11]).is_err());
        assert!(classify(&[0x0b]).is_err());
    }

    #[test]
    fn envelopes_unwrap_to_a_bound_and_what_is_left_is_kept() {
        let wrap = |m: wa::Message| wa::Message {
            view_once_message: Some(Box::new(wa::FutureProofMessage {
                message: Some(Box::new(m)),
            })),
            ..Default::default()
        };
        let mut m = wa::Message {
            conversation: Some("deep".into()),
            ..Default::default()
        };
        for _ in 0..MAX_DEPTH {
            m = wrap(m);
        }
        let c = content(&enc(&m));
        assert_eq!(
            (c.kind, c.text.as_deref(), c.view_once),
            (Kind::Chat, Some("deep"), true)
        );
        // One envelope more than unwrapped: the rest is kept, by its field number.
        let c = content(&enc(&wrap(m)));
        assert_eq!(c.kind, Kind::Unknown);
        assert_eq!(c.details, json!({ "fields": [37] }));
    }

    #[test]
    fn a_group_field_is_skipped_as_prost_skips_it_and_the_text_is_kept() {
        // Field 200 as a group holding a nested group and a varint, then the text.
        let mut plain = vec![0xc3, 0x0c, 0x0b, 0x08, 0x01, 0x0c, 0xc4, 0x0c];
        plain.extend(enc(&wa::Message {
            conversation: Some("after a group".into()),
            ..Default::default()
        }));
        assert!(wa::Message::decode(&plain[..]).is_ok(), "prost accepts it");
        let c = content(&plain);
        assert_eq!(
            (c.kind, c.text.as_deref()),
            (Kind::Chat, Some("after a group"))
        );
    }

    #[test]
    fn many_distinct_unknown_fields_cost_one_pass_and_name_the_first_few() {
        let mut plain = Vec::new();
        for f in 1_000u32..201_000 {
            let key = u64::from(f) << 3;
            let mut k = key;
            while k >= 0x80 {
                plain.push((k as u8) | 0x80);
                k >>= 7;
            }
            plain.push(k as u8);
            plain.push(0);
        }
        let c = content(&plain);
        assert_eq!(c.kind, Kind::Unknown);
        let fields = c.details["fields"].as_array().unwrap();
        assert_eq!(fields.len(), MAX_FIELDS);
        assert_eq!(fields[0], json!(1_000));
    }
}
