//! The history bootstrap the phone sends a new companion: what we keep of it so far (progress
//! events and PN ↔ LID pairs).

use prost::Message as _;

use super::Messenger;
use crate::binary::{Jid, Server};
use crate::client::events::Event;
use crate::client::store::CredsStore;
use crate::proto::wa;

/// Mappings read from one history chunk at most.
pub(super) const MAX_HISTORY_MAPPINGS: usize = 100_000;
/// Largest inflated history chunk accepted (WhatsApp's chunks are a few MB).
pub(super) const MAX_HISTORY_BYTES: u64 = 64 << 20;

/// Inflates a zlib history payload into a `HistorySync`, refusing more than
/// [`MAX_HISTORY_BYTES`].
pub(super) fn inflate_history(z: &[u8]) -> Option<wa::HistorySync> {
    use std::io::Read;
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(z)
        .take(MAX_HISTORY_BYTES + 1)
        .read_to_end(&mut plain)
        .ok()?;
    if plain.len() as u64 > MAX_HISTORY_BYTES {
        return None;
    }
    wa::HistorySync::decode(&plain[..]).ok()
}

impl<S: CredsStore> Messenger<S> {
    /// The phone's history bootstrap names PN ↔ LID pairs of our contacts.
    pub(super) async fn learn_from_history(&self, message: &wa::Message) {
        let Some(n) = message
            .protocol_message
            .as_ref()
            .and_then(|p| p.history_sync_notification.as_ref())
        else {
            return;
        };
        self.publish(Event::HistorySync {
            progress: n.progress,
            chunk: n.chunk_order,
        });
        let Some(inline) = n.initial_hist_bootstrap_inline_payload.as_deref() else {
            return;
        };
        let Some(history) = inflate_history(inline) else {
            tracing::warn!("history bootstrap does not inflate to a HistorySync");
            return;
        };
        // The NCT salt, as backfill only (the store decides: CLIENT-FEATURES §1.1).
        if let Some(salt) = history.nct_salt.as_deref().filter(|s| !s.is_empty()) {
            match self.store.backfill_nct_salt(salt).await {
                Ok(applied) => tracing::debug!(applied, "history sync carried an NCT salt"),
                Err(e) => tracing::warn!(error = %e, "cannot store the NCT salt"),
            }
        }
        for m in history
            .phone_number_to_lid_mappings
            .iter()
            .take(MAX_HISTORY_MAPPINGS)
        {
            let (Some(pn), Some(lid)) = (
                m.pn_jid.as_deref().and_then(|j| j.parse::<Jid>().ok()),
                m.lid_jid.as_deref().and_then(|j| j.parse::<Jid>().ok()),
            ) else {
                continue;
            };
            if pn.server == Server::User && lid.server == Server::Lid {
                self.learn(&pn.user, &lid.user).await;
            }
        }
    }
}
