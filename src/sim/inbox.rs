//! What a simulated user's app shows: each message once per (chat, sender, id), however many
//! stanzas carried it, as a real app dedupes (MESSAGING.md §2.4), and how many stanzas reached
//! each of its devices, so a sender that transmits one message twice is seen rather than hidden.
//! It knows nothing of the server: the devices tell it what arrived and what they could read.

use std::collections::VecDeque;

use crate::binary::Node;

/// Messages (and unread arrivals) kept per simulated user; past it the oldest are forgotten.
pub const INBOX_KEPT: usize = 10_000;

/// A message a simulated user's devices received and decrypted, as its app shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Received {
    /// Message id.
    pub id: String,
    /// The author (user JID).
    pub from: String,
    /// The conversation (the author, or the peer for what the user's other devices sent).
    pub chat: String,
    /// The text.
    pub text: Option<String>,
    /// Server time (unix seconds) of the first stanza a device read.
    pub timestamp: u64,
    /// How many of the user's devices decrypted it.
    pub devices: usize,
    /// Stanzas carrying it that reached one of the user's devices, for the device that got the
    /// most (read or not), answers to its retry receipts aside: 1 from a sender that transmits
    /// each message once.
    pub transmissions: u32,
    /// Stanzas that answered its devices' retry receipts (`<enc count>`), over all its devices.
    pub retry_answers: u32,
    /// The file of a media message, as the app fetched and checked it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaSeen>,
    /// Per device: what reached it.
    #[serde(skip)]
    copies: Vec<DeviceCopy>,
}

/// A media message's file as a simulated user's app fetched it from the CDN and checked it
/// (fileEncSha256, MAC, padding, fileSha256 and the declared length, CLIENT-FEATURES §2.5).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaSeen {
    /// image, video, ptv, audio, ptt, document or sticker.
    pub kind: String,
    /// The declared mimetype.
    pub mimetype: Option<String>,
    /// The declared file name (documents).
    pub file_name: Option<String>,
    /// The caption.
    pub caption: Option<String>,
    /// The declared plaintext length (`fileLength`).
    pub size: Option<u64>,
    /// Hex SHA-256 of the plaintext that verified (None unless verified).
    pub sha256: Option<String>,
    /// Whether every check passed.
    pub verified: bool,
    /// Which check failed, or why the file could not be fetched.
    pub error: Option<String>,
    /// The `<message type>` of the stanza that carried it (`media` from real clients).
    pub stanza_type: Option<String>,
    /// The `mediatype` of the `<enc>` that carried it.
    pub mediatype: Option<String>,
    /// What the message shows before its file is opened.
    #[serde(flatten)]
    pub shown: Shown,
}

/// What a media message shows before its file is opened, as a phone reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shown {
    /// Audio or video length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
    /// Width.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Height.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// `jpeg` for a JPEG thumbnail, `not-jpeg` for anything else, none without.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
    /// SHA-256 of the thumbnail, hex: a test tells the thumbnail it gave from one made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail_sha256: Option<String>,
    /// A voice note's waveform.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waveform: Option<Vec<u8>>,
    /// A video played as a GIF.
    pub gif: bool,
}

/// What reached one device for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DeviceCopy {
    device: u16,
    read: bool,
    originals: u32,
    retry_answers: u32,
}

impl Received {
    fn copy(&mut self, device: u16) -> &mut DeviceCopy {
        let i = match self.copies.iter().position(|c| c.device == device) {
            Some(i) => i,
            None => {
                self.copies.push(DeviceCopy {
                    device,
                    read: false,
                    originals: 0,
                    retry_answers: 0,
                });
                self.copies.len() - 1
            }
        };
        &mut self.copies[i]
    }

    fn recount(&mut self) {
        self.devices = self.copies.iter().filter(|c| c.read).count();
        self.transmissions = self.copies.iter().map(|c| c.originals).max().unwrap_or(0);
        self.retry_answers = self.copies.iter().map(|c| c.retry_answers).sum();
    }
}

/// What a stanza is to the device it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The message as its sender sent it (once, if the sender is right).
    Original,
    /// A resend answering the device's retry receipt: its `<enc count>` (MESSAGING.md §2.7).
    RetryAnswer,
}

impl Arrival {
    /// A stanza with a counted `<enc>` answers a retry receipt; any other is an original.
    pub fn of(node: &Node) -> Arrival {
        let counted = node
            .child_nodes()
            .iter()
            .any(|e| e.tag == "enc" && e.get("count").is_some());
        if counted {
            Arrival::RetryAnswer
        } else {
            Arrival::Original
        }
    }
}

/// Which message a stanza carries, as an app keys it: (chat, sender user, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageKey {
    /// The conversation (user or group JID).
    pub chat: String,
    /// The author (user JID).
    pub from: String,
    /// Message id.
    pub id: String,
}

/// One simulated user's messages, oldest first.
#[derive(Debug, Default)]
pub struct Inbox {
    entries: VecDeque<Received>,
}

impl Inbox {
    fn entry(&mut self, key: &MessageKey) -> &mut Received {
        // The latest arrivals are the likely duplicates: search from the back.
        let found = self
            .entries
            .iter()
            .rposition(|r| r.id == key.id && r.from == key.from && r.chat == key.chat);
        let i = match found {
            Some(i) => i,
            None => {
                if self.entries.len() >= INBOX_KEPT {
                    self.entries.pop_front();
                }
                self.entries.push_back(Received {
                    id: key.id.clone(),
                    from: key.from.clone(),
                    chat: key.chat.clone(),
                    text: None,
                    timestamp: 0,
                    devices: 0,
                    transmissions: 0,
                    retry_answers: 0,
                    media: None,
                    copies: Vec::new(),
                });
                self.entries.len() - 1
            }
        };
        &mut self.entries[i]
    }

    /// A stanza carrying `key` reached `device`, which could not read it. Returns whether the
    /// device had read the message before (a duplicate: the app answers it with a receipt
    /// again rather than asking for a resend).
    pub fn arrived(&mut self, key: &MessageKey, device: u16, arrival: Arrival) -> bool {
        let r = self.entry(key);
        let c = r.copy(device);
        match arrival {
            Arrival::Original => c.originals += 1,
            Arrival::RetryAnswer => c.retry_answers += 1,
        }
        let read = c.read;
        r.recount();
        read
    }

    /// `device` read a stanza carrying `key` (its text, its server time). Returns whether the
    /// device had not read the message before (the app shows it once).
    pub fn read(
        &mut self,
        key: &MessageKey,
        device: u16,
        arrival: Arrival,
        text: Option<String>,
        timestamp: u64,
    ) -> bool {
        let r = self.entry(key);
        if r.devices == 0 {
            r.text = text;
            r.timestamp = timestamp;
        }
        let c = r.copy(device);
        match arrival {
            Arrival::Original => c.originals += 1,
            Arrival::RetryAnswer => c.retry_answers += 1,
        }
        let new = !c.read;
        c.read = true;
        r.recount();
        new
    }

    /// Whether message `key` already has its file checked (one check per user, not per device).
    pub fn has_media(&self, key: &MessageKey) -> bool {
        self.entries.iter().rev().any(|r| {
            r.id == key.id && r.from == key.from && r.chat == key.chat && r.media.is_some()
        })
    }

    /// Records what checking message `key`'s file found.
    pub fn set_media(&mut self, key: &MessageKey, media: MediaSeen) {
        self.entry(key).media = Some(media);
    }

    /// The messages its devices read, oldest first (arrivals no device could read stay out,
    /// as an app shows only what it decrypted).
    pub fn shown(&self) -> Vec<Received> {
        self.entries
            .iter()
            .filter(|r| r.devices > 0)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> MessageKey {
        MessageKey {
            chat: "1@s.whatsapp.net".into(),
            from: "1@s.whatsapp.net".into(),
            id: id.into(),
        }
    }

    #[test]
    fn a_message_shows_once_however_often_it_arrives_and_every_arrival_counts() {
        let mut inbox = Inbox::default();
        let k = key("A");
        assert!(inbox.read(&k, 0, Arrival::Original, Some("hi".into()), 7));
        assert!(inbox.read(&k, 1, Arrival::Original, Some("hi".into()), 8));
        // The same message again (a second transmission): shown once, counted twice.
        assert!(!inbox.read(&k, 0, Arrival::Original, Some("hi".into()), 9));
        // An undecryptable copy of what the device read is a duplicate.
        assert!(inbox.arrived(&k, 1, Arrival::Original));
        let shown = inbox.shown();
        assert_eq!(shown.len(), 1);
        assert_eq!(
            (shown[0].devices, shown[0].transmissions, shown[0].timestamp),
            (2, 2, 7)
        );
        assert_eq!(shown[0].text.as_deref(), Some("hi"));
    }

    #[test]
    fn retry_answers_count_apart_and_unread_arrivals_stay_hidden() {
        let mut inbox = Inbox::default();
        let k = key("B");
        // The first copy cannot be read: nothing shows, and it is no duplicate.
        assert!(!inbox.arrived(&k, 3, Arrival::Original));
        assert!(inbox.shown().is_empty());
        assert!(inbox.read(&k, 3, Arrival::RetryAnswer, Some("x".into()), 1));
        let shown = inbox.shown();
        assert_eq!(
            (
                shown[0].transmissions,
                shown[0].retry_answers,
                shown[0].devices
            ),
            (1, 1, 1)
        );
        // Another chat's message with the same id is another message.
        let other = MessageKey {
            chat: "2@g.us".into(),
            ..k
        };
        assert!(inbox.read(&other, 3, Arrival::Original, None, 2));
        assert_eq!(inbox.shown().len(), 2);
    }

    #[test]
    fn the_inbox_stays_bounded() {
        let mut inbox = Inbox::default();
        for i in 0..INBOX_KEPT + 10 {
            inbox.read(&key(&i.to_string()), 0, Arrival::Original, None, 0);
        }
        let shown = inbox.shown();
        assert_eq!(shown.len(), INBOX_KEPT);
        assert_eq!(shown[0].id, "10");
    }

    #[test]
    fn a_counted_enc_marks_a_retry_answer() {
        let plain = Node::new("message").children(vec![Node::new("enc").attr("type", "msg")]);
        let counted = Node::new("message").children(vec![
            Node::new("enc").attr("type", "skmsg"),
            Node::new("enc").attr("type", "msg").attr("count", "1"),
        ]);
        assert_eq!(Arrival::of(&plain), Arrival::Original);
        assert_eq!(Arrival::of(&counted), Arrival::RetryAnswer);
    }
}
