//! The simulator's control API (axum), for scripts and tests that drive simulated phones:
//! `POST /phones/{number}/scan` and `POST /faults`. Errors come back as `{"error": "…"}` with a
//! 4xx status; bad bodies never reach the simulator.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::server::{Fault, SimError, Simulator};

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
        .route("/faults", post(fault))
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
        other => {
            return bad(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown fault {other:?} (drop, stop_pings, resume_pings, stream_error, unlink)"
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
