//! What the server's refusals mean for the run loop: `<failure reason>` at login and
//! `<stream:error>` at any time. Only the server's own logout is final with a wipe.

use super::events::ConnState;
use super::payload::ClientProfile;
use super::reconnect::Setback;
use super::run::Outcome;
use crate::binary::Node;

/// A `<failure reason>` at login (PROTOCOL.md §7.1).
pub(super) fn failure_outcome(node: &Node, profile: &ClientProfile) -> Outcome {
    let reason = node
        .get_str("reason")
        .map(|s| s.into_owned())
        .unwrap_or_default();
    match reason.as_str() {
        "405" => Outcome::Final(ConnState::ClientOutdated {
            message: format!(
                "WhatsApp refused WhatsApp Web version {} as outdated (405); set {} to the current \
                 version (e.g. from web.whatsapp.com) and restart",
                profile.version_string(),
                super::payload::WA_VERSION_ENV
            ),
        }),
        "401" | "403" | "406" => Outcome::Final(ConnState::LoggedOut {
            reason: format!("login refused ({reason})"),
        }),
        "429" => Outcome::Retry(Setback::RateLimited, "rate limited (429)".into()),
        "500" | "503" => Outcome::Retry(Setback::Transient, format!("server error ({reason})")),
        other => Outcome::Retry(Setback::Transient, format!("login failure {other}")),
    }
}

/// A `<stream:error>` or `<xmlstreamend>` ends the connection (PROTOCOL.md §7.2).
pub(super) fn stream_end(node: &Node) -> Option<Outcome> {
    match node.tag.as_ref() {
        "xmlstreamend" => Some(Outcome::Retry(
            Setback::Transient,
            "server closed the stream".into(),
        )),
        "stream:error" => {
            let code = node
                .get_str("code")
                .map(|s| s.into_owned())
                .unwrap_or_default();
            let conflict = node
                .child("conflict")
                .and_then(|c| c.get_str("type").map(|s| s.into_owned()));
            Some(match (code.as_str(), conflict.as_deref()) {
                ("515", _) => {
                    Outcome::Retry(Setback::RestartRequired, "restart required (515)".into())
                }
                (_, Some("device_removed")) | ("401", _) => Outcome::Final(ConnState::LoggedOut {
                    reason: "device removed from the phone".into(),
                }),
                // Another connection with our credentials took over: stop, but keep the link
                // (whatsmeow and Baileys do not log out here either).
                (_, Some("replaced")) => Outcome::Final(ConnState::Replaced),
                ("503", _) => Outcome::Retry(Setback::Transient, "server restarting (503)".into()),
                ("429", _) => Outcome::Retry(Setback::RateLimited, "rate limited (429)".into()),
                (c, _) => Outcome::Retry(Setback::Transient, format!("stream error {c}")),
            })
        }
        _ => None,
    }
}
