//! A simulated phone's media (CLIENT-FEATURES §2): it fetches the file of every media message
//! its devices read from the CDN (in-process), checks it as a real client does and keeps a
//! copy in its gallery; it makes the files it sends (a fresh media key, encrypted in chunks,
//! stored on the CDN) and their messages; and it answers its linked devices' media retries
//! (§2.6) by uploading the kept file again. It knows the server's state and the delivery
//! queues, never how a stanza was routed: `route.rs`, `groups.rs` and the handle call it.

use std::io::{Read, Write};
use std::path::PathBuf;

use zeroize::Zeroizing;

use super::cdn::Cdn;
use super::deliver::to_device;
use super::error::SimError;
use super::gallery::Kept;
use super::inbox::{MediaSeen, MessageKey, Shown};
use super::server::{Device, Shared, State};
use crate::binary::{Jid, Node, Server};
use crate::media::cipher::{Decryptor, Encryptor, Expect};
use crate::media::{MediaError, MediaType, expand, is_jpeg};
use crate::proto::wa;
use crate::proto::wa::media_retry_notification::ResultType;

/// Bytes read, encrypted or checked at a time: a 300 MB file is never held whole.
const CHUNK: usize = 64 * 1024;

/// Largest file a phone sends or checks: WhatsApp's 2 GB document limit (the CDN's default
/// upload limit is this plus the cipher's overhead).
pub const MAX_MEDIA_BYTES: u64 = 2 << 30;

/// `<error code>` of a media retry for a message the phone does not have: whatsmeow reads 2
/// as "media not available on phone" (`DecryptMediaRetryNotification`), whatsapp-rust as
/// NotFound (CLIENT-FEATURES §2.6).
const ERROR_NOT_FOUND: u16 = 2;
/// `<error code>` of a request the phone cannot decrypt: whatsapp-rust reads 3 as
/// DecryptionError, Baileys maps it through `ResultType` (3 = DECRYPTION_ERROR).
const ERROR_DECRYPTION: u16 = 3;

/// The kinds of media message a phone sends (the message field each goes in, §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// `imageMessage`.
    Image,
    /// `videoMessage`.
    Video,
    /// `ptvMessage`: a round video note.
    Ptv,
    /// `audioMessage`.
    Audio,
    /// `audioMessage` with `PTT`: a voice note.
    Ptt,
    /// `documentMessage` (in `documentWithCaptionMessage` when captioned).
    Document,
    /// `stickerMessage`.
    Sticker,
}

impl MediaKind {
    /// The key and upload type (ptv uses the video keys, ptt the audio keys, stickers the
    /// image keys: §2.2).
    pub fn media_type(self) -> MediaType {
        match self {
            MediaKind::Image => MediaType::Image,
            MediaKind::Video | MediaKind::Ptv => MediaType::Video,
            MediaKind::Audio | MediaKind::Ptt => MediaType::Audio,
            MediaKind::Document => MediaType::Document,
            MediaKind::Sticker => MediaType::Sticker,
        }
    }

    /// The mimetype sent when none is given ([`MediaType::default_mimetype`]).
    pub fn default_mimetype(self) -> &'static str {
        self.media_type().default_mimetype()
    }
}

/// Where the bytes of a file a phone sends come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaData {
    /// These bytes.
    Bytes(Vec<u8>),
    /// The file at this path on the simulator's machine, read in chunks.
    File(PathBuf),
    /// `bytes` deterministic bytes from `seed` (made in chunks: a large file without a large
    /// request body); the same pair always gives the same file.
    Generate {
        /// The length.
        bytes: u64,
        /// The seed.
        seed: u64,
    },
}

/// What a phone is told to send as a media message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSend {
    /// The message kind.
    pub kind: MediaKind,
    /// The file.
    pub data: MediaData,
    /// Its mimetype (default: [`MediaKind::default_mimetype`]).
    pub mimetype: Option<String>,
    /// A document's file name (also its title).
    pub file_name: Option<String>,
    /// A caption (image, video, document).
    pub caption: Option<String>,
    /// Length in seconds (audio, video).
    pub seconds: Option<u32>,
    /// Width in pixels (image, video, sticker).
    pub width: Option<u32>,
    /// Height in pixels (image, video, sticker).
    pub height: Option<u32>,
}

impl MediaSend {
    /// A `kind` message of `data` with the defaults.
    pub fn new(kind: MediaKind, data: MediaData) -> MediaSend {
        MediaSend {
            kind,
            data,
            mimetype: None,
            file_name: None,
            caption: None,
            seconds: None,
            width: None,
            height: None,
        }
    }
}

/// What a phone sent: the file's identity as the message carries it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SentMedia {
    /// Hex SHA-256 of the plaintext (`fileSha256`).
    pub sha256: String,
    /// Plaintext length (`fileLength`).
    pub size: u64,
    /// Hex SHA-256 of the stored body (`fileEncSha256`).
    pub enc_sha256: String,
    /// Its direct path on the CDN.
    pub direct_path: String,
}

/// A file encrypted, stored and ready to be sent.
pub(super) struct Prepared {
    /// The message carrying it.
    pub(super) message: wa::Message,
    /// What to answer.
    pub(super) info: SentMedia,
    media_key: Zeroizing<[u8; 32]>,
    mms_type: &'static str,
    copy: PathBuf,
}

/// The `n` deterministic bytes of `seed` (xorshift64*): for `MediaData::Generate`.
struct Generated {
    left: u64,
    state: u64,
}

impl Generated {
    fn new(bytes: u64, seed: u64) -> Generated {
        Generated {
            left: bytes,
            // xorshift has no zero state.
            state: (seed ^ 0x9E37_79B9_7F4A_7C15) | 1,
        }
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        for b in &mut buf[..n] {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            *b = (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn bad(e: impl std::fmt::Display) -> SimError {
    SimError::BadMedia(e.to_string())
}

/// Encrypts `send`'s file under a fresh media key into a copy the phone keeps, stores it on
/// the CDN and builds its message (blocking: run off the async threads).
fn prepare_blocking(cdn: &Cdn, send: &MediaSend, now: u64) -> Result<Prepared, SimError> {
    let ty = send.kind.media_type();
    let (mut src, len): (Box<dyn Read>, u64) = match &send.data {
        MediaData::Bytes(b) => (Box::new(std::io::Cursor::new(b.clone())), b.len() as u64),
        MediaData::File(p) => {
            let f = std::fs::File::open(p).map_err(bad)?;
            let len = f.metadata().map_err(bad)?.len();
            (Box::new(f), len)
        }
        MediaData::Generate { bytes, seed } => (Box::new(Generated::new(*bytes, *seed)), *bytes),
    };
    if len == 0 {
        return Err(bad("empty file"));
    }
    if len > MAX_MEDIA_BYTES {
        return Err(bad("file larger than 2 GiB"));
    }
    let media_key = Zeroizing::new(rand::random::<[u8; 32]>());
    let keys = expand(&media_key, ty);
    let copy = cdn.side_path();
    let written = (|| -> std::io::Result<_> {
        let mut out = std::fs::File::create(&copy)?;
        let mut enc = Encryptor::new(&keys);
        let mut buf = vec![0u8; CHUNK];
        let mut body = Vec::with_capacity(CHUNK + 32);
        loop {
            let n = src.read(&mut buf)?;
            if n == 0 {
                break;
            }
            body.clear();
            enc.update(&buf[..n], &mut body);
            out.write_all(&body)?;
        }
        body.clear();
        let sums = enc.finish(&mut body);
        out.write_all(&body)?;
        Ok(sums)
    })();
    let stored = written.map_err(bad).and_then(|sums| {
        if sums.file_length != len {
            return Err(bad("the file changed while it was read"));
        }
        let up = cdn
            .store_file(ty.mms_type(), &copy)
            .map_err(|e| bad(format!("CDN: {e}")))?;
        Ok((sums, up))
    });
    let (sums, up) = match stored {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&copy);
            return Err(e);
        }
    };
    let file = FileFields {
        url: up.url.clone(),
        direct_path: up.direct_path.clone(),
        media_key: media_key.to_vec(),
        file_sha256: sums.file_sha256.to_vec(),
        file_enc_sha256: sums.file_enc_sha256.to_vec(),
        file_length: sums.file_length,
        media_key_timestamp: i64::try_from(now).unwrap_or(0),
    };
    Ok(Prepared {
        message: media_message(send, file),
        info: SentMedia {
            sha256: crate::util::hex::encode(&sums.file_sha256),
            size: sums.file_length,
            enc_sha256: crate::util::hex::encode(&sums.file_enc_sha256),
            direct_path: up.direct_path,
        },
        media_key,
        mms_type: ty.mms_type(),
        copy,
    })
}

/// The fields every media message gets after its upload (§2.4).
struct FileFields {
    url: String,
    direct_path: String,
    media_key: Vec<u8>,
    file_sha256: Vec<u8>,
    file_enc_sha256: Vec<u8>,
    file_length: u64,
    media_key_timestamp: i64,
}

/// The message of `send`'s uploaded file: the kind's field, the upload's fields, what the
/// caller described; a captioned document in `documentWithCaptionMessage`, as WhatsApp sends
/// it (§2.4).
fn media_message(send: &MediaSend, f: FileFields) -> wa::Message {
    let mimetype = Some(
        send.mimetype
            .clone()
            .unwrap_or_else(|| send.kind.default_mimetype().to_owned()),
    );
    let caption = send.caption.clone().filter(|c| !c.is_empty());
    let mut m = wa::Message::default();
    match send.kind {
        MediaKind::Image => {
            m.image_message = Some(Box::new(wa::ImageMessage {
                url: Some(f.url),
                direct_path: Some(f.direct_path),
                media_key: Some(f.media_key),
                file_sha256: Some(f.file_sha256),
                file_enc_sha256: Some(f.file_enc_sha256),
                file_length: Some(f.file_length),
                media_key_timestamp: Some(f.media_key_timestamp),
                mimetype,
                caption,
                width: send.width,
                height: send.height,
                ..Default::default()
            }))
        }
        MediaKind::Video | MediaKind::Ptv => {
            let v = Some(Box::new(wa::VideoMessage {
                url: Some(f.url),
                direct_path: Some(f.direct_path),
                media_key: Some(f.media_key),
                file_sha256: Some(f.file_sha256),
                file_enc_sha256: Some(f.file_enc_sha256),
                file_length: Some(f.file_length),
                media_key_timestamp: Some(f.media_key_timestamp),
                mimetype,
                caption,
                seconds: send.seconds,
                width: send.width,
                height: send.height,
                ..Default::default()
            }));
            if send.kind == MediaKind::Ptv {
                m.ptv_message = v;
            } else {
                m.video_message = v;
            }
        }
        MediaKind::Audio | MediaKind::Ptt => {
            m.audio_message = Some(Box::new(wa::AudioMessage {
                url: Some(f.url),
                direct_path: Some(f.direct_path),
                media_key: Some(f.media_key),
                file_sha256: Some(f.file_sha256),
                file_enc_sha256: Some(f.file_enc_sha256),
                file_length: Some(f.file_length),
                media_key_timestamp: Some(f.media_key_timestamp),
                mimetype,
                seconds: send.seconds,
                ptt: (send.kind == MediaKind::Ptt).then_some(true),
                ..Default::default()
            }))
        }
        MediaKind::Document => {
            let d = Box::new(wa::DocumentMessage {
                url: Some(f.url),
                direct_path: Some(f.direct_path),
                media_key: Some(f.media_key),
                file_sha256: Some(f.file_sha256),
                file_enc_sha256: Some(f.file_enc_sha256),
                file_length: Some(f.file_length),
                media_key_timestamp: Some(f.media_key_timestamp),
                mimetype,
                title: send.file_name.clone(),
                file_name: send.file_name.clone(),
                caption: caption.clone(),
                ..Default::default()
            });
            if caption.is_some() {
                m.document_with_caption_message = Some(Box::new(wa::FutureProofMessage {
                    message: Some(Box::new(wa::Message {
                        document_message: Some(d),
                        ..Default::default()
                    })),
                }));
            } else {
                m.document_message = Some(d);
            }
        }
        MediaKind::Sticker => {
            m.sticker_message = Some(Box::new(wa::StickerMessage {
                url: Some(f.url),
                direct_path: Some(f.direct_path),
                media_key: Some(f.media_key),
                file_sha256: Some(f.file_sha256),
                file_enc_sha256: Some(f.file_enc_sha256),
                file_length: Some(f.file_length),
                media_key_timestamp: Some(f.media_key_timestamp),
                mimetype,
                width: send.width,
                height: send.height,
                ..Default::default()
            }))
        }
    }
    m
}

/// Encrypts and stores `send`'s file (off the async threads): the message to send.
pub(super) async fn prepare(shared: &Shared, send: MediaSend) -> Result<Prepared, SimError> {
    let cdn = shared.cdn.clone();
    let now = shared.clock.now_unix();
    tokio::task::spawn_blocking(move || prepare_blocking(&cdn, &send, now))
        .await
        .map_err(|_| SimError::Internal)?
}

/// User `number`'s phone keeps what it is about to send as message `id` to `chat`.
pub(super) fn keep_sent(st: &mut State, number: &str, id: &str, chat: &Jid, p: &Prepared) {
    match st.phones.get_mut(number) {
        Some(phone) => phone.gallery.keep(Kept {
            id: id.to_owned(),
            chat: chat.to_non_ad().to_string(),
            from_me: true,
            media_key: p.media_key.clone(),
            mms_type: p.mms_type,
            copy: p.copy.clone(),
        }),
        None => {
            let _ = std::fs::remove_file(&p.copy);
        }
    }
}

/// The file a media message names, whatever its kind and envelopes.
struct FileRef {
    kind: &'static str,
    ty: MediaType,
    media_key: Option<Vec<u8>>,
    direct_path: Option<String>,
    file_sha256: Option<Vec<u8>>,
    file_enc_sha256: Option<Vec<u8>>,
    file_length: Option<u64>,
    mimetype: Option<String>,
    file_name: Option<String>,
    caption: Option<String>,
    shown: Shown,
}

macro_rules! file_ref {
    ($m:expr, $kind:expr, $ty:expr, $name:expr, $caption:expr, $shown:expr) => {
        FileRef {
            shown: $shown,
            kind: $kind,
            ty: $ty,
            media_key: $m.media_key.clone(),
            direct_path: $m.direct_path.clone(),
            file_sha256: $m.file_sha256.clone(),
            file_enc_sha256: $m.file_enc_sha256.clone(),
            file_length: $m.file_length,
            mimetype: $m.mimetype.clone(),
            file_name: $name,
            caption: $caption,
        }
    };
}

/// The file of media message `m` (inside ephemeral, view-once and document-with-caption
/// envelopes); None for other content.
fn file_ref(m: &wa::Message) -> Option<FileRef> {
    let m = crate::stanza::attrs::normalized(m);
    let thumb = |t: &Option<Vec<u8>>| {
        t.as_deref()
            .map(|t| if is_jpeg(t) { "jpeg" } else { "not-jpeg" }.to_owned())
    };
    let thumb_sha = |t: &Option<Vec<u8>>| {
        use sha2::Digest;
        t.as_deref()
            .map(|t| crate::util::hex::encode(&sha2::Sha256::digest(t)))
    };
    Some(if let Some(i) = &m.image_message {
        let shown = Shown {
            width: i.width,
            height: i.height,
            thumbnail: thumb(&i.jpeg_thumbnail),
            thumbnail_sha256: thumb_sha(&i.jpeg_thumbnail),
            ..Shown::default()
        };
        file_ref!(i, "image", MediaType::Image, None, i.caption.clone(), shown)
    } else if let Some(v) = m.video_message.as_ref().or(m.ptv_message.as_ref()) {
        let kind = if m.video_message.is_some() {
            "video"
        } else {
            "ptv"
        };
        let shown = Shown {
            seconds: v.seconds,
            width: v.width,
            height: v.height,
            thumbnail: thumb(&v.jpeg_thumbnail),
            thumbnail_sha256: thumb_sha(&v.jpeg_thumbnail),
            gif: v.gif_playback == Some(true),
            ..Shown::default()
        };
        file_ref!(v, kind, MediaType::Video, None, v.caption.clone(), shown)
    } else if let Some(a) = &m.audio_message {
        let kind = if a.ptt == Some(true) { "ptt" } else { "audio" };
        let shown = Shown {
            seconds: a.seconds,
            waveform: a.waveform.clone(),
            ..Shown::default()
        };
        file_ref!(a, kind, MediaType::Audio, None, None, shown)
    } else if let Some(d) = &m.document_message {
        let name = d.file_name.clone();
        let shown = Shown {
            thumbnail: thumb(&d.jpeg_thumbnail),
            thumbnail_sha256: thumb_sha(&d.jpeg_thumbnail),
            ..Shown::default()
        };
        file_ref!(
            d,
            "document",
            MediaType::Document,
            name,
            d.caption.clone(),
            shown
        )
    } else if let Some(s) = &m.sticker_message {
        let shown = Shown {
            width: s.width,
            height: s.height,
            ..Shown::default()
        };
        file_ref!(s, "sticker", MediaType::Sticker, None, None, shown)
    } else {
        return None;
    })
}

/// The field a failed check is about, for the error a phone records.
fn check_name(e: &MediaError) -> &'static str {
    match e {
        MediaError::EncHashMismatch => "fileEncSha256",
        MediaError::BadMac => "mac",
        MediaError::HashMismatch => "fileSha256",
        MediaError::TooLarge { .. } => "fileLength",
        MediaError::BadPadding => "padding",
        _ => "length",
    }
}

/// Fetches `f` from the CDN and checks it in chunks, writing the body to `copy` when given
/// (blocking). Ok: the verified plaintext length.
fn check_blocking(cdn: &Cdn, f: &FileRef, copy: Option<&PathBuf>) -> Result<u64, String> {
    let key: [u8; 32] = f
        .media_key
        .as_deref()
        .and_then(|k| k.try_into().ok())
        .ok_or("mediaKey: missing or not 32 bytes")?;
    let sha: [u8; 32] = f
        .file_sha256
        .as_deref()
        .and_then(|k| k.try_into().ok())
        .ok_or("fileSha256: missing or not 32 bytes")?;
    let path = f.direct_path.as_deref().ok_or("directPath: missing")?;
    let (mut body, _) = cdn.open(path).map_err(|r| format!("cdn: {r}"))?;
    let mut out = match copy {
        Some(p) => Some(std::fs::File::create(p).map_err(|e| format!("copy: {e}"))?),
        None => None,
    };
    let mut dec = Decryptor::new(
        &expand(&key, f.ty),
        Expect {
            file_sha256: sha,
            // What WhatsApp's apps require of every media message they render.
            file_enc_sha256: Some(
                f.file_enc_sha256
                    .as_deref()
                    .and_then(|k| k.try_into().ok())
                    .ok_or("fileEncSha256: missing or not 32 bytes")?,
            ),
            max_plain: MAX_MEDIA_BYTES,
        },
    );
    let named = |e: MediaError| format!("{}: {e}", check_name(&e));
    let mut buf = vec![0u8; CHUNK];
    let mut plain = Vec::with_capacity(CHUNK + 32);
    loop {
        let n = body.read(&mut buf).map_err(|e| format!("cdn: {e}"))?;
        if n == 0 {
            break;
        }
        if let Some(o) = out.as_mut() {
            o.write_all(&buf[..n]).map_err(|e| format!("copy: {e}"))?;
        }
        plain.clear();
        dec.update(&buf[..n], &mut plain).map_err(named)?;
    }
    plain.clear();
    let v = dec.finish(&mut plain).map_err(named)?;
    match f.file_length {
        Some(d) if d != v.file_length => Err(format!(
            "fileLength: declared {d}, the file has {}",
            v.file_length
        )),
        Some(_) => Ok(v.file_length),
        None => Err("fileLength: missing".into()),
    }
}

/// User `number`'s device read message `key` (`own`: its account sent it) carried by `node`:
/// if it is a media message, the app fetches and checks its file once per user, records what
/// it found, and keeps a verified file in the phone's gallery.
pub(super) async fn received(
    shared: &Shared,
    number: &str,
    key: &MessageKey,
    own: bool,
    message: &wa::Message,
    node: &Node,
) {
    let Some(f) = file_ref(message) else { return };
    let kept = {
        let Ok(st) = shared.state.lock() else { return };
        let Some(p) = st.phones.get(number) else {
            return;
        };
        if p.inbox.has_media(key) {
            return;
        }
        p.gallery.has(&key.id)
    };
    let copy = (!kept).then(|| shared.cdn.side_path());
    let cdn = shared.cdn.clone();
    let (f, copy, checked) = match tokio::task::spawn_blocking(move || {
        let r = check_blocking(&cdn, &f, copy.as_ref());
        (f, copy, r)
    })
    .await
    {
        Ok(done) => done,
        Err(_) => return,
    };
    let mediatype = node
        .child_nodes()
        .iter()
        .filter(|c| c.tag == "enc")
        .find_map(|c| c.get_str("mediatype").map(|m| m.into_owned()));
    let seen = MediaSeen {
        kind: f.kind.to_owned(),
        mimetype: f.mimetype.clone(),
        file_name: f.file_name.clone(),
        caption: f.caption.clone(),
        size: f.file_length,
        sha256: checked
            .is_ok()
            .then(|| f.file_sha256.as_deref().map(crate::util::hex::encode))
            .flatten(),
        verified: checked.is_ok(),
        error: checked.as_ref().err().cloned(),
        stanza_type: node.get_str("type").map(|t| t.into_owned()),
        mediatype,
        shown: f.shown.clone(),
    };
    let media_key = f
        .media_key
        .as_deref()
        .and_then(|k| <[u8; 32]>::try_from(k).ok());
    let Ok(mut st) = shared.state.lock() else {
        return;
    };
    let Some(p) = st.phones.get_mut(number) else {
        if let Some(c) = &copy {
            let _ = std::fs::remove_file(c);
        }
        return;
    };
    p.inbox.set_media(key, seen);
    match (copy, media_key, checked) {
        (Some(copy), Some(k), Ok(_)) => p.gallery.keep(Kept {
            id: key.id.clone(),
            chat: key.chat.clone(),
            from_me: own,
            media_key: Zeroizing::new(k),
            mms_type: f.ty.mms_type(),
            copy,
        }),
        (Some(copy), _, _) => {
            let _ = std::fs::remove_file(copy);
        }
        _ => {}
    }
}

/// A user JID as the phone keys chats: a LID it knows becomes the phone number.
fn chat_key(st: &State, chat: &str) -> String {
    match chat.parse::<Jid>() {
        Ok(j) if j.server == Server::Lid => st
            .lids
            .get(&j.user)
            .map(|pn| Jid::new(pn.clone(), Server::User).to_string())
            .unwrap_or_else(|| chat.to_owned()),
        Ok(j) => j.to_non_ad().to_string(),
        Err(_) => chat.to_owned(),
    }
}

/// How the phone answers a media retry.
enum Answer {
    /// `<error code>`: it cannot encrypt an answer.
    Error(u16),
    /// The encrypted `MediaRetryNotification`.
    Result(Zeroizing<[u8; 32]>, ResultType, Option<String>),
}

/// A linked device's `<receipt type="server-error">` to its own number (the media-retry
/// request, §2.6): the account's phone looks the message up in its gallery, checks the
/// request, uploads its copy again and answers `<notification type="mediaretry">`.
pub(super) async fn answer_retry(shared: &Shared, dev: &Device, node: &Node) {
    let Some(id) = node.get_str("id").map(|s| s.into_owned()) else {
        return;
    };
    // Only a device's own phone answers it (whatsmeow sends it `to` the own PN).
    if node.get_jid("to").is_none_or(|to| to.user != dev.jid.user) || id.is_empty() {
        return;
    }
    let Some(rmr) = node.child("rmr") else { return };
    let (Some(chat), from_me) = (
        rmr.get_str("jid").map(|s| s.into_owned()),
        rmr.get_str("from_me").as_deref() == Some("true"),
    ) else {
        return;
    };
    let request = node.child("encrypt").map(|e| {
        let ct = e.child("enc_p").and_then(|p| p.content_bytes());
        let iv = e
            .child("enc_iv")
            .and_then(|p| p.content_bytes())
            .and_then(|b| <[u8; 12]>::try_from(&b[..]).ok());
        (ct.map(|c| c.to_vec()), iv)
    });
    let found = shared.state.lock().ok().and_then(|st| {
        let phone = st.phones.get(&dev.jid.user)?;
        let want = chat_key(&st, &chat);
        let k = phone
            .gallery
            .find(&id, from_me, |c| chat_key(&st, c) == want)?;
        Some((
            k.media_key.clone(),
            k.mms_type,
            k.copy.clone(),
            phone.gallery.deleted,
        ))
    });
    let answer = match found {
        None => Answer::Error(ERROR_NOT_FOUND),
        Some((key, mms_type, copy, deleted)) => {
            // Baileys notes the `<encrypt>` part is not strictly needed (§2.6): a request
            // without it is answered; one that does not decrypt under the key is not.
            let readable = match &request {
                None => true,
                Some((Some(ct), Some(iv))) => {
                    crate::media::retry::decrypt_request(&key, &id, ct, &iv[..]).is_ok()
                }
                Some(_) => false,
            };
            if !readable {
                Answer::Error(ERROR_DECRYPTION)
            } else if deleted {
                Answer::Result(key, ResultType::NotFound, None)
            } else {
                let cdn = shared.cdn.clone();
                let stored =
                    tokio::task::spawn_blocking(move || cdn.store_file(mms_type, &copy)).await;
                match stored {
                    Ok(Ok(up)) => Answer::Result(key, ResultType::Success, Some(up.direct_path)),
                    _ => Answer::Result(key, ResultType::GeneralError, None),
                }
            }
        }
    };
    let t = shared.clock.now_unix();
    let body = match answer {
        Answer::Error(code) => Node::new("error").attr("code", code.to_string()),
        Answer::Result(key, result, direct_path) => {
            let n = wa::MediaRetryNotification {
                stanza_id: Some(id.clone()),
                direct_path,
                result: Some(result as i32),
                ..Default::default()
            };
            let iv = rand::random::<[u8; 12]>();
            let ct = crate::media::retry::encrypt_notification(&key, &id, &n, iv);
            Node::new("encrypt").children(vec![
                Node::new("enc_p").bytes(ct),
                Node::new("enc_iv").bytes(iv.to_vec()),
            ])
        }
    };
    let mut echoed = Node::new("rmr");
    echoed.attrs = rmr.attrs.clone();
    let notification = Node::new("notification")
        .attr("type", "mediaretry")
        .attr("id", id.clone())
        .attr("from", Jid::new(dev.jid.user.clone(), Server::User))
        .attr("t", t.to_string())
        .children(vec![echoed, body]);
    to_device(shared, &dev.jid, id, notification);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_are_deterministic_per_seed() {
        let read = |seed, n| {
            let mut g = Generated::new(n, seed);
            let mut v = Vec::new();
            g.read_to_end(&mut v).unwrap();
            v
        };
        assert_eq!(read(1, 1000), read(1, 1000));
        assert_ne!(read(1, 1000), read(2, 1000));
        assert_eq!(read(3, 70_000).len(), 70_000);
    }

    #[test]
    fn every_kind_builds_its_field_and_reads_back() {
        let f = || FileFields {
            url: "u".into(),
            direct_path: "/v/x".into(),
            media_key: vec![1; 32],
            file_sha256: vec![2; 32],
            file_enc_sha256: vec![3; 32],
            file_length: 9,
            media_key_timestamp: 7,
        };
        for (kind, name) in [
            (MediaKind::Image, "image"),
            (MediaKind::Video, "video"),
            (MediaKind::Ptv, "ptv"),
            (MediaKind::Audio, "audio"),
            (MediaKind::Ptt, "ptt"),
            (MediaKind::Document, "document"),
            (MediaKind::Sticker, "sticker"),
        ] {
            let mut send = MediaSend::new(kind, MediaData::Bytes(vec![1]));
            send.caption = Some("c".into());
            let m = media_message(&send, f());
            let r = file_ref(&m).unwrap();
            assert_eq!(r.kind, name);
            assert_eq!(r.direct_path.as_deref(), Some("/v/x"));
            assert_eq!(r.file_length, Some(9));
            assert_eq!(r.mimetype.as_deref(), Some(kind.default_mimetype()));
        }
        let mut doc = MediaSend::new(MediaKind::Document, MediaData::Bytes(vec![1]));
        doc.caption = Some("read me".into());
        assert!(
            media_message(&doc, f())
                .document_with_caption_message
                .is_some()
        );
        doc.caption = None;
        assert!(media_message(&doc, f()).document_message.is_some());
    }
}
