//! QR pairing on the server side: offer refs (each scannable in its own window), wait for the
//! pair-device ack, deliver a phone's scan as a pair-success with real signatures, verify the
//! companion's pair-device-sign, record the device and force the 515 restart.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::error::SimError;
use super::pair::{IssuedPairing, issue_pair_success_with, verify_pair_device_sign};
use super::server::{Companion, Device, Scan, Shared};
use crate::binary::{Jid, Node};
use crate::socket::{Incoming, NodeSender};

/// How long a new device has to acknowledge the pair-device offer before the stream closes.
const PAIR_DEVICE_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// First ref is shown 60 s, each later one 20 s (WhatsApp Web `PairDevice.js` per PROTOCOL.md).
const REF_TIMINGS: [u64; 6] = [60, 20, 20, 20, 20, 20];

pub(super) fn iq_id() -> String {
    format!("{}{}", crate::util::ids::iq_prefix(), rand::random::<u8>())
}

/// A new device: offer refs, wait for a scan, run pair-success, then force the 515 restart.
pub(super) async fn register(
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
    let admitted = shared
        .state
        .lock()
        .is_ok_and(|mut st| st.admit_registration(&refs, &scan_tx));
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
    // Each ref stops being scannable when its display window ends (plus a little grace for a
    // slow phone), so a registration holds fewer refs as it ages.
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
                    let Some(next) = phone.next_device() else {
                        drop(st);
                        let _ = scan.done.send(Err(SimError::PairingFailed("the phone has no device ids left".into())));
                        continue;
                    };
                    (next, st.tamper.take())
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
