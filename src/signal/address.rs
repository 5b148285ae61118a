//! Signal addresses for WhatsApp JIDs (local storage keys only, never on the wire; PROTOCOL.md §10):
//! `user[_agent].device`, with the agent naming the LID and hosted namespaces, as Baileys does.

use std::fmt;

use crate::binary::{Jid, Server};

/// A peer device as the Signal stores know it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolAddress {
    /// `user`, or `user_<domain>` outside the phone-number namespace.
    pub name: String,
    /// Device id (0 = primary phone).
    pub device_id: u32,
}

impl ProtocolAddress {
    /// An address from its parts.
    pub fn new(name: impl Into<String>, device_id: u32) -> ProtocolAddress {
        ProtocolAddress {
            name: name.into(),
            device_id,
        }
    }

    /// The address of a device JID. PN and LID of one person are different addresses.
    pub fn from_jid(jid: &Jid) -> ProtocolAddress {
        let name = match jid.server {
            Server::Lid => format!("{}_1", jid.user),
            Server::Hosted => format!("{}_128", jid.user),
            Server::HostedLid => format!("{}_129", jid.user),
            _ if jid.agent > 0 => format!("{}_{}", jid.user, jid.agent),
            _ => jid.user.to_string(),
        };
        ProtocolAddress::new(name, u32::from(jid.device))
    }
}

impl fmt::Display for ProtocolAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.device_id)
    }
}

/// The sender-key name: one chain per (group, sender device).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SenderKeyName {
    /// Group JID string.
    pub group: String,
    /// The sending device.
    pub sender: ProtocolAddress,
}

impl fmt::Display for SenderKeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{}", self.group, self.sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jid_to_address() {
        let pn: Jid = "15551234567:3@s.whatsapp.net".parse().unwrap();
        assert_eq!(ProtocolAddress::from_jid(&pn).to_string(), "15551234567.3");
        let lid: Jid = "123456789012345:7@lid".parse().unwrap();
        assert_eq!(
            ProtocolAddress::from_jid(&lid).to_string(),
            "123456789012345_1.7"
        );
        let name = SenderKeyName {
            group: "120363041234567890@g.us".into(),
            sender: ProtocolAddress::from_jid(&pn),
        };
        assert_eq!(name.to_string(), "120363041234567890@g.us::15551234567.3");
    }
}
