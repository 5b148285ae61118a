//! One simulated server connection: the Noise handshake, then the ClientPayload check, then a
//! new device goes to QR pairing (`register.rs`) and a known one to its logged-in session
//! (`session.rs`). The shared state lives in `server.rs`.

use std::sync::Arc;

use prost::Message;

use super::server::Shared;
use super::session::failure;
use crate::proto::wa::ClientPayload;
use crate::proto::wa::client_payload::DevicePairingRegistrationData;
use crate::signal::curve::with_type;
use crate::signal::xeddsa_verify;
use crate::socket::accept;
use crate::socket::framing::MAX_FRAME;

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
            Some(identity) => {
                super::register::register(shared, sender, incoming, acc.client_static, identity)
                    .await
            }
            None => {
                let _ = sender.send(&failure(400)).await;
            }
        },
        (None, Some(user), Some(device)) => {
            super::session::login(shared, sender, incoming, acc.client_static, user, device).await
        }
        _ => {
            let _ = sender.send(&failure(400)).await;
        }
    }
}
