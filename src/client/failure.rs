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
            code: match reason.as_str() {
                "401" => "logged_out",
                "403" => "main_device_gone",
                _ => "unknown_logout",
            },
            reason: format!("login refused ({reason})"),
        }),
        "402" => Outcome::Final(ConnState::TempBanned {
            ban_code: node.get_str("code").and_then(|c| c.parse().ok()),
            expires_in: node
                .get_str("expire")
                .and_then(|e| e.parse().ok())
                .map(std::time::Duration::from_secs),
        }),
        "429" => Outcome::Retry(
            Setback::RateLimited,
            "rate_limited",
            "rate limited (429)".into(),
        ),
        "500" | "503" => Outcome::Retry(
            Setback::Transient,
            "server_unavailable",
            format!("server error ({reason})"),
        ),
        "409" => Outcome::Retry(
            Setback::Transient,
            "bad_user_agent",
            "login refused: bad user agent (409)".into(),
        ),
        "413" => Outcome::Retry(
            Setback::Transient,
            "cat_expired",
            "login refused: client token expired (413)".into(),
        ),
        "414" => Outcome::Retry(
            Setback::Transient,
            "cat_invalid",
            "login refused: client token invalid (414)".into(),
        ),
        other => Outcome::Retry(
            Setback::Transient,
            "login_failed",
            format!("login failure {other}"),
        ),
    }
}

/// A `<stream:error>` or `<xmlstreamend>` ends the connection (PROTOCOL.md §7.2).
pub(super) fn stream_end(node: &Node) -> Option<Outcome> {
    match node.tag.as_ref() {
        "xmlstreamend" => Some(Outcome::Retry(
            Setback::Transient,
            "stream_end",
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
                ("515", _) => Outcome::Retry(
                    Setback::RestartRequired,
                    "restart_required",
                    "restart required (515)".into(),
                ),
                (_, Some("device_removed")) | ("401", _) => Outcome::Final(ConnState::LoggedOut {
                    code: "logged_out",
                    reason: "device removed from the phone".into(),
                }),
                // Another connection with our credentials took over: stop, but keep the link
                // (whatsmeow and Baileys do not log out here either).
                (_, Some("replaced")) => Outcome::Final(ConnState::Replaced),
                ("503", _) => Outcome::Retry(
                    Setback::Transient,
                    "server_unavailable",
                    "server restarting (503)".into(),
                ),
                ("429", _) => Outcome::Retry(
                    Setback::RateLimited,
                    "rate_limited",
                    "rate limited (429)".into(),
                ),
                (c, _) => Outcome::Retry(
                    Setback::Transient,
                    "stream_error",
                    format!("stream error {c}"),
                ),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login_failure(attrs: &[(&'static str, &'static str)]) -> Outcome {
        let mut n = Node::new("failure");
        for (k, v) in attrs {
            n = n.attr(*k, *v);
        }
        failure_outcome(&n, &ClientProfile::default())
    }

    fn code(o: &Outcome) -> Option<&'static str> {
        match o {
            Outcome::Retry(_, code, _) => Some(code),
            Outcome::Final(s) => s.code(),
        }
    }

    #[test]
    fn every_refusal_has_a_stable_code() {
        for (reason, want) in [
            ("401", "logged_out"),
            ("403", "main_device_gone"),
            ("406", "unknown_logout"),
            ("405", "client_outdated"),
            ("409", "bad_user_agent"),
            ("413", "cat_expired"),
            ("414", "cat_invalid"),
            ("429", "rate_limited"),
            ("503", "server_unavailable"),
            ("418", "login_failed"),
        ] {
            assert_eq!(
                code(&login_failure(&[("reason", reason)])),
                Some(want),
                "{reason}"
            );
        }
        let ban = login_failure(&[("reason", "402"), ("code", "101"), ("expire", "3600")]);
        let Outcome::Final(s) = &ban else {
            panic!("a temporary ban is final")
        };
        assert_eq!(
            *s,
            ConnState::TempBanned {
                ban_code: Some(101),
                expires_in: Some(std::time::Duration::from_secs(3600)),
            }
        );
        assert_eq!(s.code(), Some("temp_banned"));
        let replaced = stream_end(
            &Node::new("stream:error")
                .children(vec![Node::new("conflict").attr("type", "replaced")]),
        )
        .unwrap();
        assert_eq!(code(&replaced), Some("replaced"));
        let restart = stream_end(&Node::new("stream:error").attr("code", "515")).unwrap();
        assert_eq!(code(&restart), Some("restart_required"));
    }
}
