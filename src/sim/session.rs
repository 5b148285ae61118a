//! A logged-in device's connection on the server side: `<success>`, one connection per device
//! (a newer login replaces the older), iq answers, receipts, faults, the phone's first peer
//! messages after the device publishes its keys, and `<ib><offline>` on going active.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::iq;
use super::phone::{initial_history, initial_setting_sync};
use super::server::{Control, Device, Shared};
use crate::binary::{Jid, Node, Server};
use crate::socket::{Incoming, NodeSender};

/// `<failure reason location>`: the server refuses a login (or a payload) and closes.
pub(super) fn failure(reason: u16) -> Node {
    Node::new("failure")
        .attr("reason", reason.to_string())
        .attr("location", "sim")
}

/// The phone's first peer messages to a companion that just published its keys (once per
/// device): its security-notification setting, the initial history bootstrap, then its
/// app-state sync keys (its collections seeded at the first companion's linking).
async fn greet(shared: &Shared, dev: &Device, key: &str) -> Vec<Node> {
    let now_ms = crate::util::clock::now_ms_i64();
    let Some((phone, signal, bundle, one_time, chunks, fault, share)) = (|| {
        let mut guard = shared.state.lock().ok()?;
        let st = &mut *guard;
        let companion = st.companions.get_mut(key)?;
        let phone = st.phones.get(&dev.jid.user)?;
        let bundle = companion.bundle.clone()?;
        if companion.greeted {
            return None;
        }
        companion.greeted = true;
        // Serving a bundle consumes one of its one-time prekeys, as the real server does.
        let one_time = companion.prekeys.take();
        // Its chat history follows the bootstrap in downloadable chunks (none when empty).
        let chunks = (!phone.history.is_empty()).then(|| phone.history.link_chunks());
        let (account, signal, fault) = (
            (phone.account.clone(), phone.nct_salt.clone()),
            phone.signal.clone(),
            phone.history.fault(),
        );
        let share = super::phone_appstate::key_share(st, &dev.jid.user, now_ms);
        Some((
            account,
            signal,
            bundle,
            one_time,
            chunks.unwrap_or_default(),
            fault,
            share,
        ))
    })() else {
        return Vec::new();
    };
    let ((phone, salt), now) = (phone, shared.clock.now_unix());
    let mut out = Vec::new();
    let mut messages = vec![
        initial_setting_sync(),
        initial_history(&phone, Some(&salt), now),
    ];
    if !chunks.is_empty() {
        let cdn = shared.cdn.clone();
        let uploaded = tokio::task::spawn_blocking(move || {
            chunks
                .iter()
                .map(|c| super::history::upload_chunk(&cdn, c, fault, None))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
        match uploaded {
            Ok(Ok(m)) => messages.extend(m),
            Ok(Err(e)) => tracing::warn!(error = %e, "simulated phone cannot upload its history"),
            Err(e) => tracing::warn!(error = %e, "simulated phone history upload failed"),
        }
    }
    messages.extend(share);
    let mut history_ids = Vec::new();
    for message in messages {
        match signal
            .peer_message(
                &phone,
                &dev.jid,
                &dev.identity_public,
                &bundle,
                one_time,
                &message,
                now,
            )
            .await
        {
            Ok(node) => {
                if let Some(id) = node.get_str("id") {
                    history_ids.push((id.into_owned(), message));
                }
                out.push(node)
            }
            Err(e) => {
                tracing::warn!(error = %e, "simulated phone cannot encrypt for its companion");
                break;
            }
        }
    }
    if let Ok(mut st) = shared.state.lock()
        && let Some(c) = st.companions.get_mut(key)
    {
        for (id, message) in history_ids {
            c.sent_history(id, &message);
        }
    }
    out
}

/// The answer to a logged-in device's iq.
fn answer_iq(shared: &Shared, dev: &Device, key: &str, node: &Node, id: &str) -> Node {
    let xmlns = node
        .get_str("xmlns")
        .map(|s| s.into_owned())
        .unwrap_or_default();
    let get = node.get_str("type").as_deref() == Some("get");
    match xmlns.as_str() {
        "w:p" | "passive" | "urn:xmpp:ping" => iq::result(id, vec![]),
        "encrypt" => {
            let Ok(mut st) = shared.state.lock() else {
                return iq::error(id, 500, "internal-server-error");
            };
            // Unlinked while this connection was being closed.
            let Some(c) = st.companions.get_mut(key) else {
                return iq::error(id, 401, "not-authorized");
            };
            if get && node.child("count").is_some() {
                iq::result(
                    id,
                    vec![Node::new("count").attr("value", c.prekeys.len().to_string())],
                )
            } else if get && node.child("digest").is_some() {
                let ids: Vec<u32> = c.prekeys.ids().collect();
                iq::digest(id, &dev.identity_public, c.bundle.as_ref(), &ids)
            } else if !get && node.child("list").is_some() {
                let Some(up) = iq::validate_upload(node, &dev.identity_public) else {
                    return iq::error(id, 400, "bad-request");
                };
                c.prekeys.add(up.keys);
                c.bundle = Some(up.bundle);
                iq::result(id, vec![])
            } else {
                iq::error(id, 501, "feature-not-implemented")
            }
        }
        "usync" if get => super::usync::answer(node, id, |jid| {
            let st = shared.state.lock().ok()?;
            // Users exist once something used them (a scan, the control API); other numbers
            // are not on WhatsApp.
            let number = match jid.server {
                Server::Lid => st.lids.get(&jid.user)?.clone(),
                _ => jid.user.clone(),
            };
            let phone = &st.phones.get(&number)?.account;
            Some(super::usync::UserInfo {
                number: phone.number.clone(),
                lid: phone.lid.clone(),
                devices: super::groups::user_devices(&st, &phone.number),
            })
        }),
        "md" if !get => {
            // A companion unlinks itself (or another device of the same account).
            let Some(target) = node
                .child("remove-companion-device")
                .and_then(|r| r.get_jid("jid"))
            else {
                return iq::error(id, 400, "bad-request");
            };
            if target.user != dev.jid.user || target.device == 0 {
                return iq::error(id, 403, "forbidden");
            }
            let Ok(mut st) = shared.state.lock() else {
                return iq::error(id, 500, "internal-server-error");
            };
            let k = target.to_string();
            st.companions.remove(&k);
            st.queues.remove(&k);
            iq::result(id, vec![])
        }
        "w:mex" if get => {
            // WhatsApp's GraphQL channel: of its queries, the account's reach-out time-lock
            // and its new-chat message capping.
            let query = crate::stanza::mex::query_id(node);
            let Ok(st) = shared.state.lock() else {
                return iq::error(id, 500, "internal-server-error");
            };
            let phone = st.phones.get(&dev.jid.user);
            match query.as_deref() {
                Some(crate::stanza::mex::TIMELOCK_QUERY_ID) => {
                    let lock = phone
                        .map(super::server::timelock)
                        .unwrap_or_else(super::server::timelock_off);
                    crate::stanza::mex::timelock_result(id, &lock)
                }
                // An account the cap does not apply to gets an empty object (every field
                // absent), as WhatsApp omits what does not apply.
                Some(crate::stanza::mex::CAPPING_QUERY_ID) => crate::stanza::mex::capping_result(
                    id,
                    &phone.and_then(|p| p.capping.clone()).unwrap_or_default(),
                ),
                _ => iq::error(id, 400, "bad-request"),
            }
        }
        // Upload auth and the CDN's host (whatsmeow `queryMediaConn`, Baileys
        // `refreshMediaConn`: type set, one `<media_conn/>` child); other shapes are refused.
        "w:m" => {
            let asks = node
                .child_nodes()
                .first()
                .is_some_and(|c| c.tag == "media_conn");
            if get || node.get_str("type").as_deref() != Some("set") || !asks {
                return iq::error(id, 400, "bad-request");
            }
            crate::stanza::media::media_conn_result(id, &shared.cdn.media_conn(key))
        }
        "abt" => iq::ab_props(id),
        "w:sync:app:state" if !get => {
            super::phone_appstate::answer_iq(shared, key, &dev.jid.user, node, id)
        }
        "privacy" if get => iq::privacy(id),
        "privacy" => {
            // Our device issues its account's token to contacts.
            let Ok(mut st) = shared.state.lock() else {
                return iq::error(id, 500, "internal-server-error");
            };
            let now = shared.clock.now_unix();
            let holders: Vec<String> = node
                .child("tokens")
                .map(|t| {
                    t.child_nodes()
                        .iter()
                        .filter(|t| t.get_str("type").as_deref() == Some("trusted_contact"))
                        .filter_map(|t| t.get_jid("jid"))
                        .filter_map(|j| match j.server {
                            Server::Lid => st.lids.get(&j.user).cloned(),
                            _ => Some(j.user),
                        })
                        .take(64)
                        .collect()
                })
                .unwrap_or_default();
            let t = node
                .child("tokens")
                .and_then(|t| t.child("token"))
                .and_then(|t| t.get_str("t"))
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(now);
            for h in holders {
                if st.token_issues.len() >= super::server::ISSUES_KEPT {
                    st.token_issues.pop_front();
                }
                st.token_issues
                    .push_back((dev.jid.user.clone(), h.clone(), t));
                super::route::issue_token(&mut st, &dev.jid.user, &h, now);
            }
            iq::result(id, vec![])
        }
        "blocklist" if get => iq::blocklist(id),
        _ => iq::error(id, 501, "feature-not-implemented"),
    }
}

/// Whether an encrypt iq asks for other devices' keys (`<key><user jid>…`).
fn get_keys(node: &Node) -> bool {
    node.get_str("type").as_deref() == Some("get") && node.child("key").is_some()
}

/// Most devices whose keys one iq may ask for.
const MAX_KEY_USERS: usize = 1024;

/// The bundles of the asked devices; `<error code="406">` for unknown ones (a bare user JID
/// means its device 0).
async fn fetch_keys(shared: &Shared, node: &Node, id: &str) -> Node {
    let users: Vec<Jid> = node
        .child("key")
        .map(|k| {
            k.child_nodes()
                .iter()
                .filter(|u| u.tag == "user")
                .filter_map(|u| u.get_jid("jid"))
                .take(MAX_KEY_USERS)
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::with_capacity(users.len());
    for jid in users {
        let n = Node::new("user").attr("jid", jid.clone());
        out.push(match super::deliver::bundle_of(shared, &jid).await {
            Some(b) => n.children(iq::bundle_nodes(&b)),
            None => n.children(vec![
                Node::new("error")
                    .attr("code", "406")
                    .attr("text", "not-acceptable"),
            ]),
        });
    }
    iq::result(id, vec![Node::new("list").children(out)])
}

/// A known device logs in: the noise key must be the one it paired with.
pub(super) async fn login(
    shared: Arc<Shared>,
    sender: NodeSender,
    mut incoming: mpsc::Receiver<Incoming>,
    noise_public: [u8; 32],
    user: u64,
    device: u32,
) {
    let key = u16::try_from(device)
        .map(|d| Jid::with_device(user.to_string(), d, Server::User).to_string())
        .unwrap_or_default();
    let known = shared.state.lock().ok().and_then(|st| {
        st.companions
            .get(&key)
            .filter(|c| c.device.noise_public == noise_public)
            .map(|c| c.device.clone())
    });
    let Some(dev) = known else {
        let _ = sender.send(&failure(401)).await;
        return;
    };
    let success = Node::new("success")
        .attr("t", shared.clock.now_unix().to_string())
        .attr("lid", Jid::new(dev.lid.user.clone(), Server::Lid))
        .attr("location", "sim");
    if sender.send(&success).await.is_err() {
        return;
    }
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel::<Control>();
    // One connection per device: a new login replaces the old one, which is told so.
    let replaced = shared
        .state
        .lock()
        .ok()
        .and_then(|mut st| st.live.insert(key.clone(), ctl_tx.clone()));
    if let Some(old) = replaced {
        let conflict = Node::new("stream:error")
            .children(vec![Node::new("conflict").attr("type", "replaced")]);
        let _ = old.send(Control::Close(Some(conflict)));
    }
    let mut answer_pings = true;
    let mut offline_sent = false;
    loop {
        tokio::select! {
            ctl = ctl_rx.recv() => match ctl {
                Some(Control::AnswerPings(on)) => answer_pings = on,
                Some(Control::Deliver(node)) => {
                    if sender.send(&node).await.is_err() {
                        break;
                    }
                }
                Some(Control::Close(node)) => {
                    if let Some(n) = node {
                        let _ = sender.send(&n).await;
                    }
                    break;
                }
                None => break,
            },
            ev = incoming.recv() => {
                let Some(Incoming::Node(node)) = ev else { break };
                if node.tag == "message" {
                    if let Some(ack) = super::accept::accept_message(&shared, &dev, &node).await
                        && sender.send(&ack).await.is_err()
                    {
                        break;
                    }
                    continue;
                }
                if node.tag == "ack" {
                    super::accept::on_ack(&shared, &dev, &node);
                    continue;
                }
                if node.tag == "receipt" {
                    let Some(id) = node.get_str("id").map(|s| s.into_owned()) else { continue };
                    let kind = node.get_str("type").map(|s| s.into_owned());
                    if let Ok(mut st) = shared.state.lock()
                        && let Some(c) = st.companions.get_mut(&key)
                    {
                        c.receipt(id.clone(), kind);
                    }
                    super::accept::on_receipt(&shared, &dev, &node).await;
                    let ack = Node::new("ack").attr("class", "receipt").attr("id", id).attr("from", dev.jid.clone());
                    if sender.send(&ack).await.is_err() {
                        break;
                    }
                    continue;
                }
                if node.tag == "ib" {
                    // offline_batch requests: everything queued was already sent.
                    continue;
                }
                if node.tag != "iq" {
                    continue;
                }
                let Some(id) = node.get_str("id").map(|s| s.into_owned()) else { continue };
                if matches!(node.get_str("type").as_deref(), Some("result" | "error")) {
                    continue;
                }
                if node.get_str("xmlns").as_deref() == Some("w:p") && !answer_pings {
                    continue;
                }
                let result = if node.get_str("xmlns").as_deref() == Some("encrypt") && get_keys(&node) {
                    fetch_keys(&shared, &node, &id).await
                } else if node.get_str("xmlns").as_deref() == Some("w:g2") {
                    super::groups::answer_iq(&shared, &dev, &node, &id).await
                } else {
                    answer_iq(&shared, &dev, &key, &node, &id)
                };
                if sender.send(&result).await.is_err() {
                    break;
                }
                // With keys on the server, the phone opens a session and greets its new companion.
                if node.get_str("xmlns").as_deref() == Some("encrypt") && node.child("list").is_some() {
                    let mut gone = false;
                    for msg in greet(&shared, &dev, &key).await {
                        gone |= sender.send(&msg).await.is_err();
                    }
                    if gone {
                        break;
                    }
                }
                // Going active releases what was queued while the device was away, then says so.
                if node.get_str("xmlns").as_deref() == Some("passive") && node.child("active").is_some() && !offline_sent {
                    offline_sent = true;
                    let queued = shared.state.lock().map(|mut st| super::deliver::flush(&mut st, &key)).unwrap_or_default();
                    let mut out = Vec::with_capacity(queued.len() + 2);
                    if !queued.is_empty() {
                        let count = |tag: &str| queued.iter().filter(|n| n.tag == tag).count().to_string();
                        out.push(Node::new("ib").attr("from", Jid::server_jid()).children(vec![
                            Node::new("offline_preview")
                                .attr("count", queued.len().to_string())
                                .attr("message", count("message"))
                                .attr("receipt", count("receipt"))
                                .attr("notification", count("notification"))
                                .attr("appdata", "0"),
                        ]));
                    }
                    let n = queued.len();
                    out.extend(queued);
                    out.push(Node::new("ib").attr("from", Jid::server_jid()).children(vec![Node::new("offline").attr("count", n.to_string())]));
                    let mut gone = false;
                    for o in &out {
                        gone |= sender.send(o).await.is_err();
                    }
                    if gone {
                        break;
                    }
                }
            }
        }
    }
    if let Ok(mut st) = shared.state.lock()
        && st.live.get(&key).is_some_and(|c| c.same_channel(&ctl_tx))
    {
        st.live.remove(&key);
        st.online.remove(&key);
    }
}
