//! What every handler takes from a request, checked: the caller's claims and rights (with its
//! rate limit), the path's ids, a page of a list, a JSON object body; and how a handler's result
//! becomes an envelope. Every extractor's rejection becomes an `ApiError` (never axum's plain
//! text), so what a client sends wrong is always a 4xx with a code that says what. It knows no
//! handler and no schema.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::limits::Endpoint;
use super::{ApiError, AppState, Claims, MAX_BODY, Op};
use crate::binary::{Jid, Server};

/// Longest subaccount, agent or event id (and `Idempotency-Key`).
pub(super) const MAX_ID: usize = 128;
/// History page size bounds and default.
const MAX_LIMIT: u32 = 500;
const DEFAULT_LIMIT: u32 = 50;
/// Largest `skip`.
const MAX_SKIP: u32 = 10_000_000;

/// The caller's claims from the `Authorization` header.
pub(super) fn claims(state: &AppState, headers: &HeaderMap) -> Result<Claims, ApiError> {
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

/// The caller, allowed on `sub` for `endpoint` (writing when `write`), within its rate limit.
pub(super) fn allow(
    st: &AppState,
    headers: &HeaderMap,
    sub: &str,
    endpoint: Endpoint,
    write: bool,
) -> Result<Claims, ApiError> {
    let c = claims(st, headers)?;
    if !c.may_use(sub) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token may not use this subaccount",
        ));
    }
    if write && !c.may_write() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "viewers may only read",
        ));
    }
    st.limits.check(sub, endpoint).map_err(|after| ApiError {
        retry_after: Some(after),
        remedy: None,
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "more than {} requests a minute to this endpoint; retry in {after} s",
                endpoint.per_minute()
            ),
        )
    })?;
    Ok(c)
}

fn valid_id(s: &str) -> bool {
    (1..=MAX_ID).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@' | b':'))
}

/// The path's ids, checked.
pub(super) fn ids<const N: usize>(
    path: Result<Path<Vec<String>>, PathRejection>,
) -> Result<[String; N], ApiError> {
    let Path(parts) = path.map_err(|e| ApiError::bad("invalid_path", e.body_text()))?;
    let parts: [String; N] = parts
        .try_into()
        .map_err(|_| ApiError::bad("invalid_path", "unexpected path"))?;
    if let Some(bad) = parts.iter().find(|p| !valid_id(p)) {
        return Err(ApiError::bad(
            "invalid_path",
            format!(
                "{:?} is not an id (1–{MAX_ID} letters, digits, `_ - . @ :`)",
                bad.chars().take(40).collect::<String>()
            ),
        ));
    }
    Ok(parts)
}

/// `limit` (1..=500, default 50) and `skip` (≥ 0, default 0) from the query.
pub(super) fn page(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<(u32, u32), ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad("invalid_query", e.body_text()))?;
    let num = |k: &str, default: u32, min: u32, max: u32| -> Result<u32, ApiError> {
        match q.get(k) {
            None => Ok(default),
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::bad(
                        "invalid_query",
                        format!("`{k}` must be a whole number from {min} to {max}"),
                    )
                }),
        }
    };
    Ok((
        num("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)?,
        num("skip", 0, 0, MAX_SKIP)?,
    ))
}

/// The body as a JSON object.
pub(super) fn body_json(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {MAX_BODY} bytes"),
            )
        } else {
            ApiError::bad("invalid_body", e.body_text())
        }
    })?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("invalid_json", format!("the body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad(
            "invalid_json",
            "the body must be a JSON object",
        ));
    }
    Ok(v)
}

/// A handler's result as its envelope.
pub(super) fn respond(op: Op, r: Result<(&'static str, Value), ApiError>) -> Response {
    match r {
        Ok((message, data)) => op.ok(message, data),
        Err(e) => op.fail(&e),
    }
}

/// `to` as the guide takes it: international digits without `+` (→ `…@c.us`), or a JID
/// (`@c.us`, `@s.whatsapp.net`, `@lid`, `@g.us`).
pub(super) fn parse_to(to: &str) -> Result<Jid, ApiError> {
    let bad = |why: &str| ApiError::bad("invalid_to", format!("`to` {why}"));
    let digits = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    let (user, server) = match to.split_once('@') {
        None => (to, "c.us"),
        Some(x) => x,
    };
    let server = match server {
        "c.us" | "s.whatsapp.net" => Server::User,
        "lid" => Server::Lid,
        "g.us" => Server::Group,
        _ => {
            return Err(bad(
                "must be digits or a …@c.us, …@s.whatsapp.net, …@lid or …@g.us JID",
            ));
        }
    };
    let ok = match server {
        Server::User => digits(user, 7, 15) && !user.starts_with('0'),
        Server::Lid => digits(user, 1, 20),
        _ => {
            // Group ids: digits, or the old `creator-time` form.
            !user.is_empty()
                && user.len() <= 64
                && user.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        }
    };
    if !ok {
        return Err(bad(if server == Server::User {
            "must be an international number: 7–15 digits, no `+`, no leading 0"
        } else {
            "is not a valid JID"
        }));
    }
    Ok(Jid::new(user, server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_takes_digits_and_the_four_jid_kinds() {
        assert_eq!(
            parse_to("15551234567").unwrap(),
            Jid::new("15551234567", Server::User)
        );
        assert_eq!(
            parse_to("15551234567@c.us").unwrap(),
            Jid::new("15551234567", Server::User)
        );
        assert_eq!(
            parse_to("15551234567@s.whatsapp.net").unwrap(),
            Jid::new("15551234567", Server::User)
        );
        assert_eq!(parse_to("1234@lid").unwrap(), Jid::new("1234", Server::Lid));
        assert_eq!(
            parse_to("120363000000000001@g.us").unwrap(),
            Jid::new("120363000000000001", Server::Group)
        );
        for bad in [
            "",
            "+15551234567",
            "123",
            "0155512345",
            "1555123456789012",
            "abc",
            "1@x.com",
            "15551234567@c.us@c.us",
            "a@lid",
            "@g.us",
        ] {
            assert_eq!(parse_to(bad).unwrap_err().code, "invalid_to", "{bad}");
        }
    }
}
