//! A simulated phone as a Signal peer: its primary device (device 0) holds the account identity
//! key, opens sessions from the key bundles companions uploaded, and sends them what a real phone
//! sends a newly linked device. The server attaches the phone's push name as `notify`, which is
//! how companions learn their own name.

use std::sync::Arc;

use prost::Message as _;

use super::iq::KeyBundle;
use super::pair::PhoneAccount;
use crate::binary::{Jid, Node, Server};
use crate::proto::wa;
use crate::proto::wa::protocol_message::Type as ProtocolType;
use crate::signal::{
    IdentityTrust, LocalIdentity, MemoryStore, PreKeyBundle, ProtocolAddress, SessionCipher,
    SignalError,
};

/// The Signal state of a phone's primary device.
#[derive(Debug, Clone)]
pub struct PhoneSignal {
    number: String,
    store: Arc<MemoryStore>,
}

impl PhoneSignal {
    /// Signal state for `phone`: its identity key is the account key that signs companions.
    pub fn new(phone: &PhoneAccount) -> PhoneSignal {
        PhoneSignal {
            number: phone.number.clone(),
            store: Arc::new(MemoryStore::new(LocalIdentity {
                key_pair: phone.identity.clone(),
                registration_id: rand::random::<u32>() % 16_380 + 1,
            })),
        }
    }

    fn cipher(&self) -> SessionCipher<Arc<MemoryStore>> {
        SessionCipher::new(
            self.store.clone(),
            format!("sim-phone-{}", self.number),
            IdentityTrust::AcceptChanges,
        )
    }

    /// Encrypts `message` for the companion `device` (opening the session from its bundle and
    /// one-time prekey when there is none) and wraps it as the server delivers it.
    #[allow(clippy::too_many_arguments)]
    pub async fn peer_message(
        &self,
        phone: &PhoneAccount,
        device: &Jid,
        identity: &[u8; 32],
        bundle: &KeyBundle,
        one_time: Option<(u32, [u8; 32])>,
        message: &wa::Message,
        now: u64,
    ) -> Result<Node, SignalError> {
        let cipher = self.cipher();
        let addr = ProtocolAddress::from_jid(device);
        if !cipher.has_session(&addr).await? {
            cipher
                .process_bundle(
                    &addr,
                    &PreKeyBundle {
                        registration_id: bundle.registration_id,
                        pre_key: one_time,
                        signed_pre_key_id: bundle.signed_pre_key_id,
                        signed_pre_key: bundle.signed_pre_key,
                        signed_pre_key_signature: bundle.signature,
                        identity_key: *identity,
                    },
                )
                .await?;
        }
        let ct = cipher.encrypt(&addr, &pad(message.encode_to_vec())).await?;
        let mut node = Node::new("message")
            .attr("from", Jid::new(phone.number.clone(), Server::User))
            .attr("type", "text")
            .attr("id", message_id())
            .attr("t", now.to_string())
            .attr("category", "peer");
        if let Some(name) = &phone.push_name {
            node = node.attr("notify", name.clone());
        }
        Ok(node.children(vec![
            Node::new("enc")
                .attr("v", "2")
                .attr("type", ct.enc_type())
                .bytes(ct.bytes().to_vec()),
        ]))
    }
}

/// What a phone sends a newly linked companion first: its security-notification setting.
pub fn initial_setting_sync() -> wa::Message {
    wa::Message {
        protocol_message: Some(Box::new(wa::ProtocolMessage {
            r#type: Some(ProtocolType::InitialSecurityNotificationSettingSync as i32),
            initial_security_notification_setting_sync: Some(
                wa::InitialSecurityNotificationSettingSync {
                    security_notification_enabled: Some(false),
                },
            ),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Random 1–15 byte padding, each byte its count (as phones and companions pad `v=2` plaintext).
fn pad(mut plain: Vec<u8>) -> Vec<u8> {
    let n = (rand::random::<u8>() & 0x0f).max(1);
    plain.extend(std::iter::repeat_n(n, usize::from(n)));
    plain
}

/// A phone-style message id: 16 random bytes, upper-case hex.
fn message_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
