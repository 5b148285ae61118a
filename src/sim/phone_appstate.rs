//! The account's app state in motion (CLIENT-FEATURES §3): a device's `w:sync:app:state` iq,
//! answered from the account's collections (`appstate.rs`), and the `server_sync`
//! notification to the account's other devices after an upload; the phone's seed at its first
//! companion's linking, its key share to each new companion, its answers to key requests and
//! to fatal-recovery requests (peer messages from its own devices), and its own changes
//! (the control API's actions).

use std::io::Write as _;

use prost::Message as _;

use super::appstate::{Accepted, PhoneAction, collection_index, push_name};
use super::deliver::{enqueue, real_bundle, to_device};
use super::error::SimError;
use super::server::{Shared, State};
use crate::binary::{Jid, Node, Server};
use crate::proto::wa;
use crate::proto::wa::protocol_message::Type as ProtocolType;

/// Contacts the phone seeds besides the other simulated users it knows.
const SEED_CONTACTS: usize = 8;

/// Numbers of the two contacts every seeded phone has, created on the simulator as users.
const SEED_NUMBERS: [&str; 2] = ["19995550101", "19995550102"];

/// Seeds `number`'s collections unless done: a few contacts (name, PN and LID), the push
/// name, and an `nct_salt_sync` SET with a fresh random salt (CLIENT-FEATURES §1.1).
pub(super) fn ensure_seeded(st: &mut State, number: &str, now_ms: i64) {
    if st.phones.get(number).is_none_or(|p| p.app_state.seeded()) {
        return;
    }
    // Contact users exist on the simulator, with their LIDs (as usync would show them).
    for n in SEED_NUMBERS {
        if n != number {
            st.phone(n, None);
        }
    }
    let mut others: Vec<(String, String, Option<String>)> = st
        .phones
        .values()
        .filter(|p| p.account.number != number)
        .map(|p| {
            (
                p.account.number.clone(),
                p.account.lid.clone(),
                p.account.push_name.clone(),
            )
        })
        .collect();
    others.sort();
    others.truncate(SEED_CONTACTS);
    let mut muts = Vec::new();
    for (n, lid, name) in others {
        let tail = &n[n.len().saturating_sub(4)..];
        let full = name.unwrap_or_else(|| format!("Contact {tail}"));
        let first = full.split(' ').next().map(str::to_owned);
        muts.push(
            PhoneAction::Contact {
                jid: Jid::new(n.clone(), Server::User),
                full_name: full,
                first_name: first,
                lid: Some(Jid::new(lid, Server::Lid)),
            }
            .mutations(),
        );
    }
    let Some(phone) = st.phones.get_mut(number) else {
        return;
    };
    let mut seed: Vec<(
        crate::appstate::Collection,
        crate::appstate::PendingMutation,
    )> = muts
        .into_iter()
        .flat_map(|(ci, ms)| ms.into_iter().map(move |m| (ci, m)))
        .collect();
    if let Some(name) = &phone.account.push_name {
        seed.push(push_name(name));
    }
    // The account's one salt: the same the history bootstrap carries (`Phone::nct_salt`).
    let (ci, ms) = PhoneAction::NctSalt(Some(phone.nct_salt.clone())).mutations();
    seed.extend(ms.into_iter().map(|m| (ci, m)));
    phone.app_state.seed(seed, now_ms);
}

/// The key share the phone sends a newly linked companion (ProtocolMessage type 6, field 7),
/// its collections seeded first.
pub(super) fn key_share(st: &mut State, number: &str, now_ms: i64) -> Option<wa::Message> {
    ensure_seeded(st, number, now_ms);
    let phone = st.phones.get_mut(number)?;
    phone.app_state.ensure_key(now_ms);
    Some(share_of(
        phone
            .app_state
            .keys()
            .iter()
            .map(|k| k.to_proto())
            .collect(),
    ))
}

fn share_of(keys: Vec<wa::AppStateSyncKey>) -> wa::Message {
    wa::Message {
        protocol_message: Some(Box::new(wa::ProtocolMessage {
            r#type: Some(ProtocolType::AppStateSyncKeyShare as i32),
            app_state_sync_key_share: Some(wa::AppStateSyncKeyShare { keys }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// `<notification type="server_sync"><collection name version/>…</notification>`.
fn server_sync(changed: &[Accepted], t: u64) -> (String, Node) {
    let id = crate::util::ids::phone_message_id();
    let collections: Vec<(String, u64)> = changed
        .iter()
        .map(|a| (a.name.to_owned(), a.version))
        .collect();
    let node = crate::stanza::appstate::server_sync_notification(&id, t, &collections);
    (id, node)
}

/// Tells `number`'s linked devices but `except` that collections changed (queued for those
/// offline, as every notification).
fn announce(st: &mut State, number: &str, except: Option<&str>, changed: &[Accepted], t: u64) {
    if changed.is_empty() {
        return;
    }
    let keys: Vec<String> = st
        .companions
        .iter()
        .filter(|(k, c)| c.device.jid.user == number && Some(k.as_str()) != except)
        .map(|(k, _)| k.clone())
        .collect();
    for k in keys {
        let (id, node) = server_sync(changed, t);
        enqueue(st, &k, id, node);
    }
}

/// Answers a device's `<iq xmlns="w:sync:app:state" type="set">` and tells the account's
/// other devices what it changed.
pub(super) fn answer_iq(
    shared: &Shared,
    dev_key: &str,
    number: &str,
    node: &Node,
    id: &str,
) -> Node {
    let Ok(mut guard) = shared.state.lock() else {
        return super::iq::error(id, 500, "internal-server-error");
    };
    let st = &mut *guard;
    let now = shared.clock.now_unix();
    ensure_seeded(st, number, now_ms(now));
    let Some(phone) = st.phones.get_mut(number) else {
        return super::iq::error(id, 404, "item-not-found");
    };
    let (answer, changed) = phone.app_state.answer(node, id, &shared.cdn);
    announce(st, number, Some(dev_key), &changed, now);
    answer
}

fn now_ms(unix: u64) -> i64 {
    i64::try_from(unix.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The phone makes a change of its own: encoded as a patch, stored, and announced to every
/// linked device. Returns the collection and its new version.
pub(super) fn phone_action(
    shared: &Shared,
    number: &str,
    action: &PhoneAction,
) -> Result<Accepted, SimError> {
    let mut st = shared.state.lock().map_err(|_| SimError::Internal)?;
    let now = shared.clock.now_unix();
    let ms = crate::util::clock::now_ms_i64();
    st.phone(number, None);
    ensure_seeded(&mut st, number, ms);
    let (c, muts) = action.mutations();
    let ci = collection_index(c.name()).ok_or(SimError::Internal)?;
    let phone = st.phones.get_mut(number).ok_or(SimError::Internal)?;
    let version = phone
        .app_state
        .phone_patch(ci, &muts, ms)
        .ok_or(SimError::TooMany)?;
    let done = Accepted {
        name: super::appstate::COLLECTIONS[ci],
        version,
    };
    announce(&mut st, number, None, std::slice::from_ref(&done), now);
    Ok(done)
}

/// The phone reads a protocol message one of its own companions sent it: a key request is
/// answered with the keys it has of those asked, a fatal-recovery request with the plaintext
/// copy of the collection (both from device 0, as peer messages).
pub(super) async fn on_peer_message(
    shared: &Shared,
    number: &str,
    from: &Jid,
    message: &wa::Message,
) {
    let Some(pm) = message.protocol_message.as_deref() else {
        return;
    };
    let reply = match pm.r#type.and_then(|t| ProtocolType::try_from(t).ok()) {
        Some(ProtocolType::AppStateSyncKeyRequest) => {
            let Some(req) = &pm.app_state_sync_key_request else {
                return;
            };
            let Ok(st) = shared.state.lock() else { return };
            let Some(phone) = st.phones.get(number) else {
                return;
            };
            // Only keys it has; none asked that it has: no answer (whatsmeow waits and
            // times out the same way).
            let keys: Vec<wa::AppStateSyncKey> = phone
                .app_state
                .keys()
                .iter()
                .filter(|k| {
                    req.key_ids
                        .iter()
                        .take(64)
                        .any(|i| i.key_id.as_deref() == Some(&k.id[..]))
                })
                .map(|k| k.to_proto())
                .collect();
            if keys.is_empty() {
                return;
            }
            share_of(keys)
        }
        Some(ProtocolType::PeerDataOperationRequestMessage) => {
            let Some(req) = &pm.peer_data_operation_request_message else {
                return;
            };
            if req.peer_data_operation_request_type
                != Some(
                    wa::PeerDataOperationRequestType::CompanionSyncdSnapshotFatalRecovery as i32,
                )
            {
                return;
            }
            let Some(name) = req
                .syncd_collection_fatal_recovery_request
                .as_ref()
                .and_then(|r| r.collection_name.clone())
                .filter(|n| collection_index(n).is_some())
            else {
                return;
            };
            let Some(rec) = shared
                .state
                .lock()
                .ok()
                .and_then(|st| st.phones.get(number)?.app_state.recovery(&name))
            else {
                return;
            };
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            // Writing to a Vec cannot fail.
            let _ = gz.write_all(&rec.encode_to_vec());
            let snapshot = gz.finish().unwrap_or_default();
            wa::Message {
                protocol_message: Some(Box::new(wa::ProtocolMessage {
                    r#type: Some(ProtocolType::PeerDataOperationRequestResponseMessage as i32),
                    peer_data_operation_request_response_message: Some(
                        wa::PeerDataOperationRequestResponseMessage {
                            peer_data_operation_request_type: req.peer_data_operation_request_type,
                            stanza_id: None,
                            peer_data_operation_result: vec![
                                wa::peer_data_operation_request_response_message::PeerDataOperationResult {
                                    syncd_snapshot_fatal_recovery_response: Some(
                                        wa::peer_data_operation_request_response_message::peer_data_operation_result::SyncDSnapshotFatalRecoveryResponse {
                                            collection_snapshot: Some(snapshot),
                                            is_compressed: Some(true),
                                        },
                                    ),
                                    ..Default::default()
                                },
                            ],
                        },
                    ),
                    ..Default::default()
                })),
                ..Default::default()
            }
        }
        _ => return,
    };
    send_from_phone(shared, number, from, &reply).await;
}

/// The phone (device 0) sends `message` to its companion `to` as a peer message.
async fn send_from_phone(shared: &Shared, number: &str, to: &Jid, message: &wa::Message) {
    let Some((signal, push_name)) = shared.state.lock().ok().and_then(|st| {
        let p = st.phones.get(number)?;
        Some((p.signal.clone(), p.account.push_name.clone()))
    }) else {
        return;
    };
    let to = Jid::with_device(to.user.clone(), to.device, Server::User);
    let bundle = if signal.has_session(&to).await {
        None
    } else {
        real_bundle(shared, &to)
    };
    let ct = match signal.encrypt(&to, bundle.as_ref(), message).await {
        Ok(ct) => ct,
        Err(e) => {
            tracing::warn!(error = %e, "simulated phone cannot encrypt for its companion");
            return;
        }
    };
    let id = crate::util::ids::phone_message_id();
    let mut node = Node::new("message")
        .attr("from", Jid::new(number.to_owned(), Server::User))
        .attr("type", "text")
        .attr("id", id.clone())
        .attr("t", shared.clock.now_unix().to_string())
        .attr("category", "peer");
    if let Some(name) = push_name {
        node = node.attr("notify", name);
    }
    let node = node.children(vec![
        Node::new("enc")
            .attr("v", "2")
            .attr("type", ct.enc_type())
            .bytes(ct.bytes().to_vec()),
    ]);
    to_device(shared, &to, id, node);
}
