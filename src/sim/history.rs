//! The simulated phone's chat history (CLIENT-FEATURES §5): what it keeps per chat (seeded
//! through the control API, plus what it sent itself), the downloadable history-sync chunks it
//! sends a newly linked companion after the inline bootstrap (uploaded to the simulated CDN as
//! `md-msg-hist` media: zlib, then the media encryption under `WhatsApp History Keys`), and
//! its answer to an on-demand request (a chunk of older messages of one chat, `ON_DEMAND`).

use std::io::Write;

use prost::Message as _;
use serde::Deserialize;

use super::cdn::Cdn;
use crate::binary::{Jid, Server};
use crate::media::MediaType;
use crate::media::cipher::Encryptor;
use crate::media::keys::expand;
use crate::proto::wa;
use crate::proto::wa::protocol_message::Type as ProtocolType;

/// Most messages one downloadable chunk carries.
pub const CHUNK_MESSAGES: usize = 5_000;
/// Most chats a seed may make, and messages per chat.
pub const MAX_SEED_CHATS: usize = 10_000;
/// Most messages per seeded chat.
pub const MAX_SEED_MESSAGES: usize = 100_000;

/// One chat as the phone keeps it.
#[derive(Debug, Clone, Default)]
pub(super) struct SimChat {
    /// The chat JID as the phone names it (`<number>@s.whatsapp.net`, or a group).
    jid: String,
    /// The contact's LID user, when a 1:1 chat.
    lid: Option<String>,
    name: Option<String>,
    full_name: Option<String>,
    push_name: Option<String>,
    archived: bool,
    /// Pinned at (unix seconds), 0 not pinned.
    pinned: u32,
    /// Muted until (unix ms), 0 not muted.
    mute_end_ms: u64,
    unread: u32,
    marked_unread: bool,
    /// Oldest first.
    messages: Vec<wa::WebMessageInfo>,
}

/// What a phone breaks in the history it sends (tests of the companion's refusals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryFault {
    /// The blob decrypts and verifies, but is no zlib stream.
    BadZlib,
    /// The notification names a file hash the blob does not have.
    WrongHash,
}

/// A phone's chat history.
#[derive(Debug, Default)]
pub struct SimHistory {
    chats: Vec<SimChat>,
    /// At linking, how many newest messages per chat go in the chunks (None: all).
    recent: Option<usize>,
    fault: Option<HistoryFault>,
}

/// What the control API seeds: `chats` chats of `messages` messages each (alternating
/// inbound and outbound, one minute apart, ending now), with flags on the first four chats
/// (0 archived, 1 pinned, 2 muted, 3 three unread and marked unread) and an image in chat 0.
#[derive(Debug, Clone, Deserialize)]
pub struct HistorySeed {
    /// Chats to add.
    pub chats: usize,
    /// Messages per chat.
    pub messages: usize,
    /// At linking, send only this many newest messages per chat (the rest stay on the phone
    /// for on-demand requests); all when absent.
    #[serde(default)]
    pub recent: Option<usize>,
    /// Break the history sent at linking.
    #[serde(default)]
    pub fault: Option<HistoryFault>,
}

/// The contact of seeded chat `i`: its phone number and LID user.
pub fn seeded_contact(i: usize) -> (String, String) {
    (format!("4917{i:08}"), format!("87{i:013}"))
}

fn key(chat: &str, id: String, from_me: bool) -> wa::MessageKey {
    wa::MessageKey {
        remote_jid: Some(chat.to_owned()),
        from_me: Some(from_me),
        id: Some(id),
        participant: None,
    }
}

impl SimHistory {
    /// Adds the chats `seed` describes (ending at `now`, unix seconds).
    pub(super) fn seed(&mut self, seed: &HistorySeed, now: u64) {
        let base = self.chats.len();
        self.recent = seed.recent.or(self.recent);
        if seed.fault.is_some() {
            self.fault = seed.fault;
        }
        let messages = seed.messages.min(MAX_SEED_MESSAGES);
        for i in base..base + seed.chats.min(MAX_SEED_CHATS) {
            let (pn, lid) = seeded_contact(i);
            let jid = format!("{pn}@s.whatsapp.net");
            let mut chat = SimChat {
                jid: jid.clone(),
                lid: Some(lid),
                full_name: Some(format!("Contact {i}")),
                push_name: Some(format!("Push {i}")),
                archived: i == 0,
                pinned: if i == 1 { (now - 60) as u32 } else { 0 },
                mute_end_ms: if i == 2 { (now + 86_400) * 1000 } else { 0 },
                unread: if i == 3 { 3 } else { 0 },
                marked_unread: i == 3,
                ..SimChat::default()
            };
            for j in 0..messages {
                let t = now.saturating_sub(((messages - j) as u64) * 60 + i as u64);
                let from_me = j % 2 == 1;
                let message = if i == 0 && j == 0 {
                    wa::Message {
                        image_message: Some(Box::new(wa::ImageMessage {
                            mimetype: Some("image/jpeg".into()),
                            caption: Some("a photo from the history".into()),
                            file_sha256: Some(vec![1; 32]),
                            file_length: Some(1234),
                            media_key: Some(vec![2; 32]),
                            file_enc_sha256: Some(vec![3; 32]),
                            direct_path: Some(format!("/v/t62.7118-24/hist{i}_n.enc")),
                            width: Some(4),
                            height: Some(3),
                            ..Default::default()
                        })),
                        ..Default::default()
                    }
                } else {
                    wa::Message {
                        conversation: Some(format!("history {i}/{j}")),
                        ..Default::default()
                    }
                };
                chat.messages.push(wa::WebMessageInfo {
                    key: Some(key(&jid, format!("H{i:05}X{j:06}"), from_me)),
                    message: Some(message),
                    message_timestamp: Some(t),
                    status: Some(if from_me {
                        wa::web_message_info::Status::Read as i32
                    } else {
                        wa::web_message_info::Status::DeliveryAck as i32
                    }),
                    push_name: (!from_me).then(|| format!("Push {i}")),
                    ..Default::default()
                });
            }
            self.chats.push(chat);
        }
    }

    /// Keeps a message the phone sent to `chat` (its app shows it in the chat).
    pub(super) fn record_sent(&mut self, chat: &Jid, id: &str, message: &wa::Message, t: u64) {
        let jid = chat.to_non_ad().to_string();
        let i = match self.chats.iter().position(|c| c.jid == jid) {
            Some(i) => i,
            None => {
                self.chats.push(SimChat {
                    jid: jid.clone(),
                    ..SimChat::default()
                });
                self.chats.len() - 1
            }
        };
        let c = &mut self.chats[i];
        c.messages.push(wa::WebMessageInfo {
            key: Some(key(&jid, id.to_owned(), true)),
            message: Some(message.clone()),
            message_timestamp: Some(t),
            status: Some(wa::web_message_info::Status::ServerAck as i32),
            ..Default::default()
        });
        // Bounded like the phone's other logs.
        if c.messages.len() > MAX_SEED_MESSAGES {
            c.messages.remove(0);
        }
    }

    /// Whether there is any history to send.
    pub(super) fn is_empty(&self) -> bool {
        self.chats.is_empty()
    }

    /// The fault to apply to what is sent, if any.
    pub(super) fn fault(&self) -> Option<HistoryFault> {
        self.fault
    }

    fn conversation(c: &SimChat, messages: &[wa::WebMessageInfo]) -> wa::Conversation {
        let lid_jid = c
            .lid
            .as_ref()
            .map(|l| Jid::new(l.clone(), Server::Lid).to_string());
        wa::Conversation {
            id: Some(c.jid.clone()),
            messages: messages
                .iter()
                .enumerate()
                .map(|(i, m)| wa::HistorySyncMsg {
                    message: Some(m.clone()),
                    msg_order_id: Some(i as u64),
                })
                .collect(),
            unread_count: (c.unread > 0).then_some(c.unread),
            archived: c.archived.then_some(true),
            pinned: (c.pinned > 0).then_some(c.pinned),
            mute_end_time: (c.mute_end_ms > 0).then_some(c.mute_end_ms),
            marked_as_unread: c.marked_unread.then_some(true),
            name: c.name.clone(),
            last_msg_timestamp: messages.last().and_then(|m| m.message_timestamp),
            pn_jid: c.lid.as_ref().map(|_| c.jid.clone()),
            lid_jid,
            ..Default::default()
        }
    }

    /// The chunks sent at linking: the newest messages of every chat (all, or `recent` per
    /// chat: `RECENT` then), at most [`CHUNK_MESSAGES`] messages per chunk; the last carries
    /// the push names, mappings and address-book contacts.
    pub(super) fn link_chunks(&self) -> Vec<wa::HistorySync> {
        let sync_type = if self.recent.is_some() {
            wa::HistorySyncType::Recent
        } else {
            wa::HistorySyncType::Full
        };
        let mut chunks = Vec::new();
        let mut current: Vec<wa::Conversation> = Vec::new();
        let mut count = 0;
        for c in &self.chats {
            let from = self
                .recent
                .map_or(0, |r| c.messages.len().saturating_sub(r));
            let mut slice = &c.messages[from..];
            // A chat with no messages still carries its state.
            loop {
                let room = CHUNK_MESSAGES - count;
                let take = slice.len().min(room);
                current.push(Self::conversation(c, &slice[..take]));
                count += take;
                slice = &slice[take..];
                if count >= CHUNK_MESSAGES {
                    chunks.push(std::mem::take(&mut current));
                    count = 0;
                }
                if slice.is_empty() {
                    break;
                }
            }
        }
        if !current.is_empty() || chunks.is_empty() {
            chunks.push(current);
        }
        let n = chunks.len();
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, conversations)| {
                let last = i + 1 == n;
                wa::HistorySync {
                    sync_type: Some(sync_type as i32),
                    chunk_order: Some(i as u32 + 1),
                    progress: Some(((i + 1) * 100 / n) as u32),
                    conversations,
                    pushnames: if last { self.push_names() } else { Vec::new() },
                    phone_number_to_lid_mappings: if last { self.mappings() } else { Vec::new() },
                    inline_contacts: if last { self.contacts() } else { Vec::new() },
                    ..Default::default()
                }
            })
            .collect()
    }

    fn push_names(&self) -> Vec<wa::Pushname> {
        self.chats
            .iter()
            .filter_map(|c| {
                Some(wa::Pushname {
                    id: Some(c.jid.clone()),
                    pushname: Some(c.push_name.clone()?),
                })
            })
            .collect()
    }

    fn mappings(&self) -> Vec<wa::PhoneNumberToLidMapping> {
        self.chats
            .iter()
            .filter_map(|c| {
                Some(wa::PhoneNumberToLidMapping {
                    pn_jid: Some(c.jid.clone()),
                    lid_jid: Some(Jid::new(c.lid.clone()?, Server::Lid).to_string()),
                })
            })
            .collect()
    }

    fn contacts(&self) -> Vec<wa::InlineContact> {
        self.chats
            .iter()
            .filter_map(|c| {
                Some(wa::InlineContact {
                    pn_jid: Some(c.jid.clone()),
                    lid_jid: c
                        .lid
                        .as_ref()
                        .map(|l| Jid::new(l.clone(), Server::Lid).to_string()),
                    full_name: Some(c.full_name.clone()?),
                    first_name: c
                        .full_name
                        .as_deref()
                        .and_then(|f| f.split(' ').next())
                        .map(str::to_owned),
                    username: None,
                })
            })
            .collect()
    }

    /// The answer to an on-demand request for `chat` (its PN or LID JID): up to `count`
    /// messages older than the anchor (by id when the phone knows it, else by time), newest of
    /// those last.
    pub(super) fn on_demand(
        &self,
        chat: &str,
        oldest_id: Option<&str>,
        oldest_t: Option<i64>,
        count: usize,
    ) -> wa::HistorySync {
        let chat_user = chat.split('@').next().unwrap_or_default();
        let found = self.chats.iter().find(|c| {
            c.jid == chat
                || c.jid.split('@').next() == Some(chat_user)
                || c.lid.as_deref() == Some(chat_user)
        });
        let conversations = found
            .map(|c| {
                let end = oldest_id
                    .and_then(|id| {
                        c.messages
                            .iter()
                            .position(|m| m.key.as_ref().and_then(|k| k.id.as_deref()) == Some(id))
                    })
                    .unwrap_or_else(|| {
                        let t = oldest_t.unwrap_or(i64::MAX).max(0) as u64;
                        c.messages
                            .iter()
                            .position(|m| m.message_timestamp.unwrap_or(0) >= t)
                            .unwrap_or(c.messages.len())
                    });
                let start = end.saturating_sub(count);
                vec![Self::conversation(c, &c.messages[start..end])]
            })
            .unwrap_or_default();
        wa::HistorySync {
            sync_type: Some(wa::HistorySyncType::OnDemand as i32),
            chunk_order: Some(1),
            progress: Some(100),
            conversations,
            ..Default::default()
        }
    }
}

/// Compresses and encrypts `history`, stores it on the CDN as `md-msg-hist`, and returns the
/// peer message whose notification names it (blocking: run off the async threads).
pub(super) fn upload_chunk(
    cdn: &Cdn,
    history: &wa::HistorySync,
    fault: Option<HistoryFault>,
    session: Option<String>,
) -> Result<wa::Message, String> {
    let plain = match fault {
        Some(HistoryFault::BadZlib) => b"this is not a zlib stream at all".to_vec(),
        _ => {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&history.encode_to_vec())
                .map_err(|e| e.to_string())?;
            z.finish().map_err(|e| e.to_string())?
        }
    };
    let media_key: [u8; 32] = rand::random();
    let keys = expand(&media_key, MediaType::History);
    let mut enc = Encryptor::new(&keys);
    let mut body = Vec::with_capacity(plain.len() + 64);
    enc.update(&plain, &mut body);
    let sums = enc.finish(&mut body);
    let up = cdn
        .store(MediaType::History.mms_type(), &body)
        .map_err(|e| e.to_string())?;
    let mut sha = sums.file_sha256.to_vec();
    if fault == Some(HistoryFault::WrongHash) {
        sha[0] ^= 0xff;
    }
    Ok(wa::Message {
        protocol_message: Some(Box::new(wa::ProtocolMessage {
            r#type: Some(ProtocolType::HistorySyncNotification as i32),
            history_sync_notification: Some(wa::HistorySyncNotification {
                file_sha256: Some(sha),
                file_length: Some(sums.file_length),
                media_key: Some(media_key.to_vec()),
                file_enc_sha256: Some(sums.file_enc_sha256.to_vec()),
                direct_path: Some(up.direct_path),
                sync_type: history.sync_type,
                chunk_order: history.chunk_order,
                progress: history.progress,
                peer_data_request_session_id: session,
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_history_splits_into_chunks_and_keeps_older_messages_for_on_demand() {
        let mut h = SimHistory::default();
        h.seed(
            &HistorySeed {
                chats: 3,
                messages: 60,
                recent: Some(20),
                fault: None,
            },
            1_700_000_000,
        );
        let chunks = h.link_chunks();
        let sent: usize = chunks
            .iter()
            .flat_map(|c| &c.conversations)
            .map(|c| c.messages.len())
            .sum();
        assert_eq!(sent, 60);
        let last = chunks.last().unwrap();
        assert_eq!(last.pushnames.len(), 3);
        assert_eq!(last.phone_number_to_lid_mappings.len(), 3);
        let (pn, _) = seeded_contact(1);
        let newest_sent = &chunks[0].conversations[1].messages[0];
        let anchor = newest_sent
            .message
            .as_ref()
            .unwrap()
            .key
            .as_ref()
            .unwrap()
            .id
            .clone();
        let od = h.on_demand(&format!("{pn}@s.whatsapp.net"), anchor.as_deref(), None, 50);
        assert_eq!(od.conversations[0].messages.len(), 40);
    }
}
