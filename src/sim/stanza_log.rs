//! The server's record of the `<message>` stanzas real devices transmitted and it answered
//! (accepted or refused), oldest first and bounded: what tests read to see what went over the
//! wire and how many times. WhatsApp acks and routes every stanza it accepts, a resent id too,
//! so a client that transmits an acked message again is seen here.

use std::collections::VecDeque;

use crate::binary::{Jid, Node};

/// Stanzas kept in the log; counts are over these.
pub const LOG_KEPT: usize = 10_000;

/// A message stanza the server answered, as it came over the wire.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Logged {
    /// The sending device.
    pub from: String,
    /// The stanza's `to`.
    pub to: String,
    /// Message id.
    pub id: String,
    /// Each `<to jid>` (or the stanza's `to` for a lone `<enc>`) with its enc type.
    pub encs: Vec<(String, String)>,
    /// The error code the ack carried, if refused.
    pub error: Option<u16>,
    /// Whether it carried a privacy token.
    pub tctoken: bool,
    /// Whether it carried a cstoken (CLIENT-FEATURES §1).
    pub cstoken: bool,
    /// The `<enc count>` of a resend answering a retry receipt (None: an original).
    pub retry: Option<u32>,
    /// The server time its ack carried (unix seconds).
    pub t: u64,
}

impl Logged {
    /// The record of `node` from device `from`, answered at `t` with `error` (None: accepted).
    pub fn of(from: &Jid, node: &Node, t: u64, error: Option<u16>) -> Logged {
        let mut encs: Vec<(String, String)> = node
            .child("participants")
            .map(|p| {
                p.child_nodes()
                    .iter()
                    .filter_map(|t| {
                        let e = t.child("enc")?;
                        Some((
                            t.get_str("jid")?.into_owned(),
                            e.get_str("type")?.into_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        // A lone or shared top-level <enc> (a retry resend, a group's skmsg).
        if let Some(e) = node.child("enc")
            && let (Some(to), Some(kind)) = (node.get_str("to"), e.get_str("type"))
        {
            encs.push((to.into_owned(), kind.into_owned()));
        }
        // Its counted <enc> need not come first (Baileys puts a group's skmsg before it).
        let retry = node
            .child_nodes()
            .iter()
            .filter(|e| e.tag == "enc")
            .find_map(|e| e.get_str("count")?.parse().ok());
        Logged {
            from: from.to_string(),
            to: node
                .get_str("to")
                .map(|s| s.into_owned())
                .unwrap_or_default(),
            id: node
                .get_str("id")
                .map(|s| s.into_owned())
                .unwrap_or_default(),
            encs,
            error,
            tctoken: node.child("tctoken").is_some(),
            cstoken: node.child("cstoken").is_some(),
            retry,
            t,
        }
    }
}

/// How many times real devices transmitted one message id, as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Transmissions {
    /// The message id.
    pub id: String,
    /// Accepted stanzas that answered no retry receipt: 1 from a client that sends each
    /// message once (more only where it could not know of the ack, e.g. the connection dropped).
    pub originals: usize,
    /// Accepted resends answering retry receipts (`<enc count>`).
    pub retry_answers: usize,
    /// Stanzas refused with an error ack (a corrected resend may follow).
    pub refused: usize,
    /// Stanzas the server holds unanswered now (acks withheld).
    pub held: usize,
    /// The answered stanzas, oldest first.
    pub stanzas: Vec<Logged>,
}

/// The log itself.
#[derive(Debug, Default)]
pub struct StanzaLog {
    entries: VecDeque<Logged>,
}

impl StanzaLog {
    /// Records an answered stanza, forgetting the oldest beyond [`LOG_KEPT`].
    pub fn push(&mut self, l: Logged) {
        if self.entries.len() >= LOG_KEPT {
            self.entries.pop_front();
        }
        self.entries.push_back(l);
    }

    /// Every kept stanza, oldest first.
    pub fn all(&self) -> Vec<Logged> {
        self.entries.iter().cloned().collect()
    }

    /// The transmissions of message `id`, with `held` stanzas of it still unanswered.
    pub fn transmissions(&self, id: &str, held: usize) -> Transmissions {
        let stanzas: Vec<Logged> = self
            .entries
            .iter()
            .filter(|l| l.id == id)
            .cloned()
            .collect();
        let accepted = |l: &&Logged| l.error.is_none();
        Transmissions {
            id: id.to_owned(),
            originals: stanzas
                .iter()
                .filter(accepted)
                .filter(|l| l.retry.is_none())
                .count(),
            retry_answers: stanzas
                .iter()
                .filter(accepted)
                .filter(|l| l.retry.is_some())
                .count(),
            refused: stanzas.iter().filter(|l| l.error.is_some()).count(),
            held,
            stanzas,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::Server;

    fn stanza(id: &str, count: Option<&str>) -> Node {
        let mut enc = Node::new("enc").attr("v", "2").attr("type", "msg");
        if let Some(c) = count {
            enc = enc.attr("count", c.to_owned());
        }
        Node::new("message")
            .attr("id", id.to_owned())
            .attr("to", "2@s.whatsapp.net")
            .children(vec![enc])
    }

    #[test]
    fn originals_retry_answers_and_refusals_count_apart() {
        let me = Jid::with_device("1", 3, Server::User);
        let mut log = StanzaLog::default();
        log.push(Logged::of(&me, &stanza("A", None), 1, Some(421)));
        log.push(Logged::of(&me, &stanza("A", None), 2, None));
        log.push(Logged::of(&me, &stanza("B", None), 2, None));
        log.push(Logged::of(&me, &stanza("A", Some("1")), 3, None));
        log.push(Logged::of(&me, &stanza("A", None), 4, None));
        let t = log.transmissions("A", 1);
        assert_eq!(
            (t.originals, t.retry_answers, t.refused, t.held),
            (2, 1, 1, 1)
        );
        assert_eq!(t.stanzas.len(), 4);
        assert_eq!(t.stanzas[2].retry, Some(1));
        assert_eq!(
            t.stanzas[0].encs,
            [("2@s.whatsapp.net".into(), "msg".into())]
        );
        assert_eq!(log.transmissions("C", 0).stanzas, []);
    }

    #[test]
    fn the_log_stays_bounded() {
        let me = Jid::with_device("1", 3, Server::User);
        let mut log = StanzaLog::default();
        for i in 0..LOG_KEPT + 5 {
            log.push(Logged::of(&me, &stanza(&i.to_string(), None), 0, None));
        }
        assert_eq!(log.all().len(), LOG_KEPT);
        assert_eq!(log.transmissions("4", 0).originals, 0);
        assert_eq!(log.transmissions("5", 0).originals, 1);
    }
}
