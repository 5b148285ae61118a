//! The account's reach-out time-lock over WhatsApp's GraphQL channel (`w:mex`): WhatsApp may
//! bar an account from starting new chats for a while (its sends to strangers are then refused
//! with 463). The state is asked with `<iq xmlns="w:mex" type="get"><query query_id=…>` whose
//! `<result>` carries JSON, and pushed with `<notification type="mex"><update op_name=…>`
//! (Baileys 7 `Socket/mex.js` `executeWMexQuery`, `Socket/socket.js`
//! `fetchAccountReachoutTimelock`, `Socket/messages-recv.js` `handleMexNotification`; query id
//! and paths from its `Types/Mex.js`). Both ends use these: the client parses, the simulator
//! builds.
//!
//! New-chat message capping (2026) rides the same channel: a query for the account's quota
//! and a `MessageCappingInfoNotification` when it changes (Baileys `fetchNewChatMessageCap`,
//! `handleMessageCappingNotification`, `Types/State.ts` `NewChatMessageCapInfo`;
//! whatsapp-rust `features/mex.rs` `fetch_new_chat_message_capping_info`). A send past the
//! quota is refused with 475 (whatsapp-rust `wacore/src/protocol/nack.rs`
//! `NewChatMessagesCapped`). The references disagree on the query: Baileys sends query id
//! `24503548349331633` with input type `INDIVIDUAL_NEW_CHAT_MSG`; whatsapp-rust (WA Web's
//! `WAWebMexFetchNewChatMessageCappingInfoJobQuery`) doc id `27910975521856601` with
//! `INDIVIDUAL_NEW_CHAT_THREAD`. We send Baileys' form, as for the time-lock (same
//! `<query query_id>` shape); which one WhatsApp still answers is not established by any
//! source here. Only Baileys handles the notification (op name and path below); neither
//! says what the warning stages' thresholds are (an AB prop,
//! `new_chat_msg_capping_first_warning_threshold_percentage`, per whatsapp-rust).

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

/// The persisted query that reads the account's new-chat message capping (Baileys
/// `QueryIds.MESSAGE_CAPPING_INFO`).
pub const CAPPING_QUERY_ID: &str = "24503548349331633";
/// The capping surface asked about (Baileys; whatsapp-rust says `INDIVIDUAL_NEW_CHAT_THREAD`).
pub const CAPPING_TYPE: &str = "INDIVIDUAL_NEW_CHAT_MSG";
/// Where the capping query's answer sits under `data`.
const CAPPING_PATH: &str = "xwa2_message_capping_info";
/// The capping notification's `op_name` (Baileys `handleMexNotification`).
pub const CAPPING_UPDATE_OP: &str = "MessageCappingInfoNotification";
/// Where the capping notification's state sits under `data`.
const CAPPING_NOTIFY_PATH: &str = "xwa2_notify_new_chat_messages_capping_info_update";
/// Longest status word kept (WhatsApp's are short upper-case words).
const MAX_STATUS: usize = 64;

/// The account's new-chat message capping: how many new 1:1 chats it may start per cycle.
/// Every field is optional: WhatsApp omits what does not apply to an account's tier.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewChatCapping {
    /// New chats allowed per cycle.
    pub total_quota: Option<u64>,
    /// New chats started this cycle.
    pub used_quota: Option<u64>,
    /// Cycle start (unix seconds).
    pub cycle_start: Option<u64>,
    /// Cycle end (unix seconds): WhatsApp Web treats the cap as lifted once it passes
    /// (whatsapp-rust's note).
    pub cycle_end: Option<u64>,
    /// The server's clock when it said so (unix seconds).
    pub server_sent: Option<u64>,
    /// Warning stage: `NONE`, `FIRST_WARNING`, `SECOND_WARNING`, `CAPPED` (others kept).
    pub capping_status: Option<String>,
    /// One-time extension: `NOT_ELIGIBLE`, `ELIGIBLE`, `ACTIVE_IN_CURRENT_CYCLE`, `EXHAUSTED`.
    pub ote_status: Option<String>,
    /// Meta Verified: `NOT_ELIGIBLE`, `NOT_ACTIVE`, `ACTIVE`, `ACTIVE_UPGRADE_AVAILABLE`.
    pub mv_status: Option<String>,
}

impl NewChatCapping {
    /// New chats still available this cycle, when both quota fields are known.
    pub fn remaining(&self) -> Option<u64> {
        Some(self.total_quota?.saturating_sub(self.used_quota?))
    }

    /// Whether new chats are refused at `now`: the stage says `CAPPED` or the quota is used
    /// up, within a cycle that has not ended.
    pub fn capped(&self, now: u64) -> bool {
        let over = self.capping_status.as_deref() == Some("CAPPED") || self.remaining() == Some(0);
        over && self.cycle_end.is_none_or(|end| now < end)
    }
}

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

/// A scalar WhatsApp sends as a string or a number (whatsapp-rust: "the live payload sends
/// the quota and timestamp scalars as strings").
fn scalar(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn status(v: Option<&Value>) -> Option<String> {
    v?.as_str()
        .filter(|e| {
            !e.is_empty()
                && e.len() <= MAX_STATUS
                && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .map(str::to_owned)
}

fn capping_from_json(v: &Value) -> Option<NewChatCapping> {
    let o = v.as_object()?;
    Some(NewChatCapping {
        total_quota: scalar(o.get("total_quota")),
        used_quota: scalar(o.get("used_quota")),
        cycle_start: scalar(o.get("cycle_start_timestamp")),
        cycle_end: scalar(o.get("cycle_end_timestamp")),
        server_sent: scalar(o.get("server_sent_timestamp")),
        capping_status: status(o.get("capping_status")),
        ote_status: status(o.get("ote_status")),
        mv_status: status(o.get("mv_status")),
    })
}

fn capping_json(c: &NewChatCapping) -> Value {
    let mut o = serde_json::Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            o.insert(k.to_owned(), v);
        }
    };
    // As the live payload: quotas and times as strings.
    put("total_quota", c.total_quota.map(|n| n.to_string().into()));
    put("used_quota", c.used_quota.map(|n| n.to_string().into()));
    put(
        "cycle_start_timestamp",
        c.cycle_start.map(|n| n.to_string().into()),
    );
    put(
        "cycle_end_timestamp",
        c.cycle_end.map(|n| n.to_string().into()),
    );
    put(
        "server_sent_timestamp",
        c.server_sent.map(|n| n.to_string().into()),
    );
    put("capping_status", c.capping_status.clone().map(Value::from));
    put("ote_status", c.ote_status.clone().map(Value::from));
    put("mv_status", c.mv_status.clone().map(Value::from));
    Value::Object(o)
}

/// `<iq xmlns="w:mex" type="get"><query query_id=CAPPING_QUERY_ID>{"variables":{"input":
/// {"type":"INDIVIDUAL_NEW_CHAT_MSG"}}}` (Baileys `fetchNewChatMessageCap`).
pub fn capping_query() -> Node {
    Node::new("iq")
        .attr("xmlns", "w:mex")
        .attr("type", "get")
        .attr("to", "s.whatsapp.net")
        .children(vec![
            Node::new("query").attr("query_id", CAPPING_QUERY_ID).bytes(
                json!({ "variables": { "input": { "type": CAPPING_TYPE } } })
                    .to_string()
                    .into_bytes(),
            ),
        ])
}

/// The JSON data of a `w:mex` result, GraphQL errors refused.
fn result_data(iq: &Node) -> Result<Value, MexError> {
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
    Ok(v)
}

/// The capping in the answer to [`capping_query`] (a null or non-object answer is an error,
/// as whatsapp-rust has it: it cannot be told from a sparse one otherwise).
pub fn parse_capping_result(iq: &Node) -> Result<NewChatCapping, MexError> {
    let v = result_data(iq)?;
    capping_from_json(&v["data"][CAPPING_PATH]).ok_or(MexError::Shape)
}

/// The JSON of a `<notification type="mex">`'s `<update op_name=op>`; None for another
/// notification or update.
fn notification_data(node: &Node, op: &str) -> Option<Value> {
    if node.tag.as_ref() != "notification" || node.get_str("type").as_deref() != Some("mex") {
        return None;
    }
    let update = node.child("update")?;
    if update.get_str("op_name").as_deref() != Some(op) {
        return None;
    }
    serde_json::from_str(&content_text(update)?).ok()
}

/// The server's `w:mex` result `id` carrying `data` (server side).
fn mex_result(id: &str, data: Value) -> Node {
    let body = json!({ "data": data });
    Node::new("iq")
        .attr("id", id.to_owned())
        .attr("type", "result")
        .attr("from", "s.whatsapp.net")
        .children(vec![
            Node::new("result").bytes(body.to_string().into_bytes()),
        ])
}

/// The server's `<notification type="mex">` with one `<update op_name=op>` carrying `data`
/// (server side).
fn mex_notification(id: &str, t: u64, op: &str, data: Value) -> Node {
    let body = json!({ "data": data });
    Node::new("notification")
        .attr("id", id.to_owned())
        .attr("type", "mex")
        .attr("from", "s.whatsapp.net")
        .attr("t", t.to_string())
        .children(vec![
            Node::new("update")
                .attr("op_name", op.to_owned())
                .bytes(body.to_string().into_bytes()),
        ])
}

/// The capping a `<notification type="mex">` announces, if it is a capping update.
pub fn parse_capping_notification(node: &Node) -> Option<NewChatCapping> {
    let v = notification_data(node, CAPPING_UPDATE_OP)?;
    capping_from_json(&v["data"][CAPPING_NOTIFY_PATH])
}

/// The server's answer to [`capping_query`] `id`.
pub fn capping_result(id: &str, c: &NewChatCapping) -> Node {
    mex_result(id, json!({ CAPPING_PATH: capping_json(c) }))
}

/// The server's notification that the capping changed.
pub fn capping_notification(id: &str, t: u64, c: &NewChatCapping) -> Node {
    let data = json!({ CAPPING_NOTIFY_PATH: capping_json(c) });
    mex_notification(id, t, CAPPING_UPDATE_OP, data)
}

/// The state in the answer to [`timelock_query`].
pub fn parse_timelock_result(iq: &Node) -> Result<ReachoutTimelock, MexError> {
    let v = result_data(iq)?;
    from_json(&v["data"][TIMELOCK_PATH], None).ok_or(MexError::Shape)
}

/// The state a `<notification type="mex">` announces, if it is a time-lock update; an active
/// lock without an end lasts [`DEFAULT_LOCK_SECS`] from `now_unix`.
pub fn parse_timelock_notification(node: &Node, now_unix: u64) -> Option<ReachoutTimelock> {
    let v = notification_data(node, TIMELOCK_UPDATE_OP)?;
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
    mex_result(id, json!({ TIMELOCK_PATH: state_json(s) }))
}

/// The server's notification that the time-lock changed.
pub fn timelock_notification(id: &str, t: u64, s: &ReachoutTimelock) -> Node {
    let data = json!({ TIMELOCK_NOTIFY_PATH: state_json(s) });
    mex_notification(id, t, TIMELOCK_UPDATE_OP, data)
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
    fn capping_reads_string_and_number_scalars_and_round_trips() {
        // As whatsapp-rust's tests show the live payload: scalars as strings.
        let c = parse_capping_result(&result(
            r#"{"data":{"xwa2_message_capping_info":{"capping_status":"FIRST_WARNING","ote_status":"ELIGIBLE","mv_status":"NOT_ACTIVE","total_quota":"50","used_quota":"27","cycle_start_timestamp":"1770000000","cycle_end_timestamp":"1772592000","server_sent_timestamp":"1770500000"}}}"#,
        ))
        .unwrap();
        assert_eq!(c.total_quota, Some(50));
        assert_eq!(c.used_quota, Some(27));
        assert_eq!(c.remaining(), Some(23));
        assert_eq!(c.cycle_end, Some(1_772_592_000));
        assert_eq!(c.capping_status.as_deref(), Some("FIRST_WARNING"));
        assert!(!c.capped(1_770_500_000));
        let n = parse_capping_result(&result(
            r#"{"data":{"xwa2_message_capping_info":{"capping_status":"CAPPED","total_quota":50,"used_quota":50,"cycle_end_timestamp":1772592000}}}"#,
        ))
        .unwrap();
        assert!(n.capped(1_770_500_000));
        assert!(!n.capped(1_772_592_000), "the cycle ended");
        assert_eq!(n.ote_status, None);
        for bad in [
            r#"{"data":{}}"#,
            r#"{"data":{"xwa2_message_capping_info":null}}"#,
            r#"{"data":{"xwa2_message_capping_info":7}}"#,
        ] {
            assert!(parse_capping_result(&result(bad)).is_err(), "{bad}");
        }
        // Round trips through the simulator's builders.
        assert_eq!(
            parse_capping_result(&capping_result("i", &c)),
            Ok(c.clone())
        );
        assert_eq!(
            parse_capping_notification(&capping_notification("n", 1, &c)),
            Some(c)
        );
        assert_eq!(
            query_id(&capping_query()).as_deref(),
            Some(CAPPING_QUERY_ID)
        );
        // A time-lock notification is not a capping one, nor the reverse.
        let lock = ReachoutTimelock {
            active: false,
            ends_at: None,
            enforcement: DEFAULT_ENFORCEMENT.into(),
        };
        assert_eq!(
            parse_capping_notification(&timelock_notification("n", 1, &lock)),
            None
        );
        assert_eq!(
            parse_timelock_notification(&capping_notification("n", 1, &n), 1),
            None
        );
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
