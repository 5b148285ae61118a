//! The attributes a `<message>` stanza carries about its content: `type` (Baileys
//! `getMessageType`), the `<enc mediatype>` of media (Baileys `getMediaType`), `edit` (whatsmeow
//! `getEditAttribute`: 1 edit, 7 sender revoke or reaction removal, 8 admin revoke, 2 pin) and
//! `decrypt-fail="hide"` for what a client should not show as "waiting for this message".
//! Shared by the client and the simulator's phones.

use crate::proto::wa;

/// What a content's stanza says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentAttrs {
    /// `<message type>`: `text`, `media`, `reaction`, `poll` or `event`.
    pub kind: &'static str,
    /// `<enc mediatype>` for media and the kinds Baileys names there.
    pub media: Option<&'static str>,
    /// `<message edit>`.
    pub edit: Option<&'static str>,
    /// `<enc decrypt-fail="hide">`: reactions, edits and revokes.
    pub hide_failure: bool,
}

/// Envelopes looked through to the content (as Baileys' `normalizeMessageContent`).
const MAX_DEPTH: usize = 8;

/// The content inside the envelopes (ephemeral, view once, document with caption, edited).
pub fn normalized(m: &wa::Message) -> &wa::Message {
    let mut m = m;
    for _ in 0..MAX_DEPTH {
        let inner = [
            &m.ephemeral_message,
            &m.view_once_message,
            &m.view_once_message_v2,
            &m.view_once_message_v2_extension,
            &m.document_with_caption_message,
            &m.edited_message,
        ]
        .into_iter()
        .find_map(|e| e.as_ref().and_then(|f| f.message.as_deref()));
        match inner {
            Some(i) => m = i,
            None => break,
        }
    }
    m
}

/// The attributes of `m`'s stanza; `admin` says a revoke removes someone else's message.
pub fn content_attrs(m: &wa::Message, admin: bool) -> ContentAttrs {
    let n = normalized(m);
    let media = media_type(n);
    let kind = if n.reaction_message.is_some() || n.enc_reaction_message.is_some() {
        "reaction"
    } else if n.poll_creation_message.is_some()
        || n.poll_creation_message_v2.is_some()
        || n.poll_creation_message_v3.is_some()
        || n.poll_update_message.is_some()
    {
        "poll"
    } else if n.event_message.is_some() {
        "event"
    } else if media.is_some() {
        "media"
    } else {
        "text"
    };
    use wa::protocol_message::Type;
    // An absent type is no revoke (prost would default it to REVOKE, 0).
    let protocol = n
        .protocol_message
        .as_ref()
        .and_then(|p| Type::try_from(p.r#type?).ok());
    let edit = match protocol {
        Some(Type::MessageEdit) => Some("1"),
        Some(Type::Revoke) if admin => Some("8"),
        Some(Type::Revoke) => Some("7"),
        _ if n
            .reaction_message
            .as_ref()
            .is_some_and(|r| r.text.as_deref().unwrap_or_default().is_empty()) =>
        {
            Some("7")
        }
        _ if n.pin_in_chat_message.is_some() => Some("2"),
        _ => None,
    };
    let hide_failure = n.reaction_message.is_some()
        || n.enc_reaction_message.is_some()
        || matches!(protocol, Some(Type::MessageEdit | Type::Revoke));
    ContentAttrs {
        kind,
        media,
        edit,
        hide_failure,
    }
}

fn media_type(m: &wa::Message) -> Option<&'static str> {
    Some(if m.image_message.is_some() {
        "image"
    } else if let Some(v) = &m.video_message {
        if v.gif_playback == Some(true) {
            "gif"
        } else {
            "video"
        }
    } else if m.ptv_message.is_some() {
        // A round video note (Baileys `getMediaType`: `ptvMessage` → `ptv`).
        "ptv"
    } else if let Some(a) = &m.audio_message {
        if a.ptt == Some(true) { "ptt" } else { "audio" }
    } else if m.contact_message.is_some() {
        "vcard"
    } else if m.document_message.is_some() {
        "document"
    } else if m.contacts_array_message.is_some() {
        "contact_array"
    } else if m.live_location_message.is_some() {
        "livelocation"
    } else if m.sticker_message.is_some() {
        "sticker"
    } else if m.list_message.is_some() {
        "list"
    } else if m.list_response_message.is_some() {
        "list_response"
    } else if m.buttons_response_message.is_some() {
        "buttons_response"
    } else if m.order_message.is_some() {
        "order"
    } else if m.product_message.is_some() {
        "product"
    } else if m.interactive_response_message.is_some() {
        "native_flow_response"
    } else if m.group_invite_message.is_some() {
        "url"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reaction_removal_and_revokes_carry_edit_and_hide_failures() {
        let reaction = |text: &str| wa::Message {
            reaction_message: Some(wa::ReactionMessage {
                text: Some(text.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let a = content_attrs(&reaction("👍"), false);
        assert_eq!((a.kind, a.edit, a.hide_failure), ("reaction", None, true));
        assert_eq!(content_attrs(&reaction(""), false).edit, Some("7"));
        let revoke = wa::Message {
            protocol_message: Some(Box::new(wa::ProtocolMessage {
                r#type: Some(wa::protocol_message::Type::Revoke as i32),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(content_attrs(&revoke, false).edit, Some("7"));
        assert_eq!(content_attrs(&revoke, true).edit, Some("8"));
        let voice = wa::Message {
            ephemeral_message: Some(Box::new(wa::FutureProofMessage {
                message: Some(Box::new(wa::Message {
                    audio_message: Some(Box::new(wa::AudioMessage {
                        ptt: Some(true),
                        ..Default::default()
                    })),
                    ..Default::default()
                })),
            })),
            ..Default::default()
        };
        let a = content_attrs(&voice, false);
        assert_eq!((a.kind, a.media, a.edit), ("media", Some("ptt"), None));
    }
}
