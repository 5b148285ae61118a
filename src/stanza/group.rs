//! The stanzas of group messaging (MESSAGING.md §3): group metadata (`w:g2` iqs and the
//! `<group>` node), membership-change notifications (`w:gp2`), the group `<message>` with its
//! per-device sender-key distributions and one `skmsg`, and the participant hash (`phash`).
//! Built and parsed without IO; the client and the simulator both use them.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::enc_node;
use crate::binary::{Jid, Node, Server};
use crate::signal::CiphertextMessage;

/// Participants read from one `<group>` node at most (WhatsApp caps groups at 1,024 members;
/// the bound keeps a hostile answer from costing more).
pub const MAX_PARTICIPANTS: usize = 2048;
/// Longest subject kept (WhatsApp's limit is 100 characters).
pub const MAX_SUBJECT_BYTES: usize = 1024;

/// How a group names its members on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AddressingMode {
    /// Phone numbers (`…@s.whatsapp.net`), the default when a group says nothing.
    #[default]
    Pn,
    /// LIDs (`…@lid`).
    Lid,
}

impl AddressingMode {
    /// The `addressing_mode` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressingMode::Pn => "pn",
            AddressingMode::Lid => "lid",
        }
    }

    /// Parses the attribute; anything but `lid` is the phone-number mode (Baileys' rule).
    pub fn parse(s: Option<&str>) -> AddressingMode {
        match s {
            Some("lid") => AddressingMode::Lid,
            _ => AddressingMode::Pn,
        }
    }

    /// The JID server of this mode.
    pub fn server(self) -> Server {
        match self {
            AddressingMode::Pn => Server::User,
            AddressingMode::Lid => Server::Lid,
        }
    }
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupParticipant {
    /// The member as the group addresses it (PN or LID user).
    pub jid: Jid,
    /// The phone-number form (LID groups' `phone_number`), when told.
    pub phone_number: Option<Jid>,
    /// The LID form (PN groups' `lid`), when told.
    pub lid: Option<Jid>,
    /// `admin` or `superadmin`.
    pub admin: Option<String>,
}

/// A group's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// `…@g.us`.
    pub jid: Jid,
    /// The subject.
    pub subject: String,
    /// Who set the subject, when told.
    pub subject_owner: Option<Jid>,
    /// When the subject was set (unix seconds).
    pub subject_time: u64,
    /// The creator, when told.
    pub creator: Option<Jid>,
    /// Creation time (unix seconds).
    pub creation: u64,
    /// How members are named.
    pub addressing: AddressingMode,
    /// The members.
    pub participants: Vec<GroupParticipant>,
}

impl GroupInfo {
    /// Whether `user` (a bare PN or LID user JID) is a member, in either form.
    pub fn has_member(&self, user: &Jid) -> bool {
        self.participants.iter().any(|p| p.is(user))
    }

    /// Drops the members named in `gone` (in either form); true if any was there.
    pub fn remove_members(&mut self, gone: &[GroupParticipant]) -> bool {
        let before = self.participants.len();
        self.participants
            .retain(|p| !gone.iter().any(|g| p.is(&g.jid)));
        self.participants.len() < before
    }
}

impl GroupParticipant {
    /// Whether this member is `user` (a PN or LID user, or one of its devices), in either form.
    pub fn is(&self, user: &Jid) -> bool {
        let user = user.to_non_ad();
        self.jid == user
            || self.phone_number.as_ref() == Some(&user)
            || self.lid.as_ref() == Some(&user)
    }
}

/// A subject cut to [`MAX_SUBJECT_BYTES`] on a character boundary.
pub fn clip_subject(s: &str) -> String {
    clip(s, MAX_SUBJECT_BYTES)
}

/// Truncates to at most `max` bytes on a character boundary.
fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The `<group>` node the server answers a query (or a create) with.
pub fn group_node(g: &GroupInfo) -> Node {
    let mut n = Node::new("group")
        .attr("id", g.jid.user.clone())
        .attr("subject", g.subject.clone())
        .attr("s_t", g.subject_time.to_string())
        .attr("creation", g.creation.to_string())
        .attr("size", g.participants.len().to_string())
        .attr("addressing_mode", g.addressing.as_str());
    if let Some(c) = &g.creator {
        n = n.attr("creator", c.clone());
    }
    if let Some(o) = &g.subject_owner {
        n = n.attr("s_o", o.clone());
    }
    n.children(g.participants.iter().map(participant_node).collect())
}

fn participant_node(p: &GroupParticipant) -> Node {
    let mut n = Node::new("participant").attr("jid", p.jid.clone());
    if let Some(a) = &p.admin {
        n = n.attr("type", a.clone());
    }
    if let Some(l) = &p.lid {
        n = n.attr("lid", l.clone());
    }
    if let Some(pn) = &p.phone_number {
        n = n.attr("phone_number", pn.clone());
    }
    n
}

fn parse_participant(p: &Node) -> Option<GroupParticipant> {
    let user_jid = |k: &str| {
        p.get_jid(k)
            .filter(|j| matches!(j.server, Server::User | Server::Lid))
            .map(|j| j.to_non_ad())
    };
    Some(GroupParticipant {
        jid: user_jid("jid")?,
        phone_number: user_jid("phone_number"),
        lid: user_jid("lid"),
        admin: p
            .get_str("type")
            .filter(|t| matches!(t.as_ref(), "admin" | "superadmin"))
            .map(|t| t.into_owned()),
    })
}

/// Reads a `<group>` node (the answer to a query or a create, or a `create` notification).
pub fn parse_group(n: &Node) -> Option<GroupInfo> {
    if n.tag != "group" {
        return None;
    }
    let id = n.get_str("id")?;
    let jid = if id.contains('@') {
        id.parse::<Jid>().ok()?
    } else {
        Jid::new(id.into_owned(), Server::Group)
    };
    if jid.server != Server::Group || jid.user.is_empty() {
        return None;
    }
    let num = |k: &str| n.get_str(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    Some(GroupInfo {
        jid,
        subject: clip(&n.get_str("subject").unwrap_or_default(), MAX_SUBJECT_BYTES),
        subject_owner: n.get_jid("s_o"),
        subject_time: num("s_t"),
        creator: n.get_jid("creator"),
        creation: num("creation"),
        addressing: AddressingMode::parse(n.get_str("addressing_mode").as_deref()),
        participants: n
            .child_nodes()
            .iter()
            .filter(|c| c.tag == "participant")
            .take(MAX_PARTICIPANTS)
            .filter_map(parse_participant)
            .collect(),
    })
}

fn g2(to: Jid, kind: &str, children: Vec<Node>) -> Node {
    Node::new("iq")
        .attr("xmlns", "w:g2")
        .attr("type", kind.to_owned())
        .attr("to", to)
        .children(children)
}

/// `<iq type="get" xmlns="w:g2" to=gid><query request="interactive"/>`.
pub fn group_query(group: &Jid) -> Node {
    g2(
        group.to_non_ad(),
        "get",
        vec![Node::new("query").attr("request", "interactive")],
    )
}

/// `<iq type="set" xmlns="w:g2" to="@g.us"><create subject key><participant jid/>…`.
pub fn group_create(subject: &str, participants: &[Jid], key: &str) -> Node {
    g2(
        Jid::new("", Server::Group),
        "set",
        vec![
            Node::new("create")
                .attr("subject", subject.to_owned())
                .attr("key", key.to_owned())
                .children(
                    participants
                        .iter()
                        .map(|j| Node::new("participant").attr("jid", j.to_non_ad()))
                        .collect(),
                ),
        ],
    )
}

/// A membership change asked of the server (and the child of a `w:gp2` notification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberAction {
    /// `add`.
    Add,
    /// `remove`.
    Remove,
    /// `promote` to admin.
    Promote,
    /// `demote` from admin.
    Demote,
}

impl MemberAction {
    /// The tag.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberAction::Add => "add",
            MemberAction::Remove => "remove",
            MemberAction::Promote => "promote",
            MemberAction::Demote => "demote",
        }
    }

    /// Parses a tag.
    pub fn parse(s: &str) -> Option<MemberAction> {
        Some(match s {
            "add" => MemberAction::Add,
            "remove" => MemberAction::Remove,
            "promote" => MemberAction::Promote,
            "demote" => MemberAction::Demote,
            _ => return None,
        })
    }
}

/// `<iq type="set" xmlns="w:g2" to=gid><add|remove|promote|demote><participant jid/>…`.
pub fn group_members(group: &Jid, action: MemberAction, members: &[Jid]) -> Node {
    g2(
        group.to_non_ad(),
        "set",
        vec![
            Node::new(action.as_str()).children(
                members
                    .iter()
                    .map(|j| Node::new("participant").attr("jid", j.to_non_ad()))
                    .collect(),
            ),
        ],
    )
}

/// The per-member outcome of a membership iq: (member, error code if refused).
pub fn parse_member_results(answer: &Node, action: MemberAction) -> Vec<(Jid, Option<u16>)> {
    answer
        .child(action.as_str())
        .map(|a| {
            a.child_nodes()
                .iter()
                .filter(|p| p.tag == "participant")
                .take(MAX_PARTICIPANTS)
                .filter_map(|p| {
                    Some((
                        p.get_jid("jid")?,
                        p.get_str("error").and_then(|e| e.parse().ok()),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `<iq type="set" xmlns="w:g2" to="@g.us"><leave><group id=gid/></leave>`.
pub fn group_leave(group: &Jid) -> Node {
    g2(
        Jid::new("", Server::Group),
        "set",
        vec![Node::new("leave").children(vec![Node::new("group").attr("id", group.to_non_ad())])],
    )
}

/// `<iq type="set" xmlns="w:g2" to=gid><subject>text</subject>`.
pub fn group_subject(group: &Jid, subject: &str) -> Node {
    g2(
        group.to_non_ad(),
        "set",
        vec![Node::new("subject").bytes(subject.as_bytes().to_vec())],
    )
}

/// What a `<notification type="w:gp2">` says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// The group was created with us in it.
    Created(Box<GroupInfo>),
    /// Members added, removed, promoted or demoted.
    Members(MemberAction, Vec<GroupParticipant>),
    /// The subject changed.
    Subject(String),
    /// The group now names its members this way.
    Addressing(AddressingMode),
    /// Someone left (they are in the list).
    Left(Vec<GroupParticipant>),
    /// A change this build does not model (description, settings, …): the tag.
    Other(String),
}

/// A `w:gp2` notification: the group, who made the change, when, and each change in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupNotification {
    /// The group.
    pub group: Jid,
    /// Who made the change (`participant`), when told.
    pub author: Option<Jid>,
    /// Server time.
    pub t: u64,
    /// The changes, in order.
    pub changes: Vec<GroupChange>,
}

/// Most changes read from one notification.
const MAX_CHANGES: usize = 64;

/// Reads a `<notification type="w:gp2">`.
pub fn parse_group_notification(n: &Node) -> Option<GroupNotification> {
    let group = n.get_jid("from").filter(|j| j.server == Server::Group)?;
    let members = |c: &Node| -> Vec<GroupParticipant> {
        c.child_nodes()
            .iter()
            .filter(|p| p.tag == "participant")
            .take(MAX_PARTICIPANTS)
            .filter_map(parse_participant)
            .collect()
    };
    let changes = n
        .child_nodes()
        .iter()
        .take(MAX_CHANGES)
        .map(|c| match c.tag.as_ref() {
            "create" => match c.child("group").and_then(parse_group) {
                Some(g) => GroupChange::Created(Box::new(g)),
                None => GroupChange::Other("create".into()),
            },
            "subject" => GroupChange::Subject(clip(
                &c.get_str("subject").unwrap_or_default(),
                MAX_SUBJECT_BYTES,
            )),
            "leave" => GroupChange::Left(members(c)),
            "addressing_mode" | "lid_migration" => GroupChange::Addressing(AddressingMode::parse(
                c.get_str("addressing_mode")
                    .or_else(|| c.get_str("mode"))
                    .as_deref(),
            )),
            tag => match MemberAction::parse(tag) {
                Some(a) => GroupChange::Members(a, members(c)),
                None => GroupChange::Other(tag.to_owned()),
            },
        })
        .collect();
    Some(GroupNotification {
        group,
        author: n.get_jid("participant"),
        t: n.get_str("t").and_then(|t| t.parse().ok()).unwrap_or(0),
        changes,
    })
}

/// A `w:gp2` notification as the server sends it to each member device.
pub fn group_notification(
    group: &Jid,
    id: &str,
    author: Option<&Jid>,
    t: u64,
    changes: Vec<Node>,
) -> Node {
    let mut n = Node::new("notification")
        .attr("from", group.to_non_ad())
        .attr("type", "w:gp2")
        .attr("id", id.to_owned())
        .attr("t", t.to_string());
    if let Some(a) = author {
        n = n.attr("participant", a.clone());
    }
    n.children(changes)
}

/// A membership-change child (`<add>`…) for a notification.
pub fn members_change(action: MemberAction, members: &[GroupParticipant]) -> Node {
    Node::new(action.as_str()).children(members.iter().map(participant_node).collect())
}

/// The participant hash WhatsApp compares to its own view of a group (MESSAGING.md §0): `2:` +
/// standard base64 (unpadded) of the first 6 bytes of SHA-256 over the sorted
/// `user.agent:device@server` forms of every member device and the sending device.
pub fn phash(devices: &[Jid]) -> String {
    let mut forms: Vec<String> = devices
        .iter()
        .map(|d| format!("{}.{}:{}@{}", d.user, d.agent, d.device, d.server))
        .collect();
    forms.sort();
    forms.dedup();
    let mut h = Sha256::new();
    for f in &forms {
        h.update(f.as_bytes());
    }
    let digest = h.finalize();
    format!(
        "2:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&digest[..6])
    )
}

/// The group `<message>`: `<participants>` with one sender-key distribution per device that
/// lacks our key, `<device-identity>` when any is a pkmsg, then the one `skmsg` for everyone.
pub fn group_message_stanza(
    id: &str,
    group: &Jid,
    mode: AddressingMode,
    phash: &str,
    distributions: Vec<(Jid, CiphertextMessage)>,
    skmsg: Vec<u8>,
    device_identity: &[u8],
) -> Node {
    let any_pkmsg = distributions
        .iter()
        .any(|(_, c)| matches!(c, CiphertextMessage::PreKey(_)));
    let mut children = Vec::with_capacity(3);
    if !distributions.is_empty() {
        children.push(
            Node::new("participants").children(
                distributions
                    .iter()
                    .map(|(d, ct)| {
                        Node::new("to")
                            .attr("jid", d.clone())
                            .children(vec![enc_node(ct, None)])
                    })
                    .collect(),
            ),
        );
    }
    if any_pkmsg {
        children.push(Node::new("device-identity").bytes(device_identity.to_vec()));
    }
    children.push(
        Node::new("enc")
            .attr("v", "2")
            .attr("type", "skmsg")
            .bytes(skmsg),
    );
    Node::new("message")
        .attr("id", id.to_owned())
        .attr("to", group.to_non_ad())
        .attr("type", "text")
        .attr("addressing_mode", mode.as_str())
        .attr("phash", phash.to_owned())
        .children(children)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phash_matches_the_vectors_of_messaging_md() {
        // MESSAGING.md §0 (whatsapp-rust's phash_crosscheck_vectors, re-checked in Python).
        let j = |s: &str| s.replace(".0:", ":").parse::<Jid>().unwrap();
        assert_eq!(
            phash(&[j("5511999999999.0:3@s.whatsapp.net")]),
            "2:5s+YxCff"
        );
        assert_eq!(
            phash(&[j("5511999999999.0:0@s.whatsapp.net")]),
            "2:RJWVxcMQ"
        );
        assert_eq!(
            phash(&[
                j("7469250125917.0:21@s.whatsapp.net"),
                j("5511988887777.0:14@s.whatsapp.net"),
            ]),
            "2:AAv/hwhn"
        );
    }

    #[test]
    fn group_nodes_read_back_and_hostile_ones_are_bounded() {
        let g = GroupInfo {
            jid: Jid::new("120363000000000001", Server::Group),
            subject: "Team".into(),
            subject_owner: Some(Jid::new("15550001111", Server::User)),
            subject_time: 1_700_000_000,
            creator: Some(Jid::new("15550001111", Server::User)),
            creation: 1_700_000_000,
            addressing: AddressingMode::Lid,
            participants: vec![GroupParticipant {
                jid: Jid::new("201234567890123", Server::Lid),
                phone_number: Some(Jid::new("15550001111", Server::User)),
                lid: None,
                admin: Some("superadmin".into()),
            }],
        };
        assert_eq!(parse_group(&group_node(&g)), Some(g.clone()));
        let many = Node::new("group").attr("id", "1").children(
            (0..MAX_PARTICIPANTS + 10)
                .map(|i| {
                    Node::new("participant").attr("jid", Jid::new(i.to_string(), Server::User))
                })
                .collect(),
        );
        assert_eq!(
            parse_group(&many).unwrap().participants.len(),
            MAX_PARTICIPANTS
        );
        assert_eq!(parse_group(&Node::new("group")), None);
        assert_eq!(
            parse_group(&Node::new("group").attr("id", "x@s.whatsapp.net")),
            None
        );
    }

    #[test]
    fn notifications_read_back() {
        let gid = Jid::new("120363000000000001", Server::Group);
        let p = GroupParticipant {
            jid: Jid::new("15550002222", Server::User),
            phone_number: None,
            lid: Some(Jid::new("201234567890124", Server::Lid)),
            admin: None,
        };
        let author = Jid::new("15550001111", Server::User);
        let n = group_notification(
            &gid,
            "n1",
            Some(&author),
            5,
            vec![
                members_change(MemberAction::Remove, std::slice::from_ref(&p)),
                Node::new("subject").attr("subject", "New"),
                Node::new("ephemeral"),
            ],
        );
        let parsed = parse_group_notification(&n).unwrap();
        assert_eq!(parsed.group, gid);
        assert_eq!(parsed.author, Some(author));
        assert_eq!(parsed.t, 5);
        assert_eq!(
            parsed.changes,
            vec![
                GroupChange::Members(MemberAction::Remove, vec![p]),
                GroupChange::Subject("New".into()),
                GroupChange::Other("ephemeral".into()),
            ]
        );
    }
}
