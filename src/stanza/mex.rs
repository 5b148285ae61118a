//! The account's reach-out time-lock over WhatsApp's GraphQL channel (`w:mex`): WhatsApp may
//! bar an account from starting new chats for a while (its sends to strangers are then refused
//! with 463). The state is asked with `<iq xmlns="w:mex" type="get"><query query_id=…>` whose
//! `<result>` carries JSON, and pushed with `<notification type="mex"><update op_name=…>`
//! (Baileys 7 `Socket/mex.js` `executeWMexQuery`, `Socket/socket.js`
//! `fetchAccountReachoutTimelock`, `Socket/messages-recv.js` `handleMexNotification`; query id
//! and paths from its `Types/Mex.js`). Both ends use these: the client parses, the simulator
//! builds.

use serde_json::{Value, json};

use crate::binary::{Content, Node};

/// The persisted query that reads the account's reach-out time-lock.
pub const TIMELOCK_QUERY_ID: &str = "23983697327930364";
/// Where the query's answer sits under `data`.
const TIMELOCK_PATH: &str = "xwa2_fetch_account_reachout_timelock";
/// The notification's `op_name`.
pub const TIMELOCK_UPDATE_OP: &str = "NotificationUserReachoutTimelockUpdate";
/// Where the notification's state sits under `data`.
const TIMELOCK_NOTIFY_PATH: &str = "xwa2_notify_account_reachout_timelock";
/// The enforcement named when WhatsApp names none.
pub const DEFAULT_ENFORCEMENT: &str = "DEFAULT";
/// Longest enforcement name kept (WhatsApp's are short upper-case words).
const MAX_ENFORCEMENT: usize = 64;
/// When a notification says active with no end, WA Web assumes a minute from now (Baileys'
/// comment in `handleReachoutTimelockNotification`).
pub const DEFAULT_LOCK_SECS: u64 = 60;

/// The account's reach-out time-lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReachoutTimelock {
    /// New chats are barred now.
    pub active: bool,
    /// Until when (unix seconds), when WhatsApp says.
    pub ends_at: Option<u64>,
    /// Why (e.g. `DEFAULT`, `BIZ_COMMERCE_VIOLATION_…`).
    pub enforcement: String,
}

/// Why a `w:mex` answer was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MexError {
    /// No `<result>` with JSON in it.
    #[error("no JSON result")]
    NoResult,
    /// WhatsApp answered GraphQL errors.
    #[error("WhatsApp answered an error: {0}")]
    Graphql(String),
    /// The JSON lacks the expected data.
    #[error("unexpected answer shape")]
    Shape,
}

/// The node's content as text (JSON comes as binary data, or as a string).
fn content_text(node: &Node) -> Option<String> {
    match &node.content {
        Content::Bytes(b) => String::from_utf8(b.to_vec()).ok(),
        Content::Text(v) => Some(v.as_str().into_owned()),
        _ => None,
    }
}

/// `<iq xmlns="w:mex" type="get" to="s.whatsapp.net"><query query_id>{"variables":{}}</query>`
/// (the iq id is filled in by the sender).
pub fn timelock_query() -> Node {
    Node::new("iq")
        .attr("xmlns", "w:mex")
        .attr("type", "get")
        .attr("to", "s.whatsapp.net")
        .children(vec![
            Node::new("query")
                .attr("query_id", TIMELOCK_QUERY_ID)
                .bytes(json!({ "variables": {} }).to_string().into_bytes()),
        ])
}

/// The query id of a `w:mex` query iq, if that is what `iq` is.
pub fn query_id(iq: &Node) -> Option<String> {
    (iq.get_str("xmlns").as_deref() == Some("w:mex"))
        .then(|| {
            iq.child("query")?
                .get_str("query_id")
                .map(|s| s.into_owned())
        })
        .flatten()
}

/// A state from the JSON object WhatsApp sends (`is_active`, `time_enforcement_ends` as a
/// string of unix seconds, `"0"` or absent for none, `enforcement_type`).
fn from_json(v: &Value, default_end: Option<u64>) -> Option<ReachoutTimelock> {
    let obj = v.as_object()?;
    let active = obj
        .get("is_active")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let ends_at = match obj.get("time_enforcement_ends") {
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    }
    .filter(|t| *t > 0);
    let enforcement = obj
        .get("enforcement_type")
        .and_then(Value::as_str)
        .filter(|e| {
            !e.is_empty()
                && e.len() <= MAX_ENFORCEMENT
                && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .unwrap_or(DEFAULT_ENFORCEMENT)
        .to_owned();
    Some(ReachoutTimelock {
        active,
        ends_at: if active {
            ends_at.or(default_end)
        } else {
            None
        },
        enforcement,
    })
}

/// The state in the answer to [`timelock_query`].
pub fn parse_timelock_result(iq: &Node) -> Result<ReachoutTimelock, MexError> {
    let text = iq
        .child("result")
        .and_then(content_text)
        .ok_or(MexError::NoResult)?;
    let v: Value = serde_json::from_str(&text).map_err(|_| MexError::Shape)?;
    if let Some(errors) = v.get("errors").and_then(Value::as_array)
        && !errors.is_empty()
    {
        let msg = errors
            .iter()
            .filter_map(|e| e.get("message").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(MexError::Graphql(msg.chars().take(200).collect()));
    }
    from_json(&v["data"][TIMELOCK_PATH], None).ok_or(MexError::Shape)
}

/// The state a `<notification type="mex">` announces, if it is a time-lock update; an active
/// lock without an end lasts [`DEFAULT_LOCK_SECS`] from `now_unix`.
pub fn parse_timelock_notification(node: &Node, now_unix: u64) -> Option<ReachoutTimelock> {
    if node.tag.as_ref() != "notification" || node.get_str("type").as_deref() != Some("mex") {
        return None;
    }
    let update = node.child("update")?;
    if update.get_str("op_name").as_deref() != Some(TIMELOCK_UPDATE_OP) {
        return None;
    }
    let v: Value = serde_json::from_str(&content_text(update)?).ok()?;
    from_json(
        &v["data"][TIMELOCK_NOTIFY_PATH],
        Some(now_unix.saturating_add(DEFAULT_LOCK_SECS)),
    )
}

fn state_json(s: &ReachoutTimelock) -> Value {
    json!({
        "is_active": s.active,
        "time_enforcement_ends": s.ends_at.unwrap_or(0).to_string(),
        "enforcement_type": s.enforcement,
    })
}

/// The server's answer to [`timelock_query`] `id`.
pub fn timelock_result(id: &str, s: &ReachoutTimelock) -> Node {
    let body = json!({ "data": { TIMELOCK_PATH: state_json(s) } });
    Node::new("iq")
        .attr("id", id.to_owned())
        .attr("type", "result")
        .attr("from", "s.whatsapp.net")
        .children(vec![
            Node::new("result").bytes(body.to_string().into_bytes()),
        ])
}

/// The server's notification that the time-lock changed.
pub fn timelock_notification(id: &str, t: u64, s: &ReachoutTimelock) -> Node {
    let body = json!({ "data": { TIMELOCK_NOTIFY_PATH: state_json(s) } });
    Node::new("notification")
        .attr("id", id.to_owned())
        .attr("type", "mex")
        .attr("from", "s.whatsapp.net")
        .attr("t", t.to_string())
        .children(vec![
            Node::new("update")
                .attr("op_name", TIMELOCK_UPDATE_OP)
                .bytes(body.to_string().into_bytes()),
        ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(json: &str) -> Node {
        Node::new("iq")
            .attr("type", "result")
            .children(vec![Node::new("result").bytes(json.as_bytes().to_vec())])
    }

    #[test]
    fn answers_in_the_shapes_baileys_reads() {
        // As Baileys' fetchAccountReachoutTimelock reads them: is_active, a string of seconds
        // ("0" for none), enforcement_type (DEFAULT when absent).
        let s = parse_timelock_result(&result(
            r#"{"data":{"xwa2_fetch_account_reachout_timelock":{"is_active":true,"time_enforcement_ends":"1798000000","enforcement_type":"BIZ_COMMERCE_VIOLATION_ALCOHOL"}}}"#,
        ))
        .unwrap();
        assert_eq!(
            s,
            ReachoutTimelock {
                active: true,
                ends_at: Some(1_798_000_000),
                enforcement: "BIZ_COMMERCE_VIOLATION_ALCOHOL".into()
            }
        );
        let off = parse_timelock_result(&result(
            r#"{"data":{"xwa2_fetch_account_reachout_timelock":{"is_active":false,"time_enforcement_ends":"0"}}}"#,
        ))
        .unwrap();
        assert_eq!((off.active, off.ends_at), (false, None));
        assert_eq!(off.enforcement, DEFAULT_ENFORCEMENT);
        assert!(matches!(
            parse_timelock_result(&result(r#"{"errors":[{"message":"nope"}]}"#)),
            Err(MexError::Graphql(m)) if m == "nope"
        ));
        for bad in ["", "{", "[]", r#"{"data":{}}"#, r#"{"data":{"other":{}}}"#] {
            assert!(parse_timelock_result(&result(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_timelock_result(&Node::new("iq")),
            Err(MexError::NoResult)
        );
        // An odd enforcement name is not kept as it is.
        let odd = parse_timelock_result(&result(
            r#"{"data":{"xwa2_fetch_account_reachout_timelock":{"is_active":true,"enforcement_type":"<script>"}}}"#,
        ))
        .unwrap();
        assert_eq!(odd.enforcement, DEFAULT_ENFORCEMENT);
    }

    #[test]
    fn notifications_round_trip_and_an_endless_lock_lasts_a_minute() {
        let s = ReachoutTimelock {
            active: true,
            ends_at: Some(1_800_000_000),
            enforcement: DEFAULT_ENFORCEMENT.into(),
        };
        let n = timelock_notification("n1", 1_700_000_000, &s);
        assert_eq!(parse_timelock_notification(&n, 5), Some(s.clone()));
        let q = timelock_query();
        assert_eq!(query_id(&q).as_deref(), Some(TIMELOCK_QUERY_ID));
        assert_eq!(parse_timelock_result(&timelock_result("x", &s)), Ok(s));
        let endless = Node::new("notification").attr("type", "mex").children(vec![
            Node::new("update")
                .attr("op_name", TIMELOCK_UPDATE_OP)
                .bytes(
                    br#"{"data":{"xwa2_notify_account_reachout_timelock":{"is_active":true}}}"#
                        .to_vec(),
                ),
        ]);
        assert_eq!(
            parse_timelock_notification(&endless, 1000).unwrap().ends_at,
            Some(1000 + DEFAULT_LOCK_SECS)
        );
        let other = Node::new("notification").attr("type", "mex").children(vec![
            Node::new("update").attr("op_name", "NotificationNewsletterJoin"),
        ]);
        assert_eq!(parse_timelock_notification(&other, 0), None);
    }
}
