//! `GET …/messages/:messageId/media`: a message's file as stored, streamed with its type,
//! length, `ETag` (its SHA-256) and byte ranges (RFC 9110 §14); errors in the usual envelope.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::Value;
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

/// A file name safe inside a quoted `Content-Disposition` parameter.
fn disposition(name: Option<&str>) -> String {
    match name {
        Some(n) => {
            let clean: String = n
                .chars()
                .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
                .take(200)
                .collect();
            format!("inline; filename=\"{clean}\"")
        }
        None => "inline".into(),
    }
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
        (status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream", body = Vec<u8>),
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
        (status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "Unchanged (If-None-Match)"),
        (status = 403, description = "`invalid_media_link`", body = super::schema::ErrorEnvelope),
        (status = 404, description = "`media_not_available`", body = super::schema::ErrorEnvelope),
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
    async fn open(
        &self,
        range: Option<(u64, u64)>,
    ) -> Result<crate::service::media::MediaFile, crate::service::ServiceError> {
        match self {
            Source::Agent { st, sub, agent, id } => {
                st.service.open_media(sub, agent, id, range).await
            }
            Source::Link { st, token } => st.service.open_media_link(token, range).await,
        }
    }
}

/// The answer for a file `open` opens (whole with None, else the range).
async fn serve_with(headers: &HeaderMap, source: Source<'_>) -> Result<Response, ApiError> {
    let whole = source.open(None).await?;
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
            (source.open(Some(r)).await?, StatusCode::PARTIAL_CONTENT)
        }
    };
    let body_len = range.map(|(a, b)| b - a).unwrap_or(len);
    let mime = file
        .mimetype
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    let disp = disposition(file.file_name.as_deref());
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
    let disp = if viewable {
        disp
    } else {
        disp.replacen("inline", "attachment", 1)
    };
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
    set(header::CACHE_CONTROL, "private, max-age=86400, immutable");
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

fn wait_of(v: Option<&Value>) -> Result<bool, ApiError> {
    match v {
        None | Some(Value::Bool(true)) => Ok(true),
        Some(Value::Bool(false)) => Ok(false),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(_) => Err(ApiError::bad(
            "invalid_wait",
            "`wait` must be true or false",
        )),
    }
}

/// The text of a send: required without a file, an optional caption with one.
pub(super) fn text_of(v: Option<&Value>, with_file: bool) -> Result<String, ApiError> {
    match v {
        Some(Value::String(s)) if s.len() > MAX_TEXT => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_long",
            format!("`message` is longer than {MAX_TEXT} bytes"),
        )),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None if with_file => Ok(String::new()),
        Some(Value::String(_)) => Err(ApiError::bad("invalid_message", "`message` is empty")),
        Some(_) => Err(ApiError::bad(
            "invalid_message",
            "`message` must be a string",
        )),
        None => Err(ApiError::bad("missing_message", "`message` is required")),
    }
}

fn to_of(v: Option<&Value>) -> Result<crate::binary::Jid, ApiError> {
    match v {
        Some(Value::String(s)) => super::extract::parse_to(s.trim()),
        Some(_) => Err(ApiError::bad("invalid_to", "`to` must be a string")),
        None => Err(ApiError::bad("missing_to", "`to` is required")),
    }
}

/// A JSON send: `{to, message, wait?, type?, media?: {url | base64, mimetype?, filename?}}`.
pub(super) async fn json_input(st: &AppState, v: &Value) -> Result<SendInput, ApiError> {
    let to = to_of(v.get("to"))?;
    let media_v = v.get("media").filter(|m| !m.is_null());
    let text = text_of(
        v.get("message").or_else(|| v.get("text")),
        media_v.is_some(),
    )?;
    let wait = wait_of(v.get("wait"))?;
    let Some(m) = media_v else {
        return Ok(SendInput {
            to,
            text,
            wait,
            media: None,
        });
    };
    let Value::Object(m) = m else {
        return Err(ApiError::bad("invalid_media", "`media` must be an object"));
    };
    let str_field = |k: &str| -> Result<Option<&str>, ApiError> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ApiError::bad(
                "invalid_media",
                format!("`media.{k}` must be a string"),
            )),
        }
    };
    let explicit = match v.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(ApiError::bad("invalid_type", "`type` must be a string")),
    };
    let declared = str_field("mimetype")?;
    let file_name = file_name_of(str_field("filename")?.or(str_field("fileName")?))?;
    let (kind, gif) = kind_for(explicit, declared.unwrap_or(""))?;
    let (file, served) = match (str_field("url")?, str_field("base64")?) {
        (Some(url), None) => {
            let (f, mime) = st.service.fetch_media_url(kind, url).await?;
            (f, mime)
        }
        (None, Some(b64)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| ApiError::bad("invalid_media", "`media.base64` is not base64"))?;
            let mut w = st.service.begin_media(kind).await?;
            w.write(&bytes).await?;
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
        thumbnail: None,
    };
    Ok(SendInput {
        to,
        text,
        wait,
        media: Some(outbox_media(st, draft, file).await?),
    })
}

/// A multipart send: fields `to`, `message` (the caption), `type`, `wait`, `mimetype`,
/// `filename`, and the file in `file` (its own content type and file name count when the
/// fields do not say). The file is streamed into the media store, never held whole.
pub(super) async fn multipart_input(
    st: &AppState,
    mut form: axum::extract::Multipart,
) -> Result<SendInput, ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is larger than the largest file allowed",
            )
        } else {
            ApiError::bad("invalid_body", e.body_text())
        }
    };
    let mut fields: std::collections::HashMap<&'static str, String> = Default::default();
    let mut file: Option<(StoredFile, Option<String>, Option<String>)> = None;
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
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
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                w.write(&chunk).await?;
            }
            file = Some((w.finish().await?, part_mime, part_name));
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
        // Read chunk by chunk: a field is refused once past the limit, never held whole.
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            if bytes.len() + chunk.len() > MAX_TEXT {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "message_too_long",
                    format!("`{k}` is longer than {MAX_TEXT} bytes"),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| ApiError::bad("invalid_body", format!("`{k}` is not UTF-8")))?;
        fields.insert(k, text);
    }
    let to = to_of(fields.get("to").cloned().map(Value::String).as_ref())?;
    let caption = fields
        .get("message")
        .or_else(|| fields.get("text"))
        .or_else(|| fields.get("caption"))
        .cloned()
        .map(Value::String);
    let wait = wait_of(fields.get("wait").cloned().map(Value::String).as_ref())?;
    let Some((stored, part_mime, part_name)) = file else {
        let text = text_of(caption.as_ref(), false)?;
        return Ok(SendInput {
            to,
            text,
            wait,
            media: None,
        });
    };
    let text = text_of(caption.as_ref(), true)?;
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
        thumbnail: None,
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
            disposition(Some("a\"b\\c\r\nd.pdf")),
            "inline; filename=\"abcd.pdf\""
        );
        assert_eq!(disposition(None), "inline");
    }
}
