//! One simulated server connection: check the ClientPayload, then either run QR pairing for a new
//! device or serve a logged-in one (its iqs, receipts, faults). The shared state lives in
//! `server.rs`.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::{mpsc, oneshot};

use super::iq;
use super::pair::{IssuedPairing, issue_pair_success_with, verify_pair_device_sign};
use super::phone::{initial_history, initial_setting_sync};
use super::server::{
    Companion, Control, Device, MAX_DEVICE_ID, MAX_REGISTRATIONS, Scan, Shared, SimError,
};
use crate::binary::{Jid, Node, Server};
use crate::proto::wa::ClientPayload;
use crate::proto::wa::client_payload::DevicePairingRegistrationData;
use crate::signal::curve::with_type;
use crate::signal::xeddsa_verify;
use crate::socket::framing::MAX_FRAME;
use crate::socket::{Incoming, NodeSender, accept};

/// How long a new device has to acknowledge the pair-device offer before the stream closes.
const PAIR_DEVICE_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// First ref is shown 60 s, each later one 20 s (WhatsApp Web `PairDevice.js` per PROTOCOL.md).
const REF_TIMINGS: [u64; 6] = [60, 20, 20, 20, 20, 20];

fn iq_id() -> String {
    format!("{}{}", crate::util::ids::iq_prefix(), rand::random::<u8>())
}

/// Whether a registration's keys are well formed and its signed prekey is signed by its identity.
fn valid_registration(r: &DevicePairingRegistrationData) -> Option<[u8; 32]> {
    let ident: [u8; 32] = r.e_ident.as_deref()?.try_into().ok()?;
    let skey: [u8; 32] = r.e_skey_val.as_deref()?.try_into().ok()?;
    let sig: [u8; 64] = r.e_skey_sig.as_deref()?.try_into().ok()?;
    let ok = r.e_keytype.as_deref() == Some(&[5])
        && r.e_regid.as_ref().is_some_and(|v| v.len() == 4)
        && r.e_skey_id.as_ref().is_some_and(|v| v.len() == 3)
        && r.build_hash.as_ref().is_some_and(|v| v.len() == 16)
        && xeddsa_verify(&ident, &with_type(&skey), &sig);
    ok.then_some(ident)
}

/// The phone's first peer messages to a companion that just published its keys (once per
/// device): its security-notification setting, then the initial history bootstrap.
async fn greet(shared: &Shared, dev: &Device, key: &str) -> Vec<Node> {
    let Some((phone, signal, bundle, one_time)) = (|| {
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
        Some((
            phone.account.clone(),
            phone.signal.clone(),
            bundle,
            one_time,
        ))
    })() else {
        return Vec::new();
    };
    let now = shared.clock.now_unix();
    let mut out = Vec::new();
    for message in [initial_setting_sync(), initial_history(&phone, now)] {
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
            Ok(node) => out.push(node),
            Err(e) => {
                tracing::warn!(error = %e, "simulated phone cannot encrypt for its companion");
                break;
            }
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
        "usync" if get => super::usync::answer(node, id, |user| {
            let st = shared.state.lock().ok()?;
            let phone = &st.phone_by_user(user)?.account;
            let devices = std::iter::once(0)
                .chain(st.linked_devices(&phone.number).iter().map(|j| j.device))
                .collect();
            Some(super::usync::UserInfo {
                number: phone.number.clone(),
                lid: phone.lid.clone(),
                devices,
            })
        }),
        "abt" => iq::ab_props(id),
        "w:sync:app:state" if !get => iq::app_state(node, id),
        "privacy" if get => iq::privacy(id),
        "blocklist" if get => iq::blocklist(id),
        _ => iq::error(id, 501, "feature-not-implemented"),
    }
}

fn failure(reason: u16) -> Node {
    Node::new("failure")
        .attr("reason", reason.to_string())
        .attr("location", "sim")
}

/// Serves one client connection (plain TCP, or TLS already accepted). `permit` is the
/// connection's handshake slot, given back once the Noise handshake is over.
pub(super) async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let accepted = accept(stream, &shared.identity, MAX_FRAME).await;
    drop(permit);
    let Ok(acc) = accepted else {
        return;
    };
    if let Ok(mut st) = shared.state.lock() {
        st.accepted += 1;
    }
    let Ok(payload) = ClientPayload::decode(&acc.payload[..]) else {
        let _ = acc.socket.sender.send(&failure(400)).await;
        return;
    };
    let (sender, incoming) = (acc.socket.sender, acc.socket.incoming);
    let min = shared.state.lock().ok().and_then(|st| st.min_version);
    let version = payload
        .user_agent
        .as_ref()
        .and_then(|u| u.app_version.as_ref())
        .map(|v| {
            [
                v.primary.unwrap_or(0),
                v.secondary.unwrap_or(0),
                v.tertiary.unwrap_or(0),
            ]
        });
    if let Some(min) = min
        && version.is_none_or(|v| v < min)
    {
        // Client outdated (whatsmeow ConnectFailureReason 405).
        let _ = sender.send(&failure(405)).await;
        return;
    }
    match (
        &payload.device_pairing_data,
        payload.username,
        payload.device,
    ) {
        (Some(reg), None, _) => match valid_registration(reg) {
            Some(identity) => register(shared, sender, incoming, acc.client_static, identity).await,
            None => {
                let _ = sender.send(&failure(400)).await;
            }
        },
        (None, Some(user), Some(device)) => {
            login(shared, sender, incoming, acc.client_static, user, device).await
        }
        _ => {
            let _ = sender.send(&failure(400)).await;
        }
    }
}

/// A new device: offer refs, wait for a scan, run pair-success, then force the 515 restart.
async fn register(
    shared: Arc<Shared>,
    sender: NodeSender,
    mut incoming: mpsc::Receiver<Incoming>,
    noise_public: [u8; 32],
    identity_public: [u8; 32],
) {
    let refs: Vec<String> = (0..REF_TIMINGS.len())
        .map(|_| {
            use base64::Engine;
            let r: [u8; 36] = std::array::from_fn(|_| rand::random());
            format!("2@{}", base64::engine::general_purpose::STANDARD.encode(r))
        })
        .collect();
    let (scan_tx, mut scan_rx) = mpsc::channel::<Scan>(1);
    let admitted = shared.state.lock().is_ok_and(|mut st| {
        if st.registrations >= MAX_REGISTRATIONS {
            return false;
        }
        st.registrations += 1;
        for r in &refs {
            st.showing.insert(r.clone(), scan_tx.clone());
        }
        true
    });
    drop(scan_tx);
    if !admitted {
        let _ = sender
            .send(&Node::new("stream:error").attr("code", "503"))
            .await;
        return;
    }
    let offer_id = iq_id();
    let offer = Node::new("iq")
        .attr("from", Jid::server_jid())
        .attr("type", "set")
        .attr("id", offer_id.clone())
        .attr("xmlns", "md")
        .children(vec![
            Node::new("pair-device").children(
                refs.iter()
                    .map(|r| Node::new("ref").bytes(r.clone().into_bytes()))
                    .collect(),
            ),
        ]);
    let cleanup = |shared: &Shared| {
        if let Ok(mut st) = shared.state.lock() {
            st.registrations -= 1;
            for r in &refs {
                st.showing.remove(r);
            }
        }
    };
    if sender.send(&offer).await.is_err() {
        cleanup(&shared);
        return;
    }
    let deadline = tokio::time::sleep(Duration::from_secs(REF_TIMINGS.iter().sum::<u64>() + 5));
    tokio::pin!(deadline);
    // Each ref is scannable only in its own window (plus a little grace for a slow phone).
    let start = tokio::time::Instant::now();
    let expiries: Vec<tokio::time::Instant> = REF_TIMINGS
        .iter()
        .scan(0, |end, t| {
            *end += t;
            Some(start + Duration::from_secs(*end + 5))
        })
        .collect();
    let mut expired = 0usize;
    let ref_expiry = tokio::time::sleep_until(expiries[0]);
    tokio::pin!(ref_expiry);
    // The offer must be acknowledged; scans wait in the channel until it is.
    let ack_deadline = tokio::time::sleep(PAIR_DEVICE_ACK_TIMEOUT);
    tokio::pin!(ack_deadline);
    let mut acked = false;
    let mut pending: Option<(IssuedPairing, oneshot::Sender<Result<Jid, SimError>>)> = None;
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = &mut ref_expiry, if expired < refs.len() => {
                if let Ok(mut st) = shared.state.lock() {
                    st.showing.remove(&refs[expired]);
                }
                expired += 1;
                if let Some(&next) = expiries.get(expired) {
                    ref_expiry.as_mut().reset(next);
                }
            }
            _ = &mut ack_deadline, if !acked => {
                if let Ok(Some(scan)) = tokio::time::timeout(Duration::ZERO, scan_rx.recv()).await {
                    let _ = scan.done.send(Err(SimError::PairingFailed("the companion never acknowledged pair-device".into())));
                }
                break;
            }
            scan = scan_rx.recv(), if pending.is_none() && acked => {
                let Some(scan) = scan else { break };
                if scan.qr.identity_public != identity_public || scan.qr.noise_public != noise_public {
                    let _ = scan.done.send(Err(SimError::PairingFailed("QR keys do not match this connection".into())));
                    continue;
                }
                let (next_device, tamper) = {
                    let Ok(mut st) = shared.state.lock() else { break };
                    let Some(phone) = st.phones.get_mut(&scan.phone.number) else { break };
                    // Device ids (and key indexes) only grow: an unlinked id is never reused.
                    if phone.last_device >= MAX_DEVICE_ID {
                        drop(st);
                        let _ = scan.done.send(Err(SimError::PairingFailed("the phone has no device ids left".into())));
                        continue;
                    }
                    phone.last_device += 1;
                    (phone.last_device, st.tamper.take())
                };
                let (node, issued) = issue_pair_success_with(&scan.phone, &scan.qr, next_device, u32::from(next_device), &iq_id(), shared.clock.now_unix(), tamper);
                if sender.send(&node).await.is_err() {
                    let _ = scan.done.send(Err(SimError::PairingFailed("companion gone".into())));
                    break;
                }
                pending = Some((issued, scan.done));
            }
            ev = incoming.recv() => {
                let Some(Incoming::Node(node)) = ev else { break };
                if node.tag == "iq" && node.get_str("type").as_deref() == Some("result")
                    && node.get_str("id").as_deref() == Some(offer_id.as_str())
                {
                    acked = true;
                    continue;
                }
                let Some((issued, _)) = &pending else { continue };
                if node.tag != "iq" || node.get_str("id").as_deref() != Some(issued.iq_id.as_str()) {
                    continue;
                }
                let Some((issued, done)) = pending.take() else { continue };
                if node.get_str("type").as_deref() == Some("error") {
                    let _ = done.send(Err(SimError::PairingFailed("companion refused pair-success".into())));
                    continue;
                }
                match verify_pair_device_sign(&node, &issued) {
                    Ok(()) => {
                        if let Ok(mut st) = shared.state.lock() {
                            let device = Device { jid: issued.jid.clone(), lid: issued.lid.clone(), noise_public, identity_public };
                            st.companions.insert(issued.jid.to_string(), Companion::new(device));
                        }
                        let _ = done.send(Ok(issued.jid.clone()));
                        // Restart required: the companion reconnects and logs in.
                        let _ = sender.send(&Node::new("stream:error").attr("code", "515")).await;
                        break;
                    }
                    Err(e) => {
                        let _ = done.send(Err(e.into()));
                        break;
                    }
                }
            }
        }
    }
    cleanup(&shared);
}

/// A known device logs in: the noise key must be the one it paired with.
async fn login(
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
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Control>(4);
    // One connection per device: a new login replaces the old one, which is told so.
    let replaced = shared
        .state
        .lock()
        .ok()
        .and_then(|mut st| st.live.insert(key.clone(), ctl_tx.clone()));
    if let Some(old) = replaced {
        let conflict = Node::new("stream:error")
            .children(vec![Node::new("conflict").attr("type", "replaced")]);
        let _ = old.send(Control::Close(Some(conflict))).await;
    }
    let mut answer_pings = true;
    let mut offline_sent = false;
    loop {
        tokio::select! {
            ctl = ctl_rx.recv() => match ctl {
                Some(Control::AnswerPings(on)) => answer_pings = on,
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
                if node.tag == "receipt" {
                    let Some(id) = node.get_str("id").map(|s| s.into_owned()) else { continue };
                    let kind = node.get_str("type").map(|s| s.into_owned());
                    if let Ok(mut st) = shared.state.lock()
                        && let Some(c) = st.companions.get_mut(&key)
                    {
                        c.receipt(id.clone(), kind);
                    }
                    let ack = Node::new("ack").attr("class", "receipt").attr("id", id).attr("from", dev.jid.clone());
                    if sender.send(&ack).await.is_err() {
                        break;
                    }
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
                let result = answer_iq(&shared, &dev, &key, &node, &id);
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
                    let done = Node::new("ib").attr("from", Jid::server_jid()).children(vec![Node::new("offline").attr("count", "0")]);
                    if sender.send(&done).await.is_err() {
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
    }
}
