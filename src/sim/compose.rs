//! What a simulated phone can be told to send over the control API: any `Message`, as base64
//! protobuf bytes sent verbatim, or built from a typed shortcut — text (with a reply and
//! mentions), location, contact card(s), reaction, edit, revoke, poll, sticker — in a
//! disappearing or view-once envelope when asked. Shapes follow what Baileys builds
//! (`fixtures/baileys/message_kinds.json`).

use base64::Engine as _;
use prost::Message as _;
use serde::Deserialize;

use crate::proto::wa;

/// Largest protobuf accepted from the control API.
const MAX_PROTO: usize = 1 << 20;

/// The content part of `POST /phones/{n}/send`: exactly one of `text`, `proto`, `location`,
/// `contact`, `contacts`, `reaction`, `edit`, `revoke`, `poll`, `sticker`; `reply` and
/// `mentions` go with `text`; `ephemeral` (seconds) and `viewOnce` wrap any of them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compose {
    /// A text.
    pub text: Option<String>,
    /// A `Message` protobuf, base64, sent as given.
    pub proto: Option<String>,
    /// A location pin.
    pub location: Option<Location>,
    /// One contact card.
    pub contact: Option<Contact>,
    /// Several contact cards.
    pub contacts: Option<Vec<Contact>>,
    /// A reaction to a message.
    pub reaction: Option<Reaction>,
    /// The message `text` replies to.
    pub reply: Option<Reply>,
    /// JIDs `text` mentions.
    pub mentions: Option<Vec<String>>,
    /// A new text for one of this user's messages.
    pub edit: Option<Edit>,
    /// A delete-for-everyone.
    pub revoke: Option<Revoke>,
    /// A poll.
    pub poll: Option<Poll>,
    /// A sticker (media fields only: nothing to download yet).
    pub sticker: Option<bool>,
    /// A disappearing-messages timer (seconds): the content goes in the ephemeral envelope.
    pub ephemeral: Option<u32>,
    /// Wrap the content as view once.
    pub view_once: Option<bool>,
}

/// `location`.
#[derive(Debug, Deserialize)]
pub struct Location {
    /// Degrees.
    pub latitude: f64,
    /// Degrees.
    pub longitude: f64,
    /// A place name.
    pub name: Option<String>,
    /// Its address.
    pub address: Option<String>,
    /// A comment.
    pub comment: Option<String>,
}

/// `contact` / `contacts`.
#[derive(Debug, Deserialize)]
pub struct Contact {
    /// The display name.
    pub name: String,
    /// International digits.
    pub number: String,
}

/// `reaction`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reaction {
    /// The message reacted to.
    pub id: String,
    /// The emoji; empty removes this user's reaction.
    pub emoji: String,
    /// Whether this user sent that message.
    #[serde(default)]
    pub from_me: bool,
    /// In a group, that message's author (a JID).
    pub participant: Option<String>,
}

/// `reply`.
#[derive(Debug, Deserialize)]
pub struct Reply {
    /// The quoted message's id.
    pub id: String,
    /// Its author (a JID); this user's own when absent.
    pub participant: Option<String>,
    /// Its text, for the quote's preview.
    pub text: Option<String>,
}

/// `edit`.
#[derive(Debug, Deserialize)]
pub struct Edit {
    /// The message edited (this user's).
    pub id: String,
    /// Its new text.
    pub text: String,
}

/// `revoke`.
#[derive(Debug, Deserialize)]
pub struct Revoke {
    /// The message deleted.
    pub id: String,
    /// In a group, an admin deleting someone else's message names its author (a JID).
    pub participant: Option<String>,
}

/// `poll`.
#[derive(Debug, Deserialize)]
pub struct Poll {
    /// The question.
    pub name: String,
    /// The options.
    pub options: Vec<String>,
    /// How many may be chosen (0: any).
    #[serde(default)]
    pub selectable: u32,
}

/// A composed message: its plaintext and whether it is an admin's revoke.
#[derive(Debug)]
pub struct Composed {
    /// The `Message` plaintext (unpadded).
    pub plain: Vec<u8>,
    /// A revoke of someone else's group message (`edit="8"`).
    pub admin: bool,
}

impl Compose {
    /// Whether it names nothing at all (no content, no envelope, no reply or mentions).
    pub fn is_empty(&self) -> bool {
        self.text.is_none()
            && self.proto.is_none()
            && self.location.is_none()
            && self.contact.is_none()
            && self.contacts.is_none()
            && self.reaction.is_none()
            && self.reply.is_none()
            && self.mentions.is_none()
            && self.edit.is_none()
            && self.revoke.is_none()
            && self.poll.is_none()
            && self.sticker.is_none()
            && self.ephemeral.is_none()
            && self.view_once.is_none()
    }

    /// The message for chat `to` (a JID as the sender addresses it) at `now_ms`, or what is
    /// wrong with the request.
    pub fn build(self, to: &str, now_ms: i64) -> Result<Composed, String> {
        let kinds = [
            self.text.is_some(),
            self.proto.is_some(),
            self.location.is_some(),
            self.contact.is_some(),
            self.contacts.is_some(),
            self.reaction.is_some(),
            self.edit.is_some(),
            self.revoke.is_some(),
            self.poll.is_some(),
            self.sticker == Some(true),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(
                "name exactly one of text, proto, location, contact, contacts, \
                        reaction, edit, revoke, poll, sticker"
                    .into(),
            );
        }
        if (self.reply.is_some() || self.mentions.is_some()) && self.text.is_none() {
            return Err("reply and mentions go with text".into());
        }
        if let Some(b64) = &self.proto {
            let plain = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| "proto must be base64".to_owned())?;
            if plain.is_empty() || plain.len() > MAX_PROTO {
                return Err("proto must be 1 byte to 1 MiB".into());
            }
            wa::Message::decode(&plain[..]).map_err(|e| format!("proto: {e}"))?;
            return Ok(Composed {
                plain,
                admin: false,
            });
        }
        let key = |id: &str, from_me: bool, participant: Option<String>| wa::MessageKey {
            remote_jid: Some(to.to_owned()),
            from_me: Some(from_me),
            id: Some(id.to_owned()),
            participant,
        };
        let context = || -> Option<wa::ContextInfo> {
            let reply = self.reply.as_ref();
            if reply.is_none() && self.mentions.is_none() && self.ephemeral.is_none() {
                return None;
            }
            Some(wa::ContextInfo {
                stanza_id: reply.map(|r| r.id.clone()),
                participant: reply.map(|r| r.participant.clone().unwrap_or_default()),
                quoted_message: reply.map(|r| {
                    Box::new(wa::Message {
                        conversation: Some(r.text.clone().unwrap_or_default()),
                        ..Default::default()
                    })
                }),
                mentioned_jid: self.mentions.clone().unwrap_or_default(),
                expiration: self.ephemeral,
                ..Default::default()
            })
        };
        let mut admin = false;
        let mut m = wa::Message::default();
        if let Some(text) = &self.text {
            match context() {
                None => m.conversation = Some(text.clone()),
                Some(c) => {
                    m.extended_text_message = Some(Box::new(wa::ExtendedTextMessage {
                        text: Some(text.clone()),
                        context_info: Some(Box::new(c)),
                        ..Default::default()
                    }))
                }
            }
        } else if let Some(l) = self.location {
            m.location_message = Some(Box::new(wa::LocationMessage {
                degrees_latitude: Some(l.latitude),
                degrees_longitude: Some(l.longitude),
                name: l.name,
                address: l.address,
                comment: l.comment,
                context_info: context().map(Box::new),
                ..Default::default()
            }));
        } else if let Some(c) = self.contact {
            m.contact_message = Some(Box::new(contact(c)));
        } else if let Some(cs) = self.contacts {
            if cs.is_empty() || cs.len() > 256 {
                return Err("contacts must name 1–256 cards".into());
            }
            m.contacts_array_message = Some(Box::new(wa::ContactsArrayMessage {
                display_name: Some(format!("{} contacts", cs.len())),
                contacts: cs.into_iter().map(contact).collect(),
                ..Default::default()
            }));
        } else if let Some(r) = self.reaction {
            m.reaction_message = Some(wa::ReactionMessage {
                key: Some(key(&r.id, r.from_me, r.participant)),
                text: Some(r.emoji),
                grouping_key: None,
                sender_timestamp_ms: Some(now_ms),
            });
        } else if let Some(e) = self.edit {
            m.protocol_message = Some(Box::new(wa::ProtocolMessage {
                key: Some(key(&e.id, true, None)),
                r#type: Some(wa::protocol_message::Type::MessageEdit as i32),
                edited_message: Some(Box::new(wa::Message {
                    conversation: Some(e.text),
                    ..Default::default()
                })),
                timestamp_ms: Some(now_ms),
                ..Default::default()
            }));
        } else if let Some(r) = self.revoke {
            admin = r.participant.is_some();
            m.protocol_message = Some(Box::new(wa::ProtocolMessage {
                key: Some(key(&r.id, !admin, r.participant)),
                r#type: Some(wa::protocol_message::Type::Revoke as i32),
                ..Default::default()
            }));
        } else if let Some(p) = self.poll {
            if p.options.len() < 2 || p.options.len() > 12 {
                return Err("a poll has 2–12 options".into());
            }
            m.poll_creation_message = Some(Box::new(wa::PollCreationMessage {
                name: Some(p.name),
                options: p
                    .options
                    .into_iter()
                    .map(|o| wa::poll_creation_message::Option {
                        option_name: Some(o),
                    })
                    .collect(),
                selectable_options_count: Some(p.selectable),
                ..Default::default()
            }));
        } else {
            m.sticker_message = Some(Box::new(wa::StickerMessage {
                mimetype: Some("image/webp".into()),
                width: Some(512),
                height: Some(512),
                file_length: Some(18_950),
                media_key: Some(rand::random::<[u8; 32]>().to_vec()),
                file_sha256: Some(rand::random::<[u8; 32]>().to_vec()),
                file_enc_sha256: Some(rand::random::<[u8; 32]>().to_vec()),
                direct_path: Some("/v/t62.15575-24/simulated.enc".into()),
                media_key_timestamp: Some(now_ms / 1000),
                ..Default::default()
            }));
        }
        if self.view_once == Some(true) {
            m = wa::Message {
                view_once_message_v2: Some(Box::new(wa::FutureProofMessage {
                    message: Some(Box::new(m)),
                })),
                ..Default::default()
            };
        }
        if self.ephemeral.is_some() {
            m = wa::Message {
                ephemeral_message: Some(Box::new(wa::FutureProofMessage {
                    message: Some(Box::new(m)),
                })),
                ..Default::default()
            };
        }
        Ok(Composed {
            plain: m.encode_to_vec(),
            admin,
        })
    }
}

fn contact(c: Contact) -> wa::ContactMessage {
    let vcard = format!(
        "BEGIN:VCARD\nVERSION:3.0\nFN:{}\nTEL;type=CELL;type=VOICE;waid={n}:+{n}\nEND:VCARD",
        c.name,
        n = c.number
    );
    wa::ContactMessage {
        display_name: Some(c.name),
        vcard: Some(vcard),
        context_info: None,
    }
}
