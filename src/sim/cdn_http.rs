//! The media CDN over HTTPS (hyper HTTP/1.1 on tokio-rustls, certificates from the simulator's
//! CA): `POST /mms/<mms-type>/<token>?auth=…&token=…` stores an upload, streamed to disk while
//! it is hashed (never whole in memory), and `GET`/`HEAD <direct_path>` serves a blob, whole or
//! one byte range. Answers follow CLIENT-FEATURES.md §2.3 and §2.5; where no reference records
//! the real CDN's answer, the choice is said where it is made.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::cdn::{Cdn, Refusal, mms_type, token_hash};

/// Connections served at once; more wait for a slot (within the TLS handshake's time).
pub const MAX_CDN_CONNECTIONS: usize = 256;

/// How long a client may take over its TLS handshake, and over a request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Body bytes read and dropped before an early refusal is answered, so a client still sending
/// a small body reads the answer rather than a reset connection; a larger body is cut off.
const DRAIN_LIMIT: usize = 1 << 20;

/// Bytes read from disk per chunk of a download.
const READ_CHUNK: usize = 64 * 1024;

/// Accepts TLS connections on `listener` and serves the CDN on each, while the CDN exists.
pub(super) async fn serve(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    cdn: Weak<Cdn>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CDN_CONNECTIONS));
    while let Ok((tcp, _)) = listener.accept().await {
        let Some(cdn) = cdn.upgrade() else { break };
        let (slots, acceptor) = (slots.clone(), acceptor.clone());
        tokio::spawn(async move {
            let ready = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                let permit = slots.acquire_owned().await.ok()?;
                let tls = acceptor.accept(tcp).await.ok()?;
                Some((permit, tls))
            });
            let Ok(Some((_permit, tls))) = ready.await else {
                return;
            };
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let service = TowerToHyperService::new(router(cdn));
            if let Err(e) = http.serve_connection(TokioIo::new(tls), service).await {
                tracing::debug!(error = %e, "CDN connection ended");
            }
        });
    }
}

/// The CDN's routes.
fn router(cdn: Arc<Cdn>) -> Router {
    Router::new()
        .route("/mms/{kind}/{token}", post(upload))
        // `get` answers HEAD too, without the body.
        .route("/v/{*blob}", get(download))
        .with_state(cdn)
}

fn answer(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

/// Reads and drops up to [`DRAIN_LIMIT`] bytes of `body`.
async fn drain(body: Body) {
    let mut s = body.into_data_stream();
    let mut seen = 0;
    while seen < DRAIN_LIMIT {
        match s.next().await {
            Some(Ok(chunk)) => seen += chunk.len(),
            _ => break,
        }
    }
}

/// Removes an upload's part file unless it was kept.
struct Part(Option<std::path::PathBuf>);

impl Drop for Part {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `POST /mms/<mms-type>/<token>?auth=<auth>&token=<token>` (whatsmeow `rawUpload`, Baileys
/// `getWAUploadToServer`, whatsapp-rust `build_upload_request` all send the token in both
/// places; both are required and must agree). Status codes: 401 for a refuse fault or a
/// missing, unknown or expired auth (whatsapp-rust refreshes `media_conn` on 401/403 and
/// retries); 400 for an unknown mms-type, a token that is no base64url SHA-256, tokens that
/// disagree, an empty body, or a body whose SHA-256 is not the token (chosen: no reference
/// records the real answer, and 400 tells a client not to retry the same bytes); 413 past
/// the size limit. 200 answers WhatsApp's JSON `{url, direct_path, handle, object_id}`.
async fn upload(
    State(cdn): State<Arc<Cdn>>,
    Path((kind, token)): Path<(String, String)>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let param = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if cdn.take_refusal() {
        drain(body).await;
        return answer(StatusCode::UNAUTHORIZED, "auth refused");
    }
    if param("auth").and_then(|a| cdn.authorized(a)).is_none() {
        drain(body).await;
        return answer(StatusCode::UNAUTHORIZED, "missing, unknown or expired auth");
    }
    let checked = (|| {
        let kind = mms_type(&kind).ok_or("unknown mms-type")?;
        let want = token_hash(&token).ok_or("the token is not a base64url SHA-256")?;
        if param("token").and_then(token_hash) != Some(want) {
            return Err("the query token is missing or differs from the path's");
        }
        Ok((kind, want))
    })();
    let (kind, want) = match checked {
        Ok(c) => c,
        Err(error) => {
            drain(body).await;
            return answer(StatusCode::BAD_REQUEST, error);
        }
    };
    let max = cdn.config().max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return answer(StatusCode::PAYLOAD_TOO_LARGE, "media larger than the limit");
    }
    let path = cdn.part_path();
    let mut part = Part(Some(path.clone()));
    let Ok(mut file) = tokio::fs::File::create(&path).await else {
        return answer(StatusCode::INTERNAL_SERVER_ERROR, "cannot store media");
    };
    let (mut hash, mut size) = (Sha256::new(), 0u64);
    let transfer = cdn.transfer("upload");
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let Ok(chunk) = chunk else {
            return answer(StatusCode::BAD_REQUEST, "the body ended early");
        };
        tokio::time::sleep(transfer.moved(chunk.len())).await;
        size += chunk.len() as u64;
        if size > max {
            return answer(StatusCode::PAYLOAD_TOO_LARGE, "media larger than the limit");
        }
        hash.update(&chunk);
        if file.write_all(&chunk).await.is_err() {
            return answer(StatusCode::INTERNAL_SERVER_ERROR, "cannot store media");
        }
    }
    if file.flush().await.is_err() {
        return answer(StatusCode::INTERNAL_SERVER_ERROR, "cannot store media");
    }
    drop(file);
    drop(transfer);
    if size == 0 {
        return answer(StatusCode::BAD_REQUEST, "empty media");
    }
    let got: [u8; 32] = hash.finalize().into();
    if got != want {
        return answer(
            StatusCode::BAD_REQUEST,
            "the body's SHA-256 is not the token",
        );
    }
    match cdn.commit(&path, kind, got, size) {
        Ok(up) => {
            part.0 = None;
            Json(json!({
                "url": up.url,
                "direct_path": up.direct_path,
                // Only newsletter uploads get a handle (whatsmeow `UploadNewsletter`).
                "handle": null,
                "object_id": up.object_id,
            }))
            .into_response()
        }
        Err(_) => answer(StatusCode::INTERNAL_SERVER_ERROR, "cannot store media"),
    }
}

/// `GET <direct_path>[&…]`: the blob with `Content-Length`, or the one byte range asked
/// (`206`, as Baileys' ranged downloads ask for `bytes=<start>-[<end>]`). No auth is required,
/// as WA Web sends none (CLIENT-FEATURES.md §0). 403 for a signature that does not match,
/// 410 past the link's `oe`, 404 for an unknown or expired blob: whatsmeow stops and asks for
/// media retry on each (`DownloadMediaWithPath`), and 410 tells the test which it was.
async fn download(State(cdn): State<Arc<Cdn>>, uri: Uri, headers: HeaderMap) -> Response {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let (file, size) = match cdn.open(target) {
        Ok(f) => f,
        Err(r) => {
            let status = match r {
                Refusal::NotFound => StatusCode::NOT_FOUND,
                Refusal::BadSignature => StatusCode::FORBIDDEN,
                Refusal::LinkExpired => StatusCode::GONE,
            };
            return answer(status, &r.to_string());
        }
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| byte_range(r, size));
    let (status, start, len) = match range {
        None => (StatusCode::OK, 0, size),
        Some(Err(())) => {
            let mut r = answer(StatusCode::RANGE_NOT_SATISFIABLE, "range outside the media");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
        Some(Ok((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
    };
    let mut file = tokio::fs::File::from_std(file);
    if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return answer(StatusCode::INTERNAL_SERVER_ERROR, "cannot read media");
    }
    // Counted from the first byte read until the body is dropped (sent, or the client left).
    let transfer = cdn.transfer("download");
    let chunks =
        futures_util::stream::unfold((file.take(len), transfer), |(mut f, t)| async move {
            let mut buf = vec![0; READ_CHUNK];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    tokio::time::sleep(t.moved(n)).await;
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), (f, t)))
                }
                Err(e) => Some((Err(e), (f, t))),
            }
        });
    let mut r = Response::new(Body::from_stream(chunks));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    r
}

/// The inclusive byte range one `Range: bytes=…` header asks of `size` bytes: None to serve
/// the whole (not a single range this understands: RFC 9110 §14.2 lets a server ignore it),
/// `Err` when it lies outside.
fn byte_range(header: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // The last n bytes.
        let n: u64 = b.parse().ok()?;
        (n > 0 && size > 0).then(|| (size.saturating_sub(n), size - 1))
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            let end: u64 = b.parse().ok()?;
            if end < start {
                return None;
            }
            end.min(size.saturating_sub(1))
        };
        (start < size).then_some((start, end))
    };
    Some(range.ok_or(()))
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn byte_ranges_are_read_as_rfc_9110_says() {
        assert_eq!(byte_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(byte_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(byte_range("bytes=90-500", 100), Some(Ok((90, 99))));
        assert_eq!(byte_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(byte_range("bytes=-500", 100), Some(Ok((0, 99))));
        assert_eq!(byte_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(byte_range("bytes=0-1,5-6", 100), None);
        assert_eq!(byte_range("bytes=9-1", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
        assert_eq!(byte_range("bytes=x-1", 100), None);
    }
}
