//! Privacy tokens (tctoken): contacts' tokens stored and attached to what we send them, ours
//! issued to contacts we write to (MESSAGING.md §1).

use super::{LID_CACHE, Messenger};
use crate::binary::{Jid, Node};
use crate::client::events::Event;
use crate::client::link::IQ_TIMEOUT;
use crate::client::store::CredsStore;

/// Longest privacy token accepted (WhatsApp's are a few dozen bytes).
pub(super) const MAX_TOKEN_BYTES: usize = 1024;
/// How often we issue our privacy token again to a contact we write to.
pub(super) const TOKEN_REISSUE: u64 = 7 * 86_400;

impl<S: CredsStore> Messenger<S> {
    /// `<notification type="privacy_token" from=X><tokens><token jid t type="trusted_contact">`:
    /// X's token for us, attached to what we send X from now on. False when a token could not
    /// be stored (the notification is then left unacked, and redelivered).
    pub(super) async fn on_privacy_token(&self, node: &Node) -> bool {
        let Some(from) = node.get_jid("from") else {
            return true;
        };
        let contact = self.canonical(&from.to_non_ad()).await;
        let tokens = node
            .child("tokens")
            .map(|t| t.child_nodes().to_vec())
            .unwrap_or_default();
        for tok in tokens.iter().filter(|t| t.tag == "token").take(16) {
            if tok.get_str("type").as_deref() != Some("trusted_contact") {
                continue;
            }
            let (Some(bytes), Some(t)) = (
                tok.content_bytes(),
                tok.get_str("t").and_then(|t| t.parse::<u64>().ok()),
            ) else {
                continue;
            };
            if bytes.len() > MAX_TOKEN_BYTES {
                continue;
            }
            match self.store.set_privacy_token(&contact, bytes, t).await {
                Ok(()) => {
                    // The store keeps the newest; the cache asks it again.
                    if let Ok(mut m) = self.tokens.lock() {
                        m.remove(&contact);
                    }
                    self.publish(Event::PrivacyToken {
                        jid: contact.clone(),
                    })
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot store a privacy token; it will be redelivered");
                    return false;
                }
            }
        }
        true
    }

    /// The token `contact` gave us, through the cache.
    pub(super) async fn token_for(&self, contact: &Jid) -> Option<Vec<u8>> {
        if let Some(t) = self
            .tokens
            .lock()
            .ok()
            .and_then(|m| m.get(contact).cloned())
        {
            return t;
        }
        let t = match self.store.privacy_token(contact).await {
            Ok(t) => t.map(|(tok, _)| tok),
            Err(e) => {
                tracing::warn!(error = %e, "privacy token lookup failed");
                return None;
            }
        };
        if let Ok(mut m) = self.tokens.lock() {
            if m.len() >= LID_CACHE {
                m.clear();
            }
            m.insert(contact.clone(), t.clone());
        }
        t
    }

    /// Issues our token to `contact` (so they may write to us) unless we did within
    /// [`TOKEN_REISSUE`], as WhatsApp Web does after writing to someone.
    pub(super) async fn issue_token(&self, contact: &Jid, wire: &Jid) {
        let now = self.clock.now_unix();
        // Most sends go to contacts we issued to lately: no store round trip for them.
        if let Ok(mut m) = self.issued.lock() {
            if m.get(contact)
                .is_some_and(|t| now.saturating_sub(*t) < TOKEN_REISSUE)
            {
                return;
            }
            if m.len() >= LID_CACHE {
                m.clear();
            }
            m.insert(contact.clone(), now);
        }
        match self.store.set_token_issued(contact, now).await {
            Ok(Some(last)) if now.saturating_sub(last) < TOKEN_REISSUE => {
                // Not yet due: put the earlier time back.
                let _ = self.store.set_token_issued(contact, last).await;
                if let Ok(mut m) = self.issued.lock() {
                    m.insert(contact.clone(), last);
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot record an issued privacy token");
                return;
            }
        }
        let Some(sender) = self.sender() else { return };
        let iq = Node::new("iq")
            .attr("xmlns", "privacy")
            .attr("type", "set")
            .attr("to", Jid::server_jid())
            .children(vec![Node::new("tokens").children(vec![
                Node::new("token")
                    .attr("jid", wire.to_non_ad())
                    .attr("t", now.to_string())
                    .attr("type", "trusted_contact"),
            ])]);
        if let Err(e) = self.link.iq.query(&sender, iq, IQ_TIMEOUT).await {
            tracing::debug!(error = %e, "privacy token not issued");
        }
    }
}
