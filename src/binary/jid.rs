//! WhatsApp JIDs: `user[.agent][:device]@server`, and how each kind travels on the wire
//! (JID_PAIR, AD_JID, FB_JID, INTEROP_JID; PROTOCOL.md §4.6, §5).

use std::fmt;
use std::str::FromStr;

/// The server part of a JID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Server {
    /// `s.whatsapp.net`: phone-number users, and the server itself.
    User,
    /// `c.us`: the legacy user server (message-id hashing, a few special accounts).
    LegacyUser,
    /// `g.us`: groups.
    Group,
    /// `broadcast`: status and broadcast lists.
    Broadcast,
    /// `lid`: linked-identity users.
    Lid,
    /// `newsletter`: channels.
    Newsletter,
    /// `hosted`: hosted (Cloud API) accounts on the phone-number namespace.
    Hosted,
    /// `hosted.lid`: hosted accounts on the LID namespace.
    HostedLid,
    /// `msgr`: Messenger users (FB_JID on the wire).
    Messenger,
    /// `interop`: interoperability users (INTEROP_JID on the wire).
    Interop,
    /// `call`: call ids.
    Call,
    /// `bot`: bots.
    Bot,
    /// Any other server string, kept as sent.
    Other(String),
}

impl Server {
    /// The server as written after `@`.
    pub fn as_str(&self) -> &str {
        match self {
            Server::User => "s.whatsapp.net",
            Server::LegacyUser => "c.us",
            Server::Group => "g.us",
            Server::Broadcast => "broadcast",
            Server::Lid => "lid",
            Server::Newsletter => "newsletter",
            Server::Hosted => "hosted",
            Server::HostedLid => "hosted.lid",
            Server::Messenger => "msgr",
            Server::Interop => "interop",
            Server::Call => "call",
            Server::Bot => "bot",
            Server::Other(s) => s,
        }
    }

    /// Parses a server string; unknown ones become [`Server::Other`].
    pub fn parse(s: &str) -> Server {
        match s {
            "s.whatsapp.net" => Server::User,
            "c.us" => Server::LegacyUser,
            "g.us" => Server::Group,
            "broadcast" => Server::Broadcast,
            "lid" => Server::Lid,
            "newsletter" => Server::Newsletter,
            "hosted" => Server::Hosted,
            "hosted.lid" => Server::HostedLid,
            "msgr" => Server::Messenger,
            "interop" => Server::Interop,
            "call" => Server::Call,
            "bot" => Server::Bot,
            other => Server::Other(other.to_owned()),
        }
    }

    /// The AD_JID domain byte for this server, if it has one (agent 0).
    pub(crate) fn ad_domain(&self) -> Option<u8> {
        match self {
            Server::User => Some(0),
            Server::Lid => Some(1),
            Server::Hosted => Some(128),
            Server::HostedLid => Some(129),
            _ => None,
        }
    }

    /// The server an AD_JID domain byte names, and the agent if it is one.
    pub(crate) fn from_ad_domain(domain: u8) -> (Server, u8) {
        match domain {
            0 => (Server::User, 0),
            1 => (Server::Lid, 0),
            128 => (Server::Hosted, 0),
            129 => (Server::HostedLid, 0),
            agent => (Server::User, agent),
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A WhatsApp JID.
///
/// `device` 0 is the primary phone; companions are 1 and up. `agent` is the AD_JID domain
/// byte for agents other than the four named servers (whatsmeow `RawAgent`), `integrator`
/// only exists for interop users.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    /// The user (phone number, LID, group id...); empty for a server-only JID.
    pub user: String,
    /// Raw agent byte (0 for none).
    pub agent: u8,
    /// Device number (0 = primary).
    pub device: u16,
    /// Interop integrator id.
    pub integrator: u16,
    /// The server.
    pub server: Server,
}

/// A string that is not a JID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a JID: {reason}")]
pub struct ParseJidError {
    reason: &'static str,
}

impl Jid {
    /// `user@server` with no device.
    pub fn new(user: impl Into<String>, server: Server) -> Jid {
        Jid {
            user: user.into(),
            agent: 0,
            device: 0,
            integrator: 0,
            server,
        }
    }

    /// `user:device@server`.
    pub fn with_device(user: impl Into<String>, device: u16, server: Server) -> Jid {
        Jid {
            device,
            ..Jid::new(user, server)
        }
    }

    /// The server's own JID (`@s.whatsapp.net` with an empty user), the `to` of every iq.
    pub fn server_jid() -> Jid {
        Jid::new("", Server::User)
    }

    /// The form WhatsApp Web's own stores write (and whatsapp-web.js shows): `…@c.us` for a
    /// phone-number user, device-less; any other JID as it is, device-less.
    pub fn c_us(&self) -> String {
        match self.server {
            Server::User | Server::LegacyUser => format!("{}@c.us", self.user),
            _ => self.to_non_ad().to_string(),
        }
    }

    /// The same JID without device or agent (the account, not one of its devices).
    pub fn to_non_ad(&self) -> Jid {
        Jid::new(self.user.clone(), self.server.clone())
    }

    /// True for a server-only JID such as `@s.whatsapp.net`.
    pub fn is_server(&self) -> bool {
        self.user.is_empty()
    }

    /// How this JID is written on the wire.
    pub(crate) fn wire_form(&self) -> JidForm {
        match self.server {
            Server::Interop => JidForm::Interop,
            Server::Messenger => JidForm::Fb,
            Server::Hosted | Server::HostedLid => JidForm::Ad,
            Server::User | Server::Lid if self.device > 0 || self.agent > 0 => JidForm::Ad,
            _ => JidForm::Pair,
        }
    }
}

/// The four wire encodings of a JID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JidForm {
    Pair,
    Ad,
    Fb,
    Interop,
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.user)?;
        if self.agent > 0 {
            write!(f, ".{}", self.agent)?;
        }
        if self.device > 0 {
            write!(f, ":{}", self.device)?;
        }
        write!(f, "@{}", self.server)
    }
}

impl FromStr for Jid {
    type Err = ParseJidError;

    /// Parses `user[.agent][:device]@server`; a string with no `@` is a server-only JID.
    fn from_str(s: &str) -> Result<Jid, ParseJidError> {
        let err = |reason| ParseJidError { reason };
        let Some((left, server)) = s.rsplit_once('@') else {
            return if s.is_empty() {
                Err(err("empty"))
            } else {
                Ok(Jid::new("", Server::parse(s)))
            };
        };
        if server.is_empty() {
            return Err(err("empty server"));
        }
        let server = Server::parse(server);
        let (user_agent, device) = match left.split_once(':') {
            Some((u, d)) => (u, d.parse::<u16>().map_err(|_| err("bad device"))?),
            None => (left, 0),
        };
        let (user, agent) = match (&server, user_agent.rsplit_once('.')) {
            (Server::User | Server::Lid, Some((u, a))) => {
                (u, a.parse::<u8>().map_err(|_| err("bad agent"))?)
            }
            _ => (user_agent, 0),
        };
        if user.is_empty() && (device > 0 || agent > 0) {
            return Err(err("device without user"));
        }
        Ok(Jid {
            user: user.to_owned(),
            agent,
            device,
            integrator: 0,
            server,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for s in [
            "15551234567@s.whatsapp.net",
            "15551234567:12@s.whatsapp.net",
            "123456789012345:7@lid",
            "120363041234567890@g.us",
            "15550001234-1600000000@g.us",
            "status@broadcast",
            "15550000006@c.us",
            "1234.5:3@s.whatsapp.net",
        ] {
            let j: Jid = s.parse().unwrap();
            assert_eq!(j.to_string(), s);
        }
        let j: Jid = "1234.5:3@s.whatsapp.net".parse().unwrap();
        assert_eq!((j.agent, j.device), (5, 3));
    }

    #[test]
    fn server_only_and_errors() {
        assert_eq!("s.whatsapp.net".parse::<Jid>().unwrap(), Jid::server_jid());
        assert_eq!("@s.whatsapp.net".parse::<Jid>().unwrap(), Jid::server_jid());
        assert!("".parse::<Jid>().is_err());
        assert!("a:x@lid".parse::<Jid>().is_err());
        assert!("a@".parse::<Jid>().is_err());
        assert!(":3@s.whatsapp.net".parse::<Jid>().is_err());
    }
}
