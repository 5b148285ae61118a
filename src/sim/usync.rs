//! usync (PROTOCOL.md §8.3): the server's answer to "who is this user": their LID, their device
//! list, whether they are on WhatsApp. Users are looked up by PN JID, LID JID or `+number`.
//! Protocols the simulator does not know are left out of the answer, as the server omits them.

use crate::binary::{Jid, Node, Server};

use super::iq;

/// What the simulator knows about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// Phone number (digits).
    pub number: String,
    /// LID user (digits).
    pub lid: String,
    /// Device ids: 0 (the phone) and each linked companion.
    pub devices: Vec<u16>,
}

/// Answers a `<iq xmlns="usync">`; `lookup` finds a user by PN or LID JID.
pub fn answer(node: &Node, id: &str, lookup: impl Fn(&Jid) -> Option<UserInfo>) -> Node {
    let Some(usync) = node.child("usync") else {
        return iq::error(id, 400, "bad-request");
    };
    let protocols: Vec<String> = usync
        .child("query")
        .map(|q| q.child_nodes().iter().map(|p| p.tag.to_string()).collect())
        .unwrap_or_default();
    let Some(list) = usync.child("list") else {
        return iq::error(id, 400, "bad-request");
    };
    let users = list
        .child_nodes()
        .iter()
        .filter(|u| u.tag == "user")
        .map(|u| user(u, &protocols, &lookup))
        .collect();
    let mut out = Node::new("usync");
    for attr in ["sid", "mode", "context"] {
        if let Some(v) = usync.get_str(attr) {
            out = out.attr(attr, v.into_owned());
        }
    }
    out = out.attr("index", "0").attr("last", "true");
    iq::result(
        id,
        vec![out.children(vec![Node::new("list").children(users)])],
    )
}

fn user(u: &Node, protocols: &[String], lookup: &impl Fn(&Jid) -> Option<UserInfo>) -> Node {
    // By JID, or by `<contact>+15551234567</contact>` (phone-number lookup).
    let (asked, info) = match u.get_jid("jid") {
        Some(j) => {
            let info = lookup(&j);
            (j.to_non_ad(), info)
        }
        None => {
            let digits: String = u
                .child("contact")
                .and_then(|c| {
                    c.content_bytes()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                })
                .unwrap_or_default()
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            let j = Jid::new(digits, Server::User);
            let info = lookup(&j);
            (j, info)
        }
    };
    let mut children = Vec::new();
    for p in protocols {
        match (p.as_str(), &info) {
            ("contact", i) => children
                .push(Node::new("contact").attr("type", if i.is_some() { "in" } else { "out" })),
            ("lid", Some(i)) => {
                children.push(Node::new("lid").attr("val", Jid::new(i.lid.clone(), Server::Lid)))
            }
            ("devices", Some(i)) => children.push(Node::new("devices").children(vec![
                Node::new("device-list").children(
                    i.devices
                        .iter()
                        .map(|d| {
                            let n = Node::new("device").attr("id", d.to_string());
                            if *d == 0 {
                                n
                            } else {
                                n.attr("key-index", d.to_string())
                            }
                        })
                        .collect(),
                ),
            ])),
            _ => {}
        }
    }
    let node = Node::new("user").attr("jid", asked);
    if children.is_empty() {
        node
    } else {
        node.children(children)
    }
}
