//! Peer messages: protocol messages one of our devices sends our own primary phone (app-state
//! key requests, fatal-recovery requests, on-demand history), encrypted for the phone's device
//! 0 only, `category="peer"` (CLIENT-FEATURES §5.4; whatsmeow `preparePeerMessageNode`).

use prost::Message as _;

use super::{Messenger, SendError};
use crate::binary::{Jid, Server};
use crate::client::store::CredsStore;
use crate::proto::wa;
use crate::signal::store::ApplyChanges;
use crate::stanza;

/// The stanza attributes a peer message carries beyond id, to, type and category: key
/// requests wake the phone (`push_priority="high"`), history requests even in power saving
/// (`high_force`, privacy-sensitive) (whatsmeow `preparePeerMessageNode`).
fn priority(message: &wa::Message) -> &'static [(&'static str, &'static str)] {
    let Some(p) = message.protocol_message.as_ref() else {
        return &[];
    };
    if p.r#type == Some(wa::protocol_message::Type::AppStateSyncKeyRequest as i32) {
        return &[("push_priority", "high")];
    }
    let history = p
        .peer_data_operation_request_message
        .as_ref()
        .and_then(|r| r.peer_data_operation_request_type)
        == Some(wa::PeerDataOperationRequestType::HistorySyncOnDemand as i32);
    if history {
        &[("push_priority", "high_force"), ("privacy_sensitive", "1")]
    } else {
        &[]
    }
}

impl<S: CredsStore> Messenger<S> {
    /// Sends `message` to our primary phone; returns the stanza id. The phone answers, if it
    /// does, with a message of its own (a key share, a recovery copy, a history chunk).
    ///
    /// Addressed to our own LID once we have one, else our phone number (Appendix A, "peer
    /// message `to`": WA Web per whatsapp-rust, once LID-migrated; whatsmeow and Baileys use the
    /// PN); either way the session is the phone's LID device 0, where sessions are kept.
    pub(super) async fn send_peer(&self, message: &wa::Message) -> Result<String, SendError> {
        let account = self.account().ok_or(SendError::NotConnected)?;
        let sender = self.sender().ok_or(SendError::NotConnected)?;
        let me = &account.me;
        // A LID-addressed DM this account cannot send (400: not migrated) goes by number.
        let pn_only = self.pn_only.load(std::sync::atomic::Ordering::Relaxed);
        let to = match (&me.lid, pn_only) {
            (Some(lid), false) => Jid::new(lid.user.clone(), Server::Lid),
            _ => me.jid.to_non_ad(),
        };
        let phone = Jid::with_device(to.user.clone(), 0, to.server.clone());
        let plain = message.encode_to_vec();
        let (mut encs, changes, locks) = self.encrypt_for(&sender, &[(phone, &plain[..])]).await?;
        let Some((_, ct)) = encs.pop() else {
            return Err(SendError::NotOnWhatsApp(to.to_string()));
        };
        // The advance lands before the stanza leaves: a ratchet key is never used twice.
        self.cipher
            .store()
            .apply(&changes)
            .await
            .map_err(crate::signal::SignalError::from)?;
        drop(locks);
        let id = stanza::message_id(self.clock.now_unix(), &me.jid.user);
        let node = stanza::peer_stanza(&id, &to, &ct, &me.signed_identity, priority(message));
        sender
            .send(&node)
            .await
            .map_err(|_| SendError::NotConnected)?;
        Ok(id)
    }
}
