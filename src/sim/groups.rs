//! Groups as WhatsApp's server keeps them (MESSAGING.md §3, §5): subject, creator, members and
//! their addressing mode; the `w:g2` iqs (query, create, membership, leave, subject) with a
//! `w:gp2` notification to every member device for each change; the routing of group stanzas
//! (each device its own pairwise part first, then the shared `skmsg`; `phash` on the ack when
//! the sender's view of the member devices differs, `421` on the wrong addressing mode); and
//! simulated users as full group peers (they distribute, encrypt and decrypt with sender keys,
//! and start their key over when a member leaves).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::deliver::{
    Routed, Target, answered, bundle_of, corrupt, enc_for, enqueue, take_corruption, target,
    to_device, with_edit,
};
use super::error::SimError;
use super::inbox::{Arrival, INBOX_KEPT, MessageKey};
use super::iq;
use super::phone::SimPeer;
use super::retry::ask_retry;
use super::server::{Device, Eavesdrop, Group, SENT_KEPT, Shared, State, Work, valid_number};
use crate::binary::{Jid, Node, Server};
use prost::Message as _;

use crate::proto::wa;
use crate::signal::EncType;
use crate::stanza;
use crate::stanza::group::{
    AddressingMode, GroupInfo, GroupParticipant, MemberAction, clip_subject, group_node,
    group_notification, members_change, parse_group,
};

/// Most members of one group (WhatsApp's limit).
pub const MAX_MEMBERS: usize = 1024;
/// Groups the simulator keeps at most.
pub const MAX_GROUPS: usize = 10_000;
/// Former members remembered per group (they try to read what follows, and must fail).
const FORMER_KEPT: usize = 64;
/// Read attempts by former members remembered.
pub(super) const EAVESDROPS_KEPT: usize = 1024;

/// The devices of user `number` as the server lists them (usync): its simulated devices and
/// its linked companions.
pub(super) fn user_devices(st: &State, number: &str) -> Vec<u16> {
    let Some(p) = st.phones.get(number) else {
        return Vec::new();
    };
    let mut devices: Vec<u16> = p
        .sim_devices()
        .iter()
        .map(|d| d.jid.device)
        .chain(st.linked_devices(number).iter().map(|j| j.device))
        .collect();
    devices.sort_unstable();
    devices.dedup();
    devices
}

/// User `number` (device `device`) as `mode` names it.
fn named(st: &State, number: &str, device: u16, mode: AddressingMode) -> Option<Jid> {
    Some(match mode {
        AddressingMode::Pn => Jid::with_device(number, device, Server::User),
        AddressingMode::Lid => Jid::with_device(
            st.phones.get(number)?.account.lid.clone(),
            device,
            Server::Lid,
        ),
    })
}

/// The phone number of a user or device JID (PN or a known LID).
fn number_of(st: &State, j: &Jid) -> Option<String> {
    match j.server {
        Server::User => Some(j.user.clone()),
        Server::Lid => st.lids.get(&j.user).cloned(),
        _ => None,
    }
}

/// The group's metadata as a member sees it.
pub(super) fn info(st: &State, g: &Group) -> GroupInfo {
    let lid = |n: &str| {
        st.phones
            .get(n)
            .map(|p| Jid::new(p.account.lid.clone(), Server::Lid))
    };
    let pn = |n: &str| Jid::new(n, Server::User);
    let name = |n: &str| match g.mode {
        AddressingMode::Pn => Some(pn(n)),
        AddressingMode::Lid => lid(n),
    };
    GroupInfo {
        jid: g.jid(),
        subject: g.subject.clone(),
        subject_owner: name(&g.subject_owner),
        subject_time: g.subject_t,
        creator: name(&g.creator),
        creation: g.creation,
        addressing: g.mode,
        participants: g
            .members
            .iter()
            .filter_map(|(n, admin)| {
                Some(match g.mode {
                    AddressingMode::Pn => GroupParticipant {
                        jid: pn(n),
                        phone_number: None,
                        lid: lid(n),
                        admin: admin.map(str::to_owned),
                    },
                    AddressingMode::Lid => GroupParticipant {
                        jid: lid(n)?,
                        phone_number: Some(pn(n)),
                        lid: None,
                        admin: admin.map(str::to_owned),
                    },
                })
            })
            .collect(),
    }
}

/// Every member device, as the group names them.
fn member_devices(st: &State, g: &Group) -> Vec<Jid> {
    g.members
        .iter()
        .flat_map(|(n, _)| {
            user_devices(st, n)
                .into_iter()
                .filter_map(|d| named(st, n, d, g.mode))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Sends `changes` about `g` to every real device of `numbers` but `except`.
fn notify(
    st: &mut State,
    g: &Group,
    numbers: &[String],
    author: Option<&str>,
    except: Option<&Jid>,
    t: u64,
    changes: Vec<Node>,
) {
    let id = crate::util::ids::phone_message_id();
    let author = author.and_then(|a| named(st, a, 0, g.mode));
    let node = group_notification(&g.jid(), &id, author.as_ref(), t, changes);
    let mut keys: Vec<String> = Vec::new();
    for n in numbers {
        for d in st.linked_devices(n) {
            if except != Some(&d) {
                keys.push(d.to_string());
            }
        }
    }
    for k in keys {
        enqueue(st, &k, id.clone(), node.clone());
    }
}

/// Creates a group (the creator is its super admin); members are created as users on first
/// use, as the control API does. Returns its JID.
pub(super) fn create(
    st: &mut State,
    subject: &str,
    creator: &str,
    participants: &[String],
    mode: AddressingMode,
    t: u64,
    except: Option<&Jid>,
) -> Result<Jid, SimError> {
    if !valid_number(creator) || participants.iter().any(|p| !valid_number(p)) {
        return Err(SimError::BadNumber);
    }
    if participants.len() + 1 > MAX_MEMBERS || st.groups.len() >= MAX_GROUPS {
        return Err(SimError::TooMany);
    }
    let id = loop {
        let id = format!("120363{:012}", rand::random::<u64>() % 1_000_000_000_000);
        if !st.groups.contains_key(&id) {
            break id;
        }
    };
    st.phone(creator, None);
    let mut members = vec![(creator.to_owned(), Some("superadmin"))];
    for p in participants {
        st.phone(p, None);
        if !members.iter().any(|(n, _)| n == p) {
            members.push((p.clone(), None));
        }
    }
    let g = Group {
        id: id.clone(),
        subject: clip_subject(subject),
        subject_owner: creator.to_owned(),
        subject_t: t,
        creator: creator.to_owned(),
        creation: t,
        mode,
        members,
        former: VecDeque::new(),
    };
    let numbers: Vec<String> = g.members.iter().map(|(n, _)| n.clone()).collect();
    let node = group_node(&info(st, &g));
    notify(
        st,
        &g,
        &numbers,
        Some(creator),
        except,
        t,
        vec![Node::new("create").children(vec![node])],
    );
    let jid = g.jid();
    st.groups.insert(id, g);
    Ok(jid)
}

/// Each asked member's outcome (error code), and the simulated devices whose sender keys must
/// start over.
pub(super) type MemberChange = (Vec<(String, Option<u16>)>, Vec<Arc<SimPeer>>);

/// Adds and removes members of `gid`, telling every member device (the removed ones too)
/// unless `quiet`; the remaining simulated users start their sender keys over when someone
/// left. Returns (member, error code) per asked member.
#[allow(clippy::too_many_arguments)]
pub(super) fn change_members(
    st: &mut State,
    gid: &str,
    author: Option<&str>,
    action: MemberAction,
    members: &[String],
    quiet: bool,
    except: Option<&Jid>,
    t: u64,
) -> Result<MemberChange, SimError> {
    let mut g = st.groups.get(gid).cloned().ok_or(SimError::NoSuchGroup)?;
    let mut results = Vec::new();
    let mut changed: Vec<String> = Vec::new();
    for m in members {
        if !valid_number(m) {
            results.push((m.clone(), Some(400)));
            continue;
        }
        let code = match action {
            MemberAction::Add if g.is_member(m) => Some(409),
            MemberAction::Add if g.members.len() >= MAX_MEMBERS => Some(500),
            MemberAction::Add => {
                st.phone(m, None);
                g.members.push((m.clone(), None));
                g.former.retain(|f| f != m);
                None
            }
            _ if !g.is_member(m) => Some(404),
            MemberAction::Remove => {
                g.members.retain(|(n, _)| n != m);
                g.former.push_back(m.clone());
                if g.former.len() > FORMER_KEPT {
                    g.former.pop_front();
                }
                None
            }
            MemberAction::Promote | MemberAction::Demote => {
                for (n, a) in g.members.iter_mut() {
                    if n == m && *a != Some("superadmin") {
                        *a = (action == MemberAction::Promote).then_some("admin");
                    }
                }
                None
            }
        };
        if code.is_none() {
            changed.push(m.clone());
        }
        results.push((m.clone(), code));
    }
    let mut rotate = Vec::new();
    if !changed.is_empty() {
        let mut told: Vec<String> = g.members.iter().map(|(n, _)| n.clone()).collect();
        if action == MemberAction::Remove {
            told.extend(changed.iter().cloned());
            // Those who stay start their keys over: the one who left must not read on.
            for (n, _) in &g.members {
                if let Some(p) = st.phones.get_mut(n) {
                    p.group_keys_sent.retain(|(k, _)| k != gid);
                    rotate.push(p.signal.clone());
                }
            }
        }
        if !quiet {
            // The removed are named as the group named them before they left.
            let before = st.groups.get(gid).cloned().unwrap_or_else(|| g.clone());
            let (now_named, before_named) = (info(st, &g), info(st, &before));
            let pn = |n: &str| Jid::new(n, Server::User);
            let parts: Vec<GroupParticipant> = changed
                .iter()
                .filter_map(|n| {
                    now_named
                        .participants
                        .iter()
                        .chain(&before_named.participants)
                        .find(|p| p.is(&pn(n)))
                        .cloned()
                })
                .collect();
            notify(
                st,
                &g,
                &told,
                author,
                except,
                t,
                vec![members_change(action, &parts)],
            );
        }
    }
    st.groups.insert(gid.to_owned(), g);
    Ok((results, rotate))
}

/// Changes the subject and tells every member device.
fn set_subject(st: &mut State, gid: &str, author: &str, subject: &str, except: &Jid, t: u64) {
    let Some(g) = st.groups.get_mut(gid) else {
        return;
    };
    g.subject = clip_subject(subject);
    g.subject_owner = author.to_owned();
    g.subject_t = t;
    let g = g.clone();
    let numbers: Vec<String> = g.members.iter().map(|(n, _)| n.clone()).collect();
    notify(
        st,
        &g,
        &numbers,
        Some(author),
        Some(except),
        t,
        vec![
            Node::new("subject")
                .attr("subject", g.subject.clone())
                .attr("s_t", t.to_string()),
        ],
    );
}

/// A `w:g2` iq from a real device.
pub(super) async fn answer_iq(shared: &Shared, dev: &Device, node: &Node, id: &str) -> Node {
    let number = dev.jid.user.clone();
    let t = shared.clock.now_unix();
    let get = node.get_str("type").as_deref() == Some("get");
    let to = node.get_jid("to");
    let gid = to
        .as_ref()
        .filter(|j| j.server == Server::Group && !j.user.is_empty())
        .map(|j| j.user.clone());
    let mut rotate = Vec::new();
    let answer = {
        let Ok(mut st) = shared.state.lock() else {
            return iq::error(id, 500, "internal-server-error");
        };
        let st = &mut *st;
        match (get, gid, node.child_nodes().first()) {
            (true, Some(gid), Some(q)) if q.tag == "query" => match st.groups.get(&gid) {
                None => iq::error(id, 404, "item-not-found"),
                Some(g) if !g.is_member(&number) => iq::error(id, 403, "forbidden"),
                Some(g) => iq::result(id, vec![group_node(&info(st, g))]),
            },
            (true, None, Some(q)) if q.tag == "participating" => {
                let mine: Vec<Node> = st
                    .groups
                    .values()
                    .filter(|g| g.is_member(&number))
                    .map(|g| group_node(&info(st, g)))
                    .collect();
                iq::result(id, vec![Node::new("groups").children(mine)])
            }
            (false, None, Some(c)) if c.tag == "create" => {
                let subject = c.get_str("subject").unwrap_or_default().into_owned();
                let members: Vec<String> = c
                    .child_nodes()
                    .iter()
                    .filter(|p| p.tag == "participant")
                    .take(MAX_MEMBERS)
                    .filter_map(|p| number_of(st, &p.get_jid("jid")?))
                    .filter(|n| *n != number)
                    .collect();
                // New groups address their members by LID, as WhatsApp's do today.
                let mode = AddressingMode::Lid;
                match create(st, &subject, &number, &members, mode, t, Some(&dev.jid)) {
                    Ok(jid) => match st.groups.get(&jid.user) {
                        Some(g) => iq::result(id, vec![group_node(&info(st, g))]),
                        None => iq::error(id, 500, "internal-server-error"),
                    },
                    Err(_) => iq::error(id, 400, "bad-request"),
                }
            }
            (false, None, Some(c)) if c.tag == "leave" => {
                let groups: Vec<String> = c
                    .child_nodes()
                    .iter()
                    .filter_map(|g| g.get_jid("id"))
                    .map(|j| j.user)
                    .collect();
                for g in groups {
                    if st.groups.get(&g).is_some_and(|g| g.is_member(&number))
                        && let Ok((_, r)) = change_members(
                            st,
                            &g,
                            Some(&number),
                            MemberAction::Remove,
                            std::slice::from_ref(&number),
                            false,
                            None,
                            t,
                        )
                    {
                        rotate.extend(r.into_iter().map(|p| (g.clone(), p)));
                    }
                }
                iq::result(id, vec![])
            }
            (false, Some(gid), Some(c)) => {
                let Some(g) = st.groups.get(&gid) else {
                    return iq::error(id, 404, "item-not-found");
                };
                if !g.is_member(&number) {
                    return iq::error(id, 403, "forbidden");
                }
                if c.tag == "subject" {
                    let subject = c
                        .content_bytes()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default();
                    set_subject(st, &gid, &number, &subject, &dev.jid, t);
                    iq::result(id, vec![])
                } else if let Some(action) = MemberAction::parse(&c.tag) {
                    if !g.is_admin(&number) {
                        return iq::error(id, 403, "forbidden");
                    }
                    let members: Vec<String> = c
                        .child_nodes()
                        .iter()
                        .filter(|p| p.tag == "participant")
                        .take(MAX_MEMBERS)
                        .filter_map(|p| number_of(st, &p.get_jid("jid")?))
                        .collect();
                    let mode = g.mode;
                    match change_members(
                        st,
                        &gid,
                        Some(&number),
                        action,
                        &members,
                        false,
                        Some(&dev.jid),
                        t,
                    ) {
                        Ok((results, r)) => {
                            rotate.extend(r.into_iter().map(|p| (gid.clone(), p)));
                            let parts = results
                                .iter()
                                .filter_map(|(n, code)| {
                                    let mut p = Node::new("participant")
                                        .attr("jid", named(st, n, 0, mode)?);
                                    if let Some(c) = code {
                                        p = p.attr("error", c.to_string());
                                    }
                                    Some(p)
                                })
                                .collect();
                            iq::result(id, vec![Node::new(action.as_str()).children(parts)])
                        }
                        Err(_) => iq::error(id, 404, "item-not-found"),
                    }
                } else {
                    iq::error(id, 501, "feature-not-implemented")
                }
            }
            _ => iq::error(id, 400, "bad-request"),
        }
    };
    for (g, peer) in rotate {
        let _ = peer
            .rotate_group_key(&Jid::new(g, Server::Group).to_string())
            .await;
    }
    answer
}

/// Starts the given simulated devices' sender keys for `gid` over.
pub(super) async fn rotate_keys(gid: &str, peers: Vec<Arc<SimPeer>>) {
    let group = Jid::new(gid, Server::Group).to_string();
    for p in peers {
        let _ = p.rotate_group_key(&group).await;
    }
}

/// The attributes every delivered group stanza carries: the group, the sending device as the
/// group names it and its other form, the addressing mode.
fn delivery(
    st: &State,
    g: &Group,
    sender_number: &str,
    sender_device: u16,
    id: &str,
    t: u64,
    kind: &str,
) -> Node {
    let mut n = Node::new("message")
        .attr("from", g.jid())
        .attr("id", id.to_owned())
        .attr("type", kind.to_owned())
        .attr("t", t.to_string())
        .attr("addressing_mode", g.mode.as_str());
    if let Some(p) = named(st, sender_number, sender_device, g.mode) {
        n = n.attr("participant", p);
    }
    n = match g.mode {
        AddressingMode::Pn => match named(st, sender_number, sender_device, AddressingMode::Lid) {
            Some(l) => n.attr("participant_lid", l),
            None => n,
        },
        AddressingMode::Lid => n.attr(
            "participant_pn",
            Jid::with_device(sender_number, sender_device, Server::User),
        ),
    };
    if let Some(name) = st
        .phones
        .get(sender_number)
        .and_then(|p| p.account.push_name.clone())
    {
        n = n.attr("notify", name);
    }
    n
}

/// A simulated member device receives a group stanza after its ack.
struct Receive {
    number: String,
    peer: Arc<SimPeer>,
    sender: Jid,
    node: Node,
}

impl Work for Receive {
    fn run<'a>(
        self: Box<Self>,
        shared: &'a Shared,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            receive(shared, &self.number, &self.peer, &self.sender, &self.node).await
        })
    }
}

/// Former members' devices try to read a `skmsg` with the key they had: (group, device).
struct Eavesdrops {
    peers: Vec<(String, Arc<SimPeer>)>,
    sender: Jid,
    id: String,
    skmsg: Vec<u8>,
}

impl Work for Eavesdrops {
    fn run<'a>(
        self: Box<Self>,
        shared: &'a Shared,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            for (group, peer) in self.peers {
                let read = peer
                    .group_receive(&group, &self.sender, None, Some(&self.skmsg))
                    .await
                    .is_ok_and(|m| m.is_some());
                if let Ok(mut st) = shared.state.lock() {
                    if st.eavesdrops.len() >= EAVESDROPS_KEPT {
                        st.eavesdrops.pop_front();
                    }
                    st.eavesdrops.push_back(Eavesdrop {
                        group,
                        id: self.id.clone(),
                        device: peer.jid.to_string(),
                        read,
                    });
                }
            }
        })
    }
}

/// Routes a real device's group stanza: real devices' copies are queued now, simulated
/// devices' work is returned to run after the ack; the `phash` when the sender's view of the
/// member devices differs from ours (the ack carries ours); Err(code) refuses it.
pub(super) fn route_group(
    shared: &Shared,
    dev: &Device,
    node: &Node,
    t: u64,
) -> Result<Routed, u16> {
    let to = node.get_jid("to").ok_or(479u16)?;
    let id = node
        .get_str("id")
        .map(|s| s.into_owned())
        .unwrap_or_default();
    tracing::trace!(from = %dev.jid, %id, stanza = %node, "simulator: group stanza");
    let kind = node
        .get_str("type")
        .map(|s| s.into_owned())
        .unwrap_or_else(|| "text".into());
    let mut sims: Vec<(String, Arc<SimPeer>, Node)> = Vec::new();
    let mut eavesdroppers: Vec<(String, Arc<SimPeer>)> = Vec::new();
    let mut skmsg = None;
    let mut phash_answer = None;
    {
        let Ok(mut st) = shared.state.lock() else {
            return Err(500);
        };
        let st = &mut *st;
        let g = st.groups.get(&to.user).cloned().ok_or(404u16)?;
        let number = dev.jid.user.clone();
        if !g.is_member(&number) {
            return Err(403);
        }
        if AddressingMode::parse(node.get_str("addressing_mode").as_deref()) != g.mode {
            return Err(421);
        }
        let sending = named(st, &number, dev.jid.device, g.mode).ok_or(500u16)?;
        let identity = node.child("device-identity").cloned();
        // A retry resend names its one device in `participant` (Baileys sets no
        // `device_fanout` on groups): the top-level pairwise enc goes to it alone. Baileys adds
        // a `<participants>` copy of the same content one ratchet step earlier; the top-level
        // one is delivered (the receiver skips the step).
        if let Some(p) = node.get_jid("participant") {
            let pairwise = |e: &&Node| {
                e.tag == "enc"
                    && e.get_str("type")
                        .is_some_and(|k| EncType::parse(&k).is_some())
            };
            let encs: Vec<&Node> = node.child_nodes().iter().filter(pairwise).collect();
            let enc = encs
                .iter()
                .find(|e| e.get("count").is_some())
                .or(encs.first())
                .map(|e| (*e).clone())
                .ok_or(479u16)?;
            let mut children = vec![enc.clone()];
            if enc.get_str("type").as_deref() == Some("pkmsg")
                && let Some(i) = identity
            {
                children.push(i);
            }
            let out = delivery(st, &g, &number, dev.jid.device, &id, t, &kind).children(children);
            match target(st, &p) {
                Some(Target::Real(k)) => enqueue(st, &k, id.clone(), out),
                Some(Target::Sim(n, peer)) => sims.push((n, peer, out)),
                None => {}
            }
        } else {
            let sk = node
                .child_nodes()
                .iter()
                .find(|c| c.tag == "enc" && c.get_str("type").as_deref() == Some("skmsg"))
                .cloned()
                .ok_or(400u16)?;
            phash_answer = fan_out(st, dev, node, &g, &sending, &sk, &id, t, &kind, &mut sims)?;
            for f in &g.former {
                if let Some(p) = st.phones.get(f) {
                    for peer in p.sim_devices() {
                        eavesdroppers.push((g.jid().to_string(), peer));
                    }
                }
            }
            skmsg = Some(sk);
        }
    }
    let mut work: Vec<Box<dyn Work>> = sims
        .into_iter()
        .map(|(number, peer, node)| {
            Box::new(Receive {
                number,
                peer,
                sender: dev.jid.clone(),
                node,
            }) as Box<dyn Work>
        })
        .collect();
    // Former members try to read on with the key they had.
    if let Some(ct) = skmsg.as_ref().and_then(|s| s.content_bytes())
        && !eavesdroppers.is_empty()
    {
        work.push(Box::new(Eavesdrops {
            peers: eavesdroppers,
            sender: dev.jid.clone(),
            id,
            skmsg: ct.to_vec(),
        }));
    }
    Ok(Routed {
        phash: phash_answer,
        work,
    })
}

/// The shared `skmsg` (and each device's pairwise part) to every member device but the
/// sender's; Some(phash) when the stanza's differs from the server's.
#[allow(clippy::too_many_arguments)]
fn fan_out(
    st: &mut State,
    dev: &Device,
    node: &Node,
    g: &Group,
    sending: &Jid,
    skmsg: &Node,
    id: &str,
    t: u64,
    kind: &str,
    sims: &mut Vec<(String, Arc<SimPeer>, Node)>,
) -> Result<Option<String>, u16> {
    let number = dev.jid.user.clone();
    let identity = node.child("device-identity").cloned();
    let mut phash_answer = None;
    {
        let mut pairwise: Vec<(Jid, Node)> = Vec::new();
        if let Some(parts) = node.child("participants") {
            for p in parts.child_nodes().iter().filter(|p| p.tag == "to") {
                let jid = p.get_jid("jid").ok_or(479u16)?;
                if jid.server != g.mode.server() {
                    return Err(400);
                }
                pairwise.push((jid, p.child("enc").ok_or(479u16)?.clone()));
            }
        }
        let mut devices = member_devices(st, g);
        if let Some(theirs) = node.get_str("phash") {
            let mut view = devices.clone();
            view.push(sending.clone());
            let ours = stanza::group::phash(&view);
            if theirs != ours {
                phash_answer = Some(ours);
            }
        }
        devices.retain(|d| d != sending);
        for d in devices {
            let own = pairwise
                .iter()
                .find(|(j, _)| *j == d)
                .map(|(_, e)| e.clone());
            let Some(tgt) = target(st, &d) else { continue };
            let target_user = match &tgt {
                Target::Real(k) => k.split([':', '@']).next().unwrap_or_default().to_owned(),
                Target::Sim(n, _) => n.clone(),
            };
            let mut sk = skmsg.clone();
            if take_corruption(st, &target_user, matches!(tgt, Target::Real(_))) {
                sk = corrupt(sk);
            }
            let mut children = Vec::with_capacity(3);
            if let Some(e) = own {
                let pk = e.get_str("type").as_deref() == Some("pkmsg");
                children.push(e);
                if pk && let Some(i) = &identity {
                    children.push(i.clone());
                }
            }
            children.push(sk);
            let out = delivery(st, g, &number, dev.jid.device, id, t, kind).children(children);
            match tgt {
                Target::Real(k) => enqueue(st, &k, id.to_owned(), out),
                Target::Sim(n, peer) => sims.push((n, peer, out)),
            }
        }
    }
    Ok(phash_answer)
}

/// A simulated device receives a group stanza from `sender` (a device, phone-number form):
/// the pairwise part first (a distribution, or a resend), then the `skmsg`; it records what it
/// read and answers with a receipt, or asks for a retry.
pub(super) async fn receive(
    shared: &Shared,
    number: &str,
    peer: &Arc<SimPeer>,
    sender: &Jid,
    node: &Node,
) {
    let id = node
        .get_str("id")
        .map(|s| s.into_owned())
        .unwrap_or_default();
    let Some(group) = node.get_jid("from") else {
        return;
    };
    let gid = group.to_string();
    let mut distribution = None;
    let mut inner = None;
    let mut failed = false;
    for enc in node.child_nodes().iter().filter(|c| c.tag == "enc") {
        let Some(ct) = enc.content_bytes() else {
            failed = true;
            break;
        };
        match enc.get_str("type").and_then(|k| EncType::parse(&k)) {
            Some(kind) => match peer.decrypt(sender, kind, ct).await {
                Ok(m) => {
                    distribution = m
                        .sender_key_distribution_message
                        .as_ref()
                        .and_then(|d| d.axolotl_sender_key_distribution_message.clone());
                    inner = Some(m);
                }
                Err(e) => {
                    tracing::debug!(error = %e, device = %peer.jid, %sender, "simulated device cannot decrypt the pairwise part");
                    failed = true;
                    break;
                }
            },
            None => match peer
                .group_receive(&gid, sender, distribution.take().as_deref(), Some(ct))
                .await
            {
                Ok(m) => inner = m,
                Err(e) => {
                    tracing::debug!(error = %e, device = %peer.jid, %sender, "simulated device cannot decrypt the skmsg");
                    failed = true;
                    break;
                }
            },
        }
    }
    if !failed && let Some(d) = distribution {
        // A distribution alone (or with a pairwise resend): install it.
        failed = peer
            .group_receive(&gid, sender, Some(&d), None)
            .await
            .is_err();
    }
    let me = named_peer(shared, number, peer, &group);
    let t = shared.clock.now_unix();
    let key = MessageKey {
        chat: gid.clone(),
        from: sender.to_non_ad().to_string(),
        id: id.clone(),
    };
    let arrival = Arrival::of(node);
    if failed {
        // A copy of what the device already read (its key step is spent): the app answers it
        // with the receipt again (MESSAGING.md §2.2, §2.4) instead of asking for a resend.
        let duplicate = shared.state.lock().ok().is_some_and(|mut st| {
            st.phones
                .get_mut(number)
                .is_some_and(|p| p.inbox.arrived(&key, peer.jid.device, arrival))
        });
        if duplicate {
            group_receipt(shared, number, sender, &group, me, &id, t);
            return;
        }
        ask_retry(shared, number, peer, sender, node, &id, |r| {
            r.attr("from", group.clone())
                .attr("participant", me.clone())
        })
        .await;
        return;
    }
    let message = inner.map(|mut m| {
        m.sender_key_distribution_message = None;
        m
    });
    let text = message.as_ref().and_then(|m| {
        m.conversation.clone().or_else(|| {
            m.extended_text_message
                .as_ref()
                .and_then(|e| e.text.clone())
        })
    });
    if let Ok(mut st) = shared.state.lock()
        && let Some(p) = st.phones.get_mut(number)
    {
        p.retries.remove(&(sender.to_string(), id.clone()));
        // A distribution alone is no message to show.
        if message
            .as_ref()
            .is_some_and(|m| *m != wa::Message::default())
        {
            let stamp = node.get_str("t").and_then(|t| t.parse().ok()).unwrap_or(t);
            p.inbox.read(&key, peer.jid.device, arrival, text, stamp);
        }
    }
    group_receipt(shared, number, sender, &group, me, &id, t);
    if let Some(m) = &message {
        let own = sender.user == number;
        super::phone_media::received(shared, number, &key, own, m, node).await;
    }
}

/// Simulated device `me` of user `number` receipts group message `id` to its `sender` (unless
/// the user withholds receipts), aggregated when the sender's account gets them so.
fn group_receipt(
    shared: &Shared,
    number: &str,
    sender: &Jid,
    group: &Jid,
    me: Jid,
    id: &str,
    t: u64,
) {
    let (withhold, aggregate) = shared
        .state
        .lock()
        .ok()
        .map(|st| {
            (
                st.phones.get(number).is_none_or(|p| p.withhold_receipts),
                st.phones
                    .get(&sender.user)
                    .is_some_and(|p| p.aggregate_receipts),
            )
        })
        .unwrap_or((true, false));
    if withhold {
        return;
    }
    let r = if aggregate {
        Node::new("receipt")
            .attr("from", group.clone())
            .attr("id", id.to_owned())
            .children(vec![
                Node::new("participants")
                    .attr("key", id.to_owned())
                    .children(vec![
                        Node::new("user").attr("jid", me).attr("t", t.to_string()),
                    ]),
            ])
    } else {
        Node::new("receipt")
            .attr("from", group.clone())
            .attr("participant", me)
            .attr("id", id.to_owned())
            .attr("t", t.to_string())
    };
    to_device(shared, sender, id.to_owned(), r);
}

/// The simulated device `peer` as `group` names it.
fn named_peer(shared: &Shared, number: &str, peer: &SimPeer, group: &Jid) -> Jid {
    shared
        .state
        .lock()
        .ok()
        .and_then(|st| {
            let g = st.groups.get(&group.user)?;
            named(&st, number, peer.jid.device, g.mode)
        })
        .unwrap_or_else(|| peer.jid.clone())
}

/// User `number`'s phone sends the `Message` plaintext `plain` to group `gid` as message `id`:
/// its sender key to every member device that lacks it (pairwise), then the `skmsg` to all.
/// Returns the message id.
pub(super) async fn phone_send(
    shared: &Shared,
    number: &str,
    gid: &str,
    id: String,
    plain: &[u8],
    admin: bool,
) -> Result<String, SimError> {
    let message = wa::Message::decode(plain).map_err(|_| SimError::BadMessage)?;
    let attrs = stanza::attrs::content_attrs(&message, admin);
    let t = shared.clock.now_unix();
    let group = Jid::new(gid, Server::Group);
    let (me, devices, has_key) = {
        let mut st = shared.state.lock().map_err(|_| SimError::Internal)?;
        let st = &mut *st;
        let g = st.groups.get(gid).cloned().ok_or(SimError::NoSuchGroup)?;
        if !g.is_member(number) {
            return Err(SimError::NotInGroup);
        }
        let phone = st.phones.get_mut(number).ok_or(SimError::Internal)?;
        if phone.sent.len() >= SENT_KEPT {
            phone.sent.pop_front();
        }
        phone
            .sent
            .push_back((id.clone(), group.clone(), message.clone()));
        let me = phone.signal.clone();
        let has_key: HashSet<String> = phone
            .group_keys_sent
            .iter()
            .filter(|(g, _)| g == gid)
            .map(|(_, d)| d.clone())
            .collect();
        let sending = named(st, number, me.jid.device, g.mode);
        let devices: Vec<Jid> = member_devices(st, &g)
            .into_iter()
            .filter(|d| Some(d) != sending.as_ref())
            .collect();
        (me, devices, has_key)
    };
    let (skmsg, distribution) = me
        .group_encrypt(&group.to_string(), plain)
        .await
        .map_err(|_| SimError::Internal)?;
    let skdm = wa::Message {
        sender_key_distribution_message: Some(wa::SenderKeyDistributionMessage {
            group_id: Some(group.to_string()),
            axolotl_sender_key_distribution_message: Some(distribution),
        }),
        ..Default::default()
    };
    for d in devices {
        let Some((pn, tgt, header)) = shared.state.lock().ok().and_then(|st| {
            let g = st.groups.get(gid)?;
            let pn = Jid::with_device(number_of(&st, &d)?, d.device, Server::User);
            let header = with_edit(
                delivery(&st, g, number, me.jid.device, &id, t, attrs.kind),
                &attrs,
            );
            Some((pn, target(&st, &d)?, header))
        }) else {
            continue;
        };
        let mut children = Vec::with_capacity(2);
        if !has_key.contains(&d.to_string()) {
            let bundle = if me.has_session(&pn).await {
                None
            } else {
                match bundle_of(shared, &d).await {
                    Some(b) => Some(b),
                    None => continue,
                }
            };
            let Ok(ct) = me.encrypt(&pn, bundle.as_ref(), &skdm).await else {
                continue;
            };
            children.push(stanza::enc_node(&ct, None));
            if let Ok(mut st) = shared.state.lock()
                && let Some(p) = st.phones.get_mut(number)
            {
                p.group_keys_sent.insert((gid.to_owned(), d.to_string()));
            }
        }
        let mut sk = enc_for(
            Node::new("enc")
                .attr("v", "2")
                .attr("type", "skmsg")
                .bytes(skmsg.clone()),
            &attrs,
        );
        let corrupt_it = shared.state.lock().is_ok_and(|mut st| {
            let real = matches!(tgt, Target::Real(_));
            take_corruption(&mut st, &pn.user, real)
        });
        if corrupt_it {
            sk = corrupt(sk);
        }
        children.push(sk);
        let node = header.children(children);
        match tgt {
            Target::Sim(n, p) => Box::pin(receive(shared, &n, &p, &me.jid, &node)).await,
            Target::Real(_) => to_device(shared, &pn, id.clone(), node),
        }
    }
    Ok(id)
}

/// A simulated user resends group message `message` to the device that could not read it:
/// the content and its current key pairwise.
pub(super) async fn answer_retry(
    shared: &Shared,
    number: &str,
    peer: &Arc<SimPeer>,
    group: &Jid,
    message: wa::Message,
    req: &stanza::RetryRequest,
) {
    let Ok(distribution) = peer.group_distribution(&group.to_string()).await else {
        return;
    };
    let mut m = message;
    m.sender_key_distribution_message = Some(wa::SenderKeyDistributionMessage {
        group_id: Some(group.to_string()),
        axolotl_sender_key_distribution_message: Some(distribution),
    });
    let Some(pn) = shared.state.lock().ok().and_then(|st| {
        Some(Jid::with_device(
            number_of(&st, &req.from)?,
            req.from.device,
            Server::User,
        ))
    }) else {
        return;
    };
    let bundle = match &req.keys {
        Some(k) => Some(k.clone()),
        None if !peer.has_session(&pn).await => bundle_of(shared, &req.from).await,
        None => None,
    };
    let Ok(ct) = peer.encrypt(&pn, bundle.as_ref(), &m).await else {
        return;
    };
    let t = shared.clock.now_unix();
    let Some(header) = shared.state.lock().ok().and_then(|st| {
        let g = st.groups.get(&group.user)?;
        Some(delivery(
            &st,
            g,
            number,
            peer.jid.device,
            &req.id,
            req.t.as_deref().and_then(|t| t.parse().ok()).unwrap_or(t),
            "text",
        ))
    }) else {
        return;
    };
    let node = header.children(vec![stanza::enc_node(&ct, Some(req.count))]);
    to_device(shared, &pn, req.id.clone(), node);
}

/// Parses the control API's group creation into a group.
pub(super) fn create_from_api(
    shared: &Shared,
    subject: &str,
    creator: &str,
    participants: &[String],
    mode: AddressingMode,
) -> Result<Jid, SimError> {
    let t = shared.clock.now_unix();
    let mut st = shared.state.lock().map_err(|_| SimError::Internal)?;
    create(&mut st, subject, creator, participants, mode, t, None)
}

/// The group's metadata (for tests and the control API).
pub(super) fn group_info(shared: &Shared, gid: &str) -> Option<GroupInfo> {
    let st = shared.state.lock().ok()?;
    let g = st.groups.get(gid)?;
    // Round-trip through the wire form: what a client would read.
    parse_group(&group_node(&info(&st, g)))
}

/// A real device's receipt about a group message: it answers the device's queue and goes to
/// the author's device (`participant`) as `<receipt from=<group> participant=<reader>>`; a
/// retry addressed to a simulated author is answered by it.
pub(super) async fn on_receipt(
    shared: &Shared,
    dev: &Device,
    node: &Node,
    group: &Jid,
    kind: Option<&str>,
    ids: &[String],
) {
    let key = dev.jid.to_string();
    let t = shared.clock.now_unix();
    let Some(author) = node.get_jid("participant") else {
        if let Ok(mut st) = shared.state.lock() {
            answered(&mut st, &key, ids);
        }
        return;
    };
    let for_sim = {
        let Ok(mut st) = shared.state.lock() else {
            return;
        };
        let st = &mut *st;
        answered(st, &key, ids);
        if matches!(kind, Some("sender" | "peer_msg")) {
            return;
        }
        let Some(g) = st.groups.get(&group.user).cloned() else {
            return;
        };
        let Some(author_number) = number_of(st, &author) else {
            return;
        };
        if matches!(kind, Some("read" | "read-self"))
            && let Some(p) = st.phones.get_mut(&author_number)
        {
            for id in ids {
                p.read.insert(id.clone());
            }
            if p.read.len() > INBOX_KEPT {
                p.read.clear();
            }
        }
        let reader = named(st, &dev.jid.user, dev.jid.device, g.mode).unwrap_or(dev.jid.clone());
        let first = ids.first().cloned().unwrap_or_default();
        let mut fwd = Node::new("receipt")
            .attr("from", g.jid())
            .attr("participant", reader)
            .attr("id", first.clone())
            .attr("t", t.to_string());
        if let Some(k) = kind {
            fwd = fwd.attr("type", k.to_owned());
        }
        let fwd = fwd.children(node.child_nodes().to_vec());
        let retry = kind == Some("retry");
        if author.device > 0 || retry {
            match target(st, &author) {
                Some(Target::Real(k)) => {
                    enqueue(st, &k, first, fwd);
                    None
                }
                Some(Target::Sim(n, peer)) if retry => {
                    let sent = st.phones.get(&n).and_then(|p| {
                        p.sent
                            .iter()
                            .find(|(id, chat, _)| *id == first && chat == group)
                            .map(|(_, _, m)| m.clone())
                    });
                    sent.map(|m| (n, peer, m))
                }
                _ => None,
            }
        } else {
            for k in st
                .linked_devices(&author_number)
                .iter()
                .map(|j| j.to_string())
            {
                if k != key {
                    enqueue(st, &k, first.clone(), fwd.clone());
                }
            }
            None
        }
    };
    if let Some((number, peer, message)) = for_sim {
        let mut asked = node.clone();
        asked.attrs.retain(|(k, _)| k != "from");
        if let Some(req) = stanza::parse_retry(&asked.attr("from", dev.jid.clone()))
            && req.count < stanza::MAX_RETRIES
        {
            answer_retry(shared, &number, &peer, group, message, &req).await;
        }
    }
}
