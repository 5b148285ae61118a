//! The REST API of the guide (`../shared/seed/whatsapp-integration-guide.md`): its six endpoints
//! with their paths, bodies and envelopes (`success`, `message`, `data`, `meta.operationId`,
//! `meta.duration`), plus activities and health. JWT auth, per-subaccount rate limits and input
//! validation happen here; every rejection is a 4xx envelope with a stable `error.code`. It
//! knows the service, never the client or the store directly.

pub mod auth;
mod limits;
pub mod openapi;
mod routes;
mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub use auth::{AuthKey, Claims, Role, Verifier};
pub use limits::Limits;

use crate::service::Service;

/// Largest request body accepted (a text is at most 64 KiB; JSON escaping may double it).
pub const MAX_BODY: usize = 256 * 1024;

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
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The router.
pub fn router(state: AppState) -> axum::Router {
    routes::router(state)
}

impl AppState {
    /// The state of a service over `service`, checking tokens with `key`.
    pub fn new(
        service: Arc<Service>,
        key: &AuthKey,
        unlimited: Vec<String>,
    ) -> Result<AppState, auth::AuthError> {
        Ok(AppState {
            service,
            verifier: Arc::new(Verifier::new(key)?),
            limits: Arc::new(Limits::new(unlimited)),
            ready: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }
}

/// Serves the API on `listener` until `shutdown` resolves: stored connections are resumed
/// first (then `/readyz` says ready); at shutdown no new request is taken, the ones in flight
/// finish, and every client stops cleanly (what it was handling is stored).
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
    let app = router(state);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
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

    /// `{success: false, message, error: {code}, meta}` with `status`.
    pub fn fail(&self, e: &ApiError) -> Response {
        let mut r = (
            e.status,
            Json(json!({
                "success": false,
                "message": e.message,
                "error": { "code": e.code },
                "meta": self.meta(),
            })),
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
}

impl ApiError {
    /// A refusal with `status` and `code`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 with `code`.
    pub fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(e: crate::service::ServiceError) -> ApiError {
        use crate::client::SendError;
        use crate::service::ServiceError as S;
        match &e {
            S::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "connection_not_found", e.to_string())
            }
            S::NoWebhook => {
                ApiError::new(StatusCode::NOT_FOUND, "webhook_not_found", e.to_string())
            }
            S::NoEvent => ApiError::new(StatusCode::NOT_FOUND, "event_not_found", e.to_string()),
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
            S::Send(SendError::NotOnWhatsApp(_)) => ApiError::bad("not_on_whatsapp", e.to_string()),
            S::Send(SendError::InvalidText(_)) => ApiError::bad("invalid_message", e.to_string()),
            S::Send(SendError::UnsupportedRecipient(_)) => {
                ApiError::bad("invalid_to", e.to_string())
            }
            S::Send(SendError::NotInGroup(_)) => {
                ApiError::new(StatusCode::FORBIDDEN, "not_in_group", e.to_string())
            }
            S::Send(SendError::NotConnected) => {
                ApiError::new(StatusCode::CONFLICT, "not_connected", e.to_string())
            }
            S::Send(SendError::Refused { code, .. }) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                match code {
                    463 => "privacy_token_required",
                    421 => "stale_group",
                    _ => "refused_by_whatsapp",
                },
                e.to_string(),
            ),
            S::Send(SendError::Iq(_)) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "whatsapp_unreachable",
                e.to_string(),
            ),
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

/// The caller's claims from the `Authorization` header.
fn claims(state: &AppState, headers: &HeaderMap) -> Result<Claims, ApiError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing bearer token",
            )
        })?;
    state
        .verifier
        .verify(token)
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()))
}
