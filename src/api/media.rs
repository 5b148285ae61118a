//! `GET …/messages/:messageId/media`: a message's file as stored, streamed with its type,
//! length, `ETag` (its SHA-256) and byte ranges (RFC 9110 §14); errors in the usual envelope.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::io::AsyncReadExt;

use crate::client::content::Kind;
use crate::service::MediaDraft;
use crate::service::media::{OutboxMedia, StoredFile};

use super::extract::{self, ids};
use super::limits::Endpoint;
use super::{ApiError, AppState, Op};

/// Longest text or caption.
const MAX_TEXT: usize = crate::client::messenger::MAX_TEXT_BYTES;

/// Bytes read from the store per chunk of the answer.
const CHUNK: usize = 64 * 1024;

/// A `Range: bytes=…` header against a file of `len` bytes: the one range asked for as
/// `start..end`, None for no (or an unsupported, e.g. multi-) range, which is answered whole
/// as RFC 9110 allows; Err for a range outside the file (416).
fn range_of(headers: &HeaderMap, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        // The last n bytes.
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 || len == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len)
        }
        (false, _) => {
            let start: u64 = a.parse().map_err(|_| ())?;
            let end = if b.is_empty() {
                len
            } else {
                let last: u64 = b.parse().map_err(|_| ())?;
                if last < start {
                    return Err(());
                }
                last.saturating_add(1).min(len)
            };
            if start >= len {
                return Err(());
            }
            (start, end)
        }
        (true, true) => return Ok(None),
    };
    Ok(Some(range))
}

/// `Content-Disposition` for a file named `name` (RFC 6266 §4.3): `inline` or `attachment`,
/// an ASCII `filename` every client can read (non-ASCII as `_`; quotes, backslashes and
/// control characters dropped) and the exact name as `filename*=UTF-8''…` (RFC 8187
/// percent-encoding), which clients that know it prefer.
fn disposition(name: Option<&str>, inline: bool) -> String {
    let kind = if inline { "inline" } else { "attachment" };
    let Some(name) = name else {
        return kind.into();
    };
    let name: String = name.chars().filter(|c| !c.is_control()).take(200).collect();
    let ascii: String = name
        .chars()
        .filter(|c| *c != '"' && *c != '\\')
        .map(|c| if c.is_ascii() { c } else { '_' })
        .collect();
    if ascii.trim().is_empty() {
        return kind.into();
    }
    let mut exact = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        // RFC 8187 attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~"; every other byte escaped.
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            exact.push(char::from(b));
        } else {
            exact.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{exact}")
}

#[utoipa::path(
    get,
    path = "/api/whatsapp/{subaccountId}/{agentId}/messages/{messageId}/media",
    tag = "whatsapp",
    summary = "A message's file",
    description = "Streams the file of a media message (image, video, audio, voice note, \
        document, sticker) as stored after its checks passed, with its mimetype, length and \
        `ETag` (the file's SHA-256, quoted). A single `Range: bytes=…` is answered with 206; \
        `If-None-Match` with the ETag gives 304. A file not fetched yet is fetched first.",
    params(
        ("subaccountId" = String, Path, description = "The subaccount"),
        ("agentId" = String, Path, description = "The agent"),
        ("messageId" = String, Path, description = "The message id (bare or serialized)"),
    ),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = super::schema::FileBytes),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream", body = super::schema::FileBytes),
        (status = 304, description = "Unchanged (If-None-Match)"),
        (status = 400, description = "Bad input", body = super::schema::ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = super::schema::ErrorEnvelope),
        (status = 403, description = "Not allowed for this token", body = super::schema::ErrorEnvelope),
        (status = 404, description = "`media_not_available`: no file to give", body = super::schema::ErrorEnvelope),
        (status = 409, description = "`media_error`: the file could not be had (the reason says why)", body = super::schema::ErrorEnvelope),
        (status = 416, description = "The range lies outside the file", body = super::schema::ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = super::schema::ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn get_media(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    path: Result<Path<Vec<String>>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let [sub, agent, id] = ids::<3>(path)?;
        extract::allow(&st, &headers, &sub, Endpoint::Messages, false)?;
        serve(&st, &sub, &agent, &id, &headers).await
    }
    .await;
    match r {
        Ok(resp) => resp,
        Err(e) => op.fail(&e),
    }
}

#[utoipa::path(
    get,
    path = "/api/media/{token}",
    tag = "whatsapp",
    summary = "A message's file by signed link",
    description = "The link webhooks carry when `WA_GATEWAY_PUBLIC_URL` is set: it needs no \
        token, names one file and expires (`WA_GATEWAY_MEDIA_LINK_TTL_S`). Answers as \
        `GET …/messages/{messageId}/media`.",
    params(("token" = String, Path, description = "The signed link's token")),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = super::schema::FileBytes),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream", body = super::schema::FileBytes),
        (status = 304, description = "Unchanged (If-None-Match)"),
        (status = 403, description = "`invalid_media_link`: not a link this service made (checked before anything is looked up)", body = super::schema::ErrorEnvelope),
        (status = 404, description = "`media_not_available`: the file is not stored (a link starts no download) or its account is gone", body = super::schema::ErrorEnvelope),
        (status = 409, description = "`media_error`", body = super::schema::ErrorEnvelope),
        (status = 410, description = "`media_link_expired`", body = super::schema::ErrorEnvelope),
        (status = 416, description = "The range lies outside the file", body = super::schema::ErrorEnvelope),
    ),
)]
pub(super) async fn get_linked_media(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        if token.len() > 512 {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "invalid_media_link",
                "this media link is not valid",
            ));
        }
        serve_with(
            &headers,
            Source::Link {
                st: &st,
                token: &token,
            },
        )
        .await
    }
    .await;
    match r {
        Ok(resp) => resp,
        Err(e) => op.fail(&e),
    }
}

/// The answer for the file of `id`: whole, a range, or 304.
pub(super) async fn serve(
    st: &AppState,
    sub: &str,
    agent: &str,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    serve_with(headers, Source::Agent { st, sub, agent, id }).await
}

/// Where a file is asked for: by agent and message, or by signed link.
enum Source<'a> {
    Agent {
        st: &'a AppState,
        sub: &'a str,
        agent: &'a str,
        id: &'a str,
    },
    Link {
        st: &'a AppState,
        token: &'a str,
    },
}

impl Source<'_> {
    /// The file, and for a link until when (unix seconds) it may be cached.
    async fn open(
        &self,
        range: Option<(u64, u64)>,
    ) -> Result<(crate::service::media::MediaFile, Option<i64>), crate::service::ServiceError> {
        match self {
            Source::Agent { st, sub, agent, id } => {
                Ok((st.service.open_media(sub, agent, id, range).await?, None))
            }
            Source::Link { st, token } => {
                let l = st.service.open_media_link(token, range).await?;
                Ok((l.file, Some(l.expires)))
            }
        }
    }
}

/// The answer for a file `open` opens (whole with None, else the range).
async fn serve_with(headers: &HeaderMap, source: Source<'_>) -> Result<Response, ApiError> {
    let (whole, expires) = source.open(None).await?;
    // A link's answer is cached no longer than the link holds.
    let cache = match expires {
        None => "private, max-age=86400, immutable".to_owned(),
        Some(t) => match t - crate::util::clock::now_ms() as i64 / 1000 {
            left if left > 0 => format!("private, max-age={left}"),
            _ => "no-store".to_owned(),
        },
    };
    let etag = format!("\"{}\"", whole.sha256);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&etag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return Ok(r);
    }
    let len = whole.len;
    let range = range_of(headers, len).map_err(|()| {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            format!("the range lies outside the file ({len} bytes)"),
        )
    })?;
    let (file, status) = match range {
        None => (whole, StatusCode::OK),
        Some(r) => {
            drop(whole);
            (source.open(Some(r)).await?.0, StatusCode::PARTIAL_CONTENT)
        }
    };
    let body_len = range.map(|(a, b)| b - a).unwrap_or(len);
    let mime = file
        .mimetype
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    let stream = futures_util::stream::unfold(
        (file.body, vec![0u8; CHUNK]),
        |(mut body, mut buf)| async move {
            match body.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => Some((Ok(bytes::Bytes::copy_from_slice(&buf[..n])), (body, buf))),
                Err(e) => Some((Err(e), (body, buf))),
            }
        },
    );
    let mut r = Response::new(Body::from_stream(stream));
    *r.status_mut() = status;
    let h = r.headers_mut();
    let mut set = |k: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    // What a peer declared is never rendered on our origin: no sniffing, no scripts, and only
    // images, video and audio shown inline.
    let viewable = ["image/", "video/", "audio/"]
        .iter()
        .any(|p| mime.starts_with(p))
        && !mime.starts_with("image/svg");
    let disp = disposition(file.file_name.as_deref(), viewable);
    set(header::CONTENT_TYPE, &mime);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; sandbox",
    );
    set(header::CONTENT_LENGTH, &body_len.to_string());
    set(header::ETAG, &etag);
    set(header::ACCEPT_RANGES, "bytes");
    set(header::CONTENT_DISPOSITION, &disp);
    set(header::CACHE_CONTROL, &cache);
    if let Some((a, b)) = range {
        set(header::CONTENT_RANGE, &format!("bytes {a}-{}/{len}", b - 1));
    }
    Ok(r)
}

/// A send request, read: recipient, text (the caption for media), whether to wait, the file.
pub(super) struct SendInput {
    pub(super) to: crate::binary::Jid,
    pub(super) text: String,
    pub(super) wait: bool,
    pub(super) media: Option<crate::service::media::OutboxMedia>,
}

/// The largest JSON send body: a file given as base64 must fit (larger ones come as
/// multipart or a URL).
pub(super) const MAX_JSON_SEND: usize = 24 * 1024 * 1024;

/// The largest JSON send body without a file: a text of `MAX_TEXT` bytes fits even written
/// entirely as `\uXXXX` escapes (6 bytes each).
pub(super) const MAX_JSON_TEXT_SEND: usize = 512 * 1024;

/// Longest multipart field other than the text (`to`, `type`, `wait`, `mimetype`,
/// `filename`): each is a few dozen bytes when genuine.
const MAX_FIELD: usize = 1024;

/// Base64 characters decoded per step (a multiple of 4): the decoded file is never held
/// whole, only this much of it at a time.
const B64_STEP: usize = 64 * 1024;

/// A JSON send's body: `to` and the text, and for a file, `media` and the kind in `type`.
/// Every field is read as it was sent ([`Loose`]), so a wrong type gets that field's own
/// error code; strings are borrowed from the body, so a file's base64 is not copied.
#[derive(serde::Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct JsonSend<'a> {
    #[serde(default)]
    to: Loose<'a>,
    #[serde(default)]
    message: Loose<'a>,
    #[serde(default)]
    text: Loose<'a>,
    #[serde(default)]
    wait: Loose<'a>,
    #[serde(default, rename = "type")]
    kind: Loose<'a>,
    #[serde(default)]
    media: Option<JsonMedia<'a>>,
}

/// `media` of a JSON send: exactly one of `url` and `base64`, and how it is shown.
#[derive(serde::Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct JsonMedia<'a> {
    #[serde(default)]
    url: Loose<'a>,
    #[serde(default)]
    base64: Loose<'a>,
    #[serde(default)]
    mimetype: Loose<'a>,
    #[serde(default)]
    filename: Loose<'a>,
    #[serde(default, rename = "fileName")]
    file_name: Loose<'a>,
    /// A JPEG thumbnail, base64.
    #[serde(default)]
    thumbnail: Loose<'a>,
}

/// One JSON value of a send body as sent: a string (borrowed from the body unless it has
/// escapes), a boolean, null or absent, or anything else (which the field refuses by name).
#[derive(Debug, Default, PartialEq, Eq)]
enum Loose<'a> {
    Str(std::borrow::Cow<'a, str>),
    Bool(bool),
    #[default]
    Null,
    Other,
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Loose<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        use std::borrow::Cow;
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Loose<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Loose<'de>, E> {
                Ok(Loose::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Loose<'de>, E> {
                Ok(Loose::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Loose<'de>, E> {
                Ok(Loose::Str(Cow::Owned(v)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Loose<'de>, E> {
                Ok(Loose::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Loose<'de>, E> {
                Ok(Loose::Null)
            }
            fn visit_none<E>(self) -> Result<Loose<'de>, E> {
                Ok(Loose::Null)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Loose<'de>, E> {
                Ok(Loose::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Loose<'de>, E> {
                Ok(Loose::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Loose<'de>, E> {
                Ok(Loose::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Loose<'de>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Loose<'de>, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
        }
        d.deserialize_any(V)
    }
}

impl Loose<'_> {
    /// The string, None when absent or null; `what` names the field in the error otherwise.
    fn string(&self, code: &'static str, what: &str) -> Result<Option<&str>, ApiError> {
        match self {
            Loose::Null => Ok(None),
            Loose::Str(s) => Ok(Some(s)),
            _ => Err(ApiError::bad(code, format!("`{what}` must be a string"))),
        }
    }

    fn is_absent(&self) -> bool {
        *self == Loose::Null
    }
}

/// Reads a JSON send's body from `body`: at most [`MAX_JSON_TEXT_SEND`] bytes unless what
/// came so far names a `media`, then at most [`MAX_JSON_SEND`]; a body without a file is
/// held to the small limit once parsed, whatever it named.
pub(super) async fn read_json_send(body: axum::body::Body) -> Result<bytes::Bytes, ApiError> {
    use futures_util::StreamExt;
    let too_large = |limit: usize| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is larger than {limit} bytes (a file may make it up to {MAX_JSON_SEND}; \
                 send large files as multipart or a URL)"
            ),
        )
    };
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut media_named = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad("invalid_body", e.to_string()))?;
        buf.extend_from_slice(&chunk);
        if buf.len() > MAX_JSON_TEXT_SEND && !media_named {
            // A `media` key comes before its base64, so it is within the first bytes of any
            // body large because of its file.
            media_named = buf.windows(7).any(|w| w == b"\"media\"");
            if !media_named {
                return Err(too_large(MAX_JSON_TEXT_SEND));
            }
        }
        if buf.len() > MAX_JSON_SEND {
            return Err(too_large(MAX_JSON_SEND));
        }
    }
    Ok(buf.freeze())
}

/// Decodes standard base64 `b64` step by step into `w`; 400 `invalid_media` naming where it
/// stops being base64.
async fn write_base64(
    w: &mut crate::service::media::MediaWriter,
    b64: &str,
) -> Result<(), ApiError> {
    let b64 = b64.trim().as_bytes();
    let steps = b64.len().div_ceil(B64_STEP);
    let mut out = Vec::with_capacity(B64_STEP / 4 * 3);
    for (n, step) in b64.chunks(B64_STEP).enumerate() {
        let at = n * B64_STEP;
        // Padding ends the data: within a step that is not the last, it is an error the
        // step-by-step decoding would not otherwise see.
        if n + 1 < steps
            && let Some(i) = step.iter().position(|&c| c == b'=')
        {
            return Err(bad_base64("media.base64", at + i));
        }
        out.clear();
        base64::engine::general_purpose::STANDARD
            .decode_vec(step, &mut out)
            .map_err(|e| bad_base64("media.base64", at + base64_error_at(&e, step.len())))?;
        w.write(&out).await?;
    }
    Ok(())
}

/// Where in its input a base64 error lies.
fn base64_error_at(e: &base64::DecodeError, len: usize) -> usize {
    match e {
        base64::DecodeError::InvalidByte(i, _) | base64::DecodeError::InvalidLastSymbol(i, _) => *i,
        base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidPadding => len,
    }
}

fn bad_base64(field: &str, at: usize) -> ApiError {
    ApiError::bad(
        "invalid_media",
        format!(
            "`{field}` is not standard base64 (RFC 4648 §4, padded, no line breaks): it stops \
             being so at character {at}"
        ),
    )
}

/// A caller's thumbnail given as base64 (small: it is decoded whole).
fn thumbnail_of(v: &Loose) -> Result<Option<Vec<u8>>, ApiError> {
    let Some(t) = v.string("invalid_media", "media.thumbnail")? else {
        return Ok(None);
    };
    let t = t.trim();
    // Larger than the largest thumbnail could be: refused without decoding it.
    if t.len() > (crate::service::MAX_GIVEN_THUMBNAIL / 3 + 1) * 4 {
        return Err(thumbnail_too_large());
    }
    base64::engine::general_purpose::STANDARD
        .decode(t)
        .map(Some)
        .map_err(|e| bad_base64("media.thumbnail", base64_error_at(&e, t.len())))
}

fn thumbnail_too_large() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "media_type_not_accepted",
        format!(
            "the thumbnail must be a JPEG of at most {} bytes",
            crate::service::MAX_GIVEN_THUMBNAIL
        ),
    )
}

/// The message kind of a file: `type` when given (`image`, `video`, `gif`, `ptv`, `audio`,
/// `ptt`/`voice`, `document`, `sticker`), else by its mimetype (`image/*` image, `video/*`
/// video, `audio/*` audio, anything else a document). Second value: a GIF.
pub(super) fn kind_for(explicit: Option<&str>, mimetype: &str) -> Result<(Kind, bool), ApiError> {
    Ok(match explicit.map(str::trim) {
        Some("image") => (Kind::Image, false),
        Some("video") => (Kind::Video, false),
        Some("gif") => (Kind::Video, true),
        Some("ptv") => (Kind::Ptv, false),
        Some("audio") => (Kind::Audio, false),
        Some("ptt" | "voice") => (Kind::Ptt, false),
        Some("document") => (Kind::Document, false),
        Some("sticker") => (Kind::Sticker, false),
        Some(other) => {
            return Err(ApiError::bad(
                "invalid_type",
                format!(
                    "`type` {:?} is not image, video, gif, ptv, audio, ptt, document or sticker",
                    other.chars().take(20).collect::<String>()
                ),
            ));
        }
        None => (crate::service::kind_of_mimetype(mimetype), false),
    })
}

/// A mimetype as given (`type/subtype` and parameters), checked for form; the service fills in
/// one from the bytes or the kind when none is given.
fn mimetype_given(given: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(m) = given.map(str::trim).filter(|m| !m.is_empty()) else {
        return Ok(None);
    };
    let ok = m.len() <= 255
        && m.split(';').next().is_some_and(|t| {
            let mut p = t.trim().split('/');
            matches!((p.next(), p.next(), p.next()), (Some(a), Some(b), None)
                if !a.is_empty() && !b.is_empty()
                    && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&c)))
        })
        && m.bytes().all(|c| (0x20..0x7f).contains(&c));
    if !ok {
        return Err(ApiError::bad(
            "invalid_mimetype",
            "`mimetype` must be a media type such as image/jpeg",
        ));
    }
    Ok(Some(m.to_owned()))
}

fn file_name_of(given: Option<&str>) -> Result<Option<String>, ApiError> {
    match given.map(str::trim).filter(|n| !n.is_empty()) {
        None => Ok(None),
        Some(n) if n.len() <= 255 && !n.chars().any(char::is_control) => Ok(Some(n.to_owned())),
        Some(_) => Err(ApiError::bad(
            "invalid_filename",
            "`filename` must be at most 255 bytes without control characters",
        )),
    }
}

/// The outbox's record of a file just stored, once the service has checked the bytes
/// against how they are sent and described them.
async fn outbox_media(
    st: &AppState,
    draft: MediaDraft,
    file: StoredFile,
) -> Result<OutboxMedia, ApiError> {
    Ok(st.service.describe_media(draft, file).await?)
}

fn wait_of(v: &Loose) -> Result<bool, ApiError> {
    match v {
        Loose::Null | Loose::Bool(true) => Ok(true),
        Loose::Bool(false) => Ok(false),
        Loose::Str(s) if s == "true" => Ok(true),
        Loose::Str(s) if s == "false" => Ok(false),
        _ => Err(ApiError::bad(
            "invalid_wait",
            "`wait` must be true or false",
        )),
    }
}

/// The text of a send: required without a file, an optional caption with one.
fn text_of(v: &Loose, with_file: bool) -> Result<String, ApiError> {
    match v {
        Loose::Str(s) if s.len() > MAX_TEXT => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_long",
            format!("`message` is longer than {MAX_TEXT} bytes"),
        )),
        Loose::Str(s) if !s.trim().is_empty() => Ok(s.to_string()),
        Loose::Str(_) | Loose::Null if with_file => Ok(String::new()),
        Loose::Str(_) => Err(ApiError::bad("invalid_message", "`message` is empty")),
        Loose::Null => Err(ApiError::bad("missing_message", "`message` is required")),
        _ => Err(ApiError::bad(
            "invalid_message",
            "`message` must be a string",
        )),
    }
}

fn to_of(v: &Loose) -> Result<crate::binary::Jid, ApiError> {
    match v.string("invalid_to", "to")? {
        Some(s) => super::extract::parse_to(s.trim()),
        None => Err(ApiError::bad("missing_to", "`to` is required")),
    }
}

/// A JSON send (`{to, message, wait?, type?, media?: {url | base64, mimetype?, filename?,
/// thumbnail?}}`) read from `body`, as [`read_json_send`] read it.
pub(super) async fn json_input(st: &AppState, body: &[u8]) -> Result<SendInput, ApiError> {
    if body.iter().find(|c| !c.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad(
            "invalid_json",
            "the body must be a JSON object",
        ));
    }
    let v: JsonSend = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            // Every field but `media` takes any value; what is left is `media` not an object,
            // or a field given twice.
            ApiError::bad("invalid_body", format!("the body is not a send: {e}"))
        } else {
            ApiError::bad("invalid_json", format!("the body is not JSON: {e}"))
        }
    })?;
    let to = to_of(&v.to)?;
    let message = if v.message.is_absent() {
        &v.text
    } else {
        &v.message
    };
    let text = text_of(message, v.media.is_some())?;
    let wait = wait_of(&v.wait)?;
    let Some(m) = v.media else {
        if body.len() > MAX_JSON_TEXT_SEND {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("a send without a file may be at most {MAX_JSON_TEXT_SEND} bytes"),
            ));
        }
        return Ok(SendInput {
            to,
            text,
            wait,
            media: None,
        });
    };
    let explicit = v.kind.string("invalid_type", "type")?;
    let declared = m.mimetype.string("invalid_media", "media.mimetype")?;
    let file_name = file_name_of(
        m.filename
            .string("invalid_media", "media.filename")?
            .or(m.file_name.string("invalid_media", "media.fileName")?),
    )?;
    let thumbnail = thumbnail_of(&m.thumbnail)?;
    let (kind, gif) = kind_for(explicit, declared.unwrap_or(""))?;
    let url = m.url.string("invalid_media", "media.url")?;
    let b64 = m.base64.string("invalid_media", "media.base64")?;
    let (file, served) = match (url, b64) {
        (Some(url), None) => st.service.fetch_media_url(kind, url).await?,
        (None, Some(b64)) => {
            let mut w = st.service.begin_media(kind).await?;
            write_base64(&mut w, b64).await?;
            (w.finish().await?, None)
        }
        _ => {
            return Err(ApiError::bad(
                "invalid_media",
                "`media` needs exactly one of `url` and `base64`",
            ));
        }
    };
    let draft = MediaDraft {
        kind,
        explicit: explicit.is_some(),
        gif,
        mimetype: mimetype_given(declared.or(served.as_deref()))?,
        file_name,
        thumbnail,
    };
    Ok(SendInput {
        to,
        text,
        wait,
        media: Some(outbox_media(st, draft, file).await?),
    })
}

/// Reads one multipart text field, refused once past `cap` bytes (never held whole).
async fn form_text(
    field: &mut axum::extract::multipart::Field<'_>,
    name: &str,
    cap: usize,
) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(form_error)? {
        if bytes.len() + chunk.len() > cap {
            let code = if cap == MAX_TEXT {
                "message_too_long"
            } else {
                "field_too_long"
            };
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                code,
                format!("`{name}` is longer than {cap} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::bad("invalid_body", format!("`{name}` is not UTF-8")))
}

fn form_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is larger than the largest file allowed",
        )
    } else {
        ApiError::bad("invalid_body", e.body_text())
    }
}

/// A multipart send: fields `to`, `message` (the caption), `type`, `wait`, `mimetype`,
/// `filename`, the file in `file` (its own content type and file name count when the fields
/// do not say) and a JPEG in `thumbnail`. The file is streamed into the media store, never
/// held whole. Fields may come in any order: the kind (and so the cap) is settled once every
/// field is read, and a file streamed under a larger cap than its kind's is then refused.
pub(super) async fn multipart_input(
    st: &AppState,
    mut form: axum::extract::Multipart,
) -> Result<SendInput, ApiError> {
    let mut fields: std::collections::HashMap<&'static str, String> = Default::default();
    let mut file: Option<(StoredFile, Option<String>, Option<String>)> = None;
    let mut thumbnail: Option<Vec<u8>> = None;
    while let Some(mut field) = form.next_field().await.map_err(form_error)? {
        let name = field.name().unwrap_or("").to_owned();
        let known = [
            "to", "message", "text", "caption", "type", "wait", "mimetype", "filename",
        ];
        if name == "file" {
            if file.is_some() {
                return Err(ApiError::bad("invalid_media", "one `file` per send"));
            }
            let part_mime = field.content_type().map(str::to_owned);
            let part_name = field.file_name().map(str::to_owned);
            // The cap of the kind as known so far; checked again once every field is read.
            let hint = fields
                .get("mimetype")
                .cloned()
                .or_else(|| part_mime.clone())
                .unwrap_or_default();
            let (kind, _) = kind_for(fields.get("type").map(String::as_str), &hint)?;
            let mut w = st.service.begin_media(kind).await?;
            while let Some(chunk) = field.chunk().await.map_err(form_error)? {
                w.write(&chunk).await?;
            }
            file = Some((w.finish().await?, part_mime, part_name));
            continue;
        }
        if name == "thumbnail" {
            if thumbnail.is_some() {
                return Err(ApiError::bad("invalid_media", "one `thumbnail` per send"));
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(form_error)? {
                if bytes.len() + chunk.len() > crate::service::MAX_GIVEN_THUMBNAIL {
                    return Err(thumbnail_too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            thumbnail = Some(bytes);
            continue;
        }
        let Some(k) = known.iter().find(|k| **k == name) else {
            return Err(ApiError::bad(
                "invalid_body",
                format!(
                    "unknown form field {:?}",
                    name.chars().take(40).collect::<String>()
                ),
            ));
        };
        if fields.contains_key(k) {
            return Err(ApiError::bad(
                "invalid_body",
                format!("form field `{k}` is given twice"),
            ));
        }
        let cap = if matches!(*k, "message" | "text" | "caption") {
            MAX_TEXT
        } else {
            MAX_FIELD
        };
        let text = form_text(&mut field, k, cap).await?;
        fields.insert(k, text);
    }
    let field = |k: &str| -> Loose<'_> {
        fields
            .get(k)
            .map(|s| Loose::Str(std::borrow::Cow::Borrowed(s.as_str())))
            .unwrap_or_default()
    };
    let to = to_of(&field("to"))?;
    let caption = ["message", "text", "caption"]
        .into_iter()
        .map(field)
        .find(|f| !f.is_absent())
        .unwrap_or_default();
    let wait = wait_of(&field("wait"))?;
    let Some((stored, part_mime, part_name)) = file else {
        if thumbnail.is_some() {
            return Err(ApiError::bad(
                "invalid_media",
                "`thumbnail` goes with a `file`",
            ));
        }
        let text = text_of(&caption, false)?;
        return Ok(SendInput {
            to,
            text,
            wait,
            media: None,
        });
    };
    let text = text_of(&caption, true)?;
    let declared = fields.get("mimetype").cloned().or(part_mime);
    let (kind, gif) = kind_for(
        fields.get("type").map(String::as_str),
        declared.as_deref().unwrap_or(""),
    )?;
    let cap = st.service.media_cap(kind);
    if stored.size > cap {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "media_too_large",
            format!(
                "the file is larger than {cap} bytes, the most a {} may have",
                kind.as_str()
            ),
        ));
    }
    let file_name = file_name_of(
        fields
            .get("filename")
            .map(String::as_str)
            .or(part_name.as_deref()),
    )?;
    let draft = MediaDraft {
        kind,
        explicit: fields.contains_key("type"),
        gif,
        mimetype: mimetype_given(declared.as_deref())?,
        file_name,
        thumbnail,
    };
    Ok(SendInput {
        to,
        text,
        wait,
        media: Some(outbox_media(st, draft, stored).await?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        m
    }

    #[test]
    fn ranges_as_rfc_9110_reads_them() {
        assert_eq!(range_of(&HeaderMap::new(), 10), Ok(None));
        assert_eq!(range_of(&h("bytes=0-3"), 10), Ok(Some((0, 4))));
        assert_eq!(range_of(&h("bytes=4-"), 10), Ok(Some((4, 10))));
        assert_eq!(range_of(&h("bytes=-3"), 10), Ok(Some((7, 10))));
        assert_eq!(range_of(&h("bytes=-30"), 10), Ok(Some((0, 10))));
        assert_eq!(range_of(&h("bytes=5-100"), 10), Ok(Some((5, 10))));
        assert_eq!(range_of(&h("bytes=10-"), 10), Err(()));
        assert_eq!(range_of(&h("bytes=5-4"), 10), Err(()));
        assert_eq!(range_of(&h("bytes=-0"), 10), Err(()));
        assert_eq!(range_of(&h("bytes=0-1,3-4"), 10), Ok(None));
        assert_eq!(range_of(&h("items=0-1"), 10), Ok(None));
        assert_eq!(range_of(&h("bytes=x-1"), 10), Err(()));
    }

    #[test]
    fn file_names_cannot_break_the_header() {
        assert_eq!(
            disposition(Some("a\"b\\c\r\nd.pdf"), true),
            "inline; filename=\"abcd.pdf\"; filename*=UTF-8''a%22b%5Ccd.pdf"
        );
        assert_eq!(
            disposition(Some("Résumé 2024.pdf"), false),
            "attachment; filename=\"R_sum_ 2024.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%202024.pdf"
        );
        // Whatever the name, the header is a valid header value.
        for n in ["\u{0}x\u{7f}", "\"\\\"", "日本.txt", "a;b=c,d'e%f"] {
            let d = disposition(Some(n), true);
            assert!(HeaderValue::from_str(&d).is_ok(), "{d}");
            assert!(d.is_ascii(), "{d}");
        }
        assert_eq!(disposition(Some("\"\\"), true), "inline");
        assert_eq!(disposition(None, true), "inline");
    }
}
