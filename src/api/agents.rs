//! Agents as a whole: removing one with all its data (`DELETE
//! /api/whatsapp/:subaccountId/:agentId`), for callers who may write on its subaccount.

use axum::Extension;
use axum::extract::Path;
use axum::extract::State;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde_json::json;

use super::extract::{allow, ids, respond};
use super::limits::Endpoint;
#[allow(unused_imports)] // used by the #[utoipa::path] declarations
use super::schema::{AgentPath, DeleteAgentData, Envelope, ErrorEnvelope};
use super::{AppState, Op};

/// The path's (subaccount, agent). An agent named like one of the subaccount's own listings
/// (`connections`, `activities`) reaches this handler through that listing's route, whose path
/// has the subaccount alone: the name is the path's last segment, a fixed word.
fn agent_path(
    path: Result<Path<Vec<String>>, PathRejection>,
    uri: &Uri,
) -> Result<[String; 2], super::ApiError> {
    match path {
        Ok(Path(parts)) if parts.len() == 1 => {
            let agent = uri.path().rsplit('/').next().unwrap_or_default().to_owned();
            ids::<2>(Ok(Path(vec![parts[0].clone(), agent])))
        }
        other => ids::<2>(other),
    }
}

#[utoipa::path(
    delete,
    path = "/api/whatsapp/{subaccountId}/{agentId}",
    tag = "whatsapp",
    summary = "Remove the agent and all its data",
    description = "Logs its running client out first (the phone forgets the device when WhatsApp can be told; best effort) and stops it, then deletes everything stored for it in one transaction: keys and sessions, credentials, messages and receipts, outbox (a request still waiting for one of its sends answers 410 `send_record_gone`), webhook and its events, groups, connection row and activities. It is then gone from every listing; connecting it again starts afresh with a new QR code.",
    params(AgentPath),
    responses(
        (status = 200, description = "Removed", body = Envelope<DeleteAgentData>),
        (status = 400, description = "Bad input", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this token (viewers, other subaccounts)", body = ErrorEnvelope),
        (status = 404, description = "`connection_not_found`: no such agent", body = ErrorEnvelope),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn delete_agent(
    Extension(op): Extension<Op>,
    State(st): State<AppState>,
    uri: Uri,
    path: Result<Path<Vec<String>>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let [sub, agent] = agent_path(path, &uri)?;
        let c = allow(&st, &headers, &sub, Endpoint::Remove, true)?;
        st.service.delete_agent(&sub, &agent).await?;
        tracing::info!(user = %c.sub, "agent removed on request");
        Ok((
            "WhatsApp agent removed with all its data",
            json!({ "subaccountId": sub, "agentId": agent }),
        ))
    }
    .await;
    respond(op, r)
}
