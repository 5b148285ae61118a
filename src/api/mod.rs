//! The REST API of the guide (`../shared/seed/whatsapp-integration-guide.md`): its six endpoints
//! with their paths, bodies and envelopes (`success`, `message`, `data`, `meta.operationId`,
//! `meta.duration`), plus activities, removing an agent with its data, and health. JWT auth,
//! per-subaccount rate limits and input validation happen here; every rejection is a 4xx
//! envelope with a stable `error.code`. It knows the service, never the client or the store
//! directly.

mod agents;
pub mod auth;
mod chats;
mod extract;
mod limits;
mod media;
pub mod openapi;
mod routes;
mod schema;
mod server;
mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};
use tracing::Instrument;

pub use auth::{AuthKey, Claims, Role, TokenRules, Verifier};
pub use limits::Limits;
pub use server::HttpLimits;

use crate::service::Service;

/// Largest request body accepted (a text is at most 64 KiB; JSON escaping may double it).
pub const MAX_BODY: usize = 256 * 1024;

/// Largest multipart send body: the largest document WhatsApp takes (2 GiB) and its form.
pub const MAX_MEDIA_BODY: usize = 2048 * 1024 * 1024 + 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The service.
    pub service: Arc<Service>,
    /// Verifies bearer tokens.
    pub verifier: Arc<Verifier>,
    /// Rate limits per subaccount and endpoint.
    pub limits: Arc<Limits>,
    /// Set once stored connections were resumed (`/readyz`).
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    /// The HTTP server's timeouts and connection cap.
    pub http: HttpLimits,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The router: every endpoint, each request under its operation (see [`operation`]).
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route(
            "/api/openapi.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    openapi::served(),
                )
            }),
        )
        .route("/api/whatsapp/{sub}/{agent}/connect", post(routes::connect))
        .route("/api/whatsapp/{sub}/{agent}/status", get(routes::status))
        .route("/api/whatsapp/{sub}/{agent}/limits", get(routes::limits))
        .route(
            "/api/whatsapp/{sub}/{agent}/send",
            // A file streams into the media store under its kind's cap; the JSON body has its
            // own smaller limit (media::MAX_JSON_SEND).
            post(routes::send).layer(DefaultBodyLimit::max(MAX_MEDIA_BODY)),
        )
        .route(
            "/api/whatsapp/{sub}/{agent}/messages",
            get(routes::messages),
        )
        .route("/api/whatsapp/{sub}/{agent}/chats", get(chats::chats))
        .route(
            "/api/whatsapp/{sub}/{agent}/chats/{chat}/messages",
            get(chats::chat_messages),
        )
        .route(
            "/api/whatsapp/{sub}/{agent}/chats/{chat}/history",
            post(chats::request_history),
        )
        .route(
            "/api/whatsapp/{sub}/{agent}/chats/{chat}/{action}",
            post(chats::act_on_chat),
        )
        .route("/api/whatsapp/{sub}/{agent}/contacts", get(chats::contacts))
        .route(
            "/api/whatsapp/{sub}/{agent}/contacts/{contact}",
            get(chats::contact),
        )
        .route(
            "/api/whatsapp/{sub}/{agent}/messages/{id}/media",
            get(media::get_media),
        )
        // No JWT: the link's own signature and expiry are its authority.
        .route("/api/media/{token}", get(media::get_linked_media))
        .route(
            "/api/whatsapp/{sub}/{agent}/disconnect",
            post(routes::disconnect),
        )
        .route("/api/whatsapp/{sub}/{agent}", delete(agents::delete_agent))
        // An agent may be named like these listings: removing it comes through their routes.
        .route(
            "/api/whatsapp/{sub}/connections",
            get(routes::connections).delete(agents::delete_agent),
        )
        .route(
            "/api/whatsapp/{sub}/activities",
            get(routes::activities).delete(agents::delete_agent),
        )
        .route(
            "/api/whatsapp/{sub}/{agent}/webhook",
            get(webhooks::get_webhook)
                .put(webhooks::put_webhook)
                .delete(webhooks::delete_webhook),
        )
        .route(
            "/api/whatsapp/{sub}/{agent}/webhook/deliveries",
            get(webhooks::deliveries),
        )
        .route(
            "/api/whatsapp/{sub}/{agent}/webhook/deliveries/{id}/redeliver",
            post(webhooks::redeliver),
        )
        .fallback(|| async {
            Op::new().fail(&ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint",
            ))
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.http.request_timeout,
            operation,
        ))
        .with_state(state)
}

/// How long a request that moves a file may take: a large upload or an asked-for download
/// takes as long as the network needs (the connection cap and the header timeout still bound
/// what slow clients can hold).
pub const FILE_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether `req` moves a file: a multipart or large send, or a file asked for.
fn carries_file(req: &Request) -> bool {
    let path = req.uri().path();
    let header = |h: axum::http::HeaderName| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    match *req.method() {
        axum::http::Method::GET => path.ends_with("/media") || path.starts_with("/api/media/"),
        axum::http::Method::POST if path.ends_with("/send") => {
            header(axum::http::header::CONTENT_TYPE)
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
                || header(axum::http::header::CONTENT_LENGTH)
                    .parse::<u64>()
                    .is_ok_and(|n| n > 1 << 20)
        }
        _ => false,
    }
}

/// Gives each request its operation (the envelope's `meta`) and a span naming it, so every log
/// line of the request (and of the client calls it makes) carries the operationId. The path
/// is logged (a signed media link's without its token), never the query, headers or body
/// (tokens, texts). A request not answered within
/// `timeout` (its body included: a client that stops sending it holds nothing longer) gets a
/// 503 `request_timeout`; what it had recorded stays (a send goes out; its Idempotency-Key
/// finds it again).
async fn operation(
    axum::extract::State(timeout): axum::extract::State<std::time::Duration>,
    mut req: Request,
    next: Next,
) -> Response {
    let op = Op::new();
    let path = req.uri().path();
    // A signed media link's path is its credential: outside the agents' routes an API path is
    // logged to its first segment only (however the link was spelled or mangled).
    let shown = match path.strip_prefix("/api/") {
        Some(rest) if !rest.starts_with("whatsapp/") && rest != "openapi.json" => "/api/…",
        _ => path,
    };
    let span = tracing::info_span!(
        "request",
        operation_id = %op.id,
        method = %req.method(),
        path = %shown,
    );
    let timeout = if carries_file(&req) {
        timeout.max(FILE_REQUEST_TIMEOUT)
    } else {
        timeout
    };
    req.extensions_mut().insert(op.clone());
    async move {
        let r = match tokio::time::timeout(timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => op.fail(&ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request_timeout",
                format!(
                    "the request was not answered within {} s (a send it made stays queued; \
                     retry with the same Idempotency-Key to learn its outcome)",
                    timeout.as_secs()
                ),
            )),
        };
        tracing::info!(status = r.status().as_u16(), "answered");
        r
    }
    .instrument(span)
    .await
}

impl AppState {
    /// The state of a service over `service`, checking tokens with `key` (HS256; an RS256 key
    /// needs [`AppState::with_rules`]), with the default HTTP limits.
    pub fn new(
        service: Arc<Service>,
        key: &AuthKey,
        unlimited: Vec<String>,
    ) -> Result<AppState, auth::AuthError> {
        AppState::with_rules(service, key, &TokenRules::default(), unlimited)
    }

    /// Like [`AppState::new`], with tokens also held to `rules` (issuer, audience).
    pub fn with_rules(
        service: Arc<Service>,
        key: &AuthKey,
        rules: &TokenRules,
        unlimited: Vec<String>,
    ) -> Result<AppState, auth::AuthError> {
        Ok(AppState {
            service,
            verifier: Arc::new(Verifier::with_rules(key, rules)?),
            limits: Arc::new(Limits::new(unlimited)),
            ready: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            http: HttpLimits::default(),
        })
    }
}

/// Serves the API on `listener` until `shutdown` resolves, under `state.http`'s timeouts and
/// connection cap: stored connections are resumed first (then `/readyz` says ready); at
/// shutdown no new request is taken, the ones in flight finish, and every client stops cleanly
/// (what it was handling is stored).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = state.service.clone();
    match service.resume().await {
        Ok(n) => tracing::info!(resumed = n, "stored connections resumed"),
        Err(e) => tracing::error!(error = %e, "cannot resume stored connections"),
    }
    state
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    let limits = state.http.clone();
    let app = router(state);
    let served = server::run(listener, app, limits, shutdown).await;
    service.shutdown().await;
    served
}

/// One request's id and start, for its envelope's `meta`.
#[derive(Debug, Clone)]
pub struct Op {
    id: String,
    start: Instant,
}

impl Op {
    /// A new operation.
    pub fn new() -> Op {
        Op {
            id: crate::util::ids::uuid_v4(),
            start: Instant::now(),
        }
    }

    fn meta(&self) -> Value {
        json!({
            "operationId": self.id,
            "duration": format!("{}ms", self.start.elapsed().as_millis()),
        })
    }

    /// `{success: true, message, data, meta}`.
    pub fn ok(&self, message: &str, data: Value) -> Response {
        (
            StatusCode::OK,
            Json(json!({
                "success": true,
                "message": message,
                "data": data,
                "meta": self.meta(),
            })),
        )
            .into_response()
    }

    /// `{success: true, message, data, meta}` with `status` (e.g. 202 for work started).
    pub fn ok_with(&self, status: StatusCode, message: &str, data: Value) -> Response {
        let mut r = self.ok(message, data);
        *r.status_mut() = status;
        r
    }

    /// `{success: false, message, error: {code}, meta}` with `status`.
    pub fn fail(&self, e: &ApiError) -> Response {
        let mut r = (
            e.status,
            Json({
                let mut error = json!({ "code": e.code });
                if let Some((remedy, until)) = &e.remedy {
                    error["remedy"] = json!(remedy);
                    if let Some(u) = until {
                        error["until"] = json!(u);
                    }
                }
                json!({
                    "success": false,
                    "message": e.message,
                    "error": error,
                    "meta": self.meta(),
                })
            }),
        )
            .into_response();
        if let Some(after) = e.retry_after
            && let Ok(v) = HeaderValue::from_str(&after.to_string())
        {
            r.headers_mut().insert("retry-after", v);
        }
        r
    }
}

impl Default for Op {
    fn default() -> Op {
        Op::new()
    }
}

/// A refusal: HTTP status, stable code, human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// Stable, machine-readable (`unauthorized`, `forbidden`, `invalid_to`, …).
    pub code: &'static str,
    /// For humans.
    pub message: String,
    /// Seconds to wait (429).
    pub retry_after: Option<u64>,
    /// For a send WhatsApp refused: what would lift the refusal and until when (ISO 8601),
    /// as the failed message row and its webhook say them.
    pub remedy: Option<(String, Option<String>)>,
}

impl ApiError {
    /// A refusal with `status` and `code`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            remedy: None,
        }
    }

    /// A send's failure, with the status and code [`SendFailure`] gives it.
    pub fn from_failure(f: crate::service::SendFailure, message: impl Into<String>) -> ApiError {
        let status =
            StatusCode::from_u16(f.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, f.code(), message)
    }

    /// 400 with `code`.
    pub fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(e: crate::service::ServiceError) -> ApiError {
        use crate::service::SendFailure;
        use crate::service::ServiceError as S;
        match &e {
            S::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "connection_not_found", e.to_string())
            }
            S::AgentLimit(_) => {
                ApiError::new(StatusCode::CONFLICT, "agent_limit_reached", e.to_string())
            }
            S::NoWebhook => {
                ApiError::new(StatusCode::NOT_FOUND, "webhook_not_found", e.to_string())
            }
            S::NoEvent => ApiError::new(StatusCode::NOT_FOUND, "event_not_found", e.to_string()),
            S::WebhookUrlNotAllowed(_) => ApiError::bad("webhook_url_not_allowed", e.to_string()),
            S::IdempotencyKeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                e.to_string(),
            ),
            S::ReservedIdempotencyKey(_) => ApiError::bad("invalid_idempotency_key", e.to_string()),
            S::SendGone => ApiError::new(StatusCode::GONE, "send_record_gone", e.to_string()),
            S::NotConnected(_) => {
                ApiError::new(StatusCode::CONFLICT, "not_connected", e.to_string())
            }
            S::Unreachable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "whatsapp_unreachable",
                e.to_string(),
            ),
            S::Failed(code) => ApiError::new(
                StatusCode::CONFLICT,
                "connection_failed",
                format!("the connection ended: {code}"),
            ),
            S::MediaOff => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "media_unavailable",
                e.to_string(),
            ),
            S::MediaTooLarge(_) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "media_too_large",
                e.to_string(),
            ),
            S::MediaEmpty => ApiError::bad("media_empty", e.to_string()),
            S::MediaRejected(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "media_type_not_accepted",
                e.to_string(),
            ),
            S::MediaUrl(_) => ApiError::bad("media_url_not_allowed", e.to_string()),
            S::MediaLink => {
                ApiError::new(StatusCode::FORBIDDEN, "invalid_media_link", e.to_string())
            }
            S::MediaLinkExpired => {
                ApiError::new(StatusCode::GONE, "media_link_expired", e.to_string())
            }
            S::MediaNotAvailable(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "media_not_available", e.to_string())
            }
            S::MediaError(_) => ApiError::new(StatusCode::CONFLICT, "media_error", e.to_string()),
            S::BadRange => ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                e.to_string(),
            ),
            S::Send(crate::client::SendError::AppStateNotReady(_)) => {
                ApiError::new(StatusCode::CONFLICT, "app_state_not_ready", e.to_string())
            }
            S::Send(crate::client::SendError::AppStateRefused(_)) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "app_state_refused", e.to_string())
            }
            S::Send(send) if let Some(f) = SendFailure::of(send) => {
                ApiError::from_failure(f, e.to_string())
            }
            // Our side failed: no detail of it reaches the caller.
            _ => {
                tracing::error!(error = %e, "request failed on our side");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the service log",
                )
            }
        }
    }
}
