//! Simulated devices as real Signal peers: a phone's primary device (device 0) holds the account
//! identity key; a user's simulated companions have their own. Each serves its prekey bundle,
//! opens sessions from other devices' bundles, encrypts and decrypts exactly as a client does.
//! A phone also sends what a real phone sends a newly linked device (a setting, then the initial
//! history); the server attaches the phone's push name as `notify`, which is how companions
//! learn their own name.

use std::sync::Arc;

use prost::Message as _;

use super::iq::KeyBundle;
use super::pair::PhoneAccount;
use crate::binary::{Jid, Node, Server};
use crate::proto::wa;
use crate::proto::wa::protocol_message::Type as ProtocolType;
use crate::signal::store::{ApplyChanges, PreKeyStore};
use crate::signal::{
    CiphertextMessage, EncType, IdentityTrust, KeyPair, LocalIdentity, MemoryStore, PreKeyBundle,
    ProtocolAddress, SenderKeyName, SessionCipher, SignalError, SignedPreKey,
};

/// One simulated device's Signal state.
#[derive(Debug)]
pub struct SimPeer {
    /// The device (phone-number form).
    pub jid: Jid,
    /// Registration id.
    pub registration_id: u32,
    /// Identity public key.
    pub identity: [u8; 32],
    /// Signed prekey (id 1).
    pub signed: SignedPreKey,
    cipher: SessionCipher<Arc<MemoryStore>>,
}

/// The phone's primary device: the historical name of the phone's peer.
pub type PhoneSignal = SimPeer;

impl SimPeer {
    /// A device `jid` with identity `identity` (the account key for device 0).
    pub fn new(jid: Jid, identity: KeyPair) -> SimPeer {
        let registration_id = rand::random::<u32>() % 16_380 + 1;
        let signed = SignedPreKey::generate(1, &identity, 0);
        let store = Arc::new(MemoryStore::new(LocalIdentity {
            key_pair: identity.clone(),
            registration_id,
        }));
        store.put_signed_pre_key(&signed);
        SimPeer {
            jid,
            registration_id,
            identity: identity.public,
            signed,
            cipher: SessionCipher::new(store, IdentityTrust::AcceptChanges),
        }
    }

    /// The phone's primary device for `phone`.
    pub fn phone(phone: &PhoneAccount) -> SimPeer {
        SimPeer::new(
            Jid::with_device(phone.number.clone(), 0, Server::User),
            phone.identity.clone(),
        )
    }

    /// A bundle for a peer that asked the server for this device's keys: a fresh one-time
    /// prekey each time, as the server hands each out once.
    pub async fn bundle(&self) -> Result<PreKeyBundle, SignalError> {
        let one_time = self
            .cipher
            .store()
            .create_pre_keys(1)
            .await?
            .pop()
            .map(|k| (k.id, k.key_pair.public));
        Ok(PreKeyBundle {
            registration_id: self.registration_id,
            pre_key: one_time,
            signed_pre_key_id: self.signed.id,
            signed_pre_key: self.signed.key_pair.public,
            signed_pre_key_signature: self.signed.signature,
            identity_key: self.identity,
        })
    }

    /// Whether this device has a session with `to`.
    pub async fn has_session(&self, to: &Jid) -> bool {
        self.cipher
            .has_session(&ProtocolAddress::from_jid(to))
            .await
            .unwrap_or(false)
    }

    /// Encrypts `message` (padded) for `to`, first opening a session from `bundle` if given.
    pub async fn encrypt(
        &self,
        to: &Jid,
        bundle: Option<&PreKeyBundle>,
        message: &wa::Message,
    ) -> Result<CiphertextMessage, SignalError> {
        self.encrypt_plain(to, bundle, &message.encode_to_vec())
            .await
    }

    /// Encrypts a `Message` plaintext as given (so fields this build does not know reach the
    /// peer as they were written).
    pub async fn encrypt_plain(
        &self,
        to: &Jid,
        bundle: Option<&PreKeyBundle>,
        plain: &[u8],
    ) -> Result<CiphertextMessage, SignalError> {
        let addr = ProtocolAddress::from_jid(to);
        if let Some(b) = bundle {
            self.cipher.process_bundle(&addr, b).await?;
        }
        self.cipher
            .encrypt(&addr, &crate::stanza::pad(plain.to_vec()))
            .await
    }

    /// Decrypts an `<enc>` from `from` into a `Message`.
    pub async fn decrypt(
        &self,
        from: &Jid,
        kind: EncType,
        bytes: &[u8],
    ) -> Result<wa::Message, SignalError> {
        let plain = self
            .cipher
            .decrypt(&ProtocolAddress::from_jid(from), kind, bytes)
            .await?;
        let body =
            crate::stanza::unpad(&plain.plaintext).ok_or(SignalError::InvalidMessage("padding"))?;
        wa::Message::decode(body).map_err(|_| SignalError::InvalidMessage("protobuf"))
    }

    fn key_name(group: &str, sender: &Jid) -> SenderKeyName {
        SenderKeyName {
            group: group.to_owned(),
            sender: ProtocolAddress::from_jid(sender),
        }
    }

    /// Encrypts `message` (padded) with this device's sender key for `group`; returns the
    /// `skmsg` and the distribution message a member needs to read it.
    pub async fn group_encrypt(
        &self,
        group: &str,
        plain: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), SignalError> {
        let name = Self::key_name(group, &self.jid);
        let lock = self.cipher.lock_sender_key(&name).await;
        let (ct, distribution, changes) = self
            .cipher
            .group_encrypt_staged(&lock, &name, &crate::stanza::pad(plain.to_vec()))
            .await?;
        self.cipher.store().apply(&changes).await?;
        Ok((ct, distribution))
    }

    /// This device's current distribution message for `group`.
    pub async fn group_distribution(&self, group: &str) -> Result<Vec<u8>, SignalError> {
        self.cipher
            .group_distribution(&Self::key_name(group, &self.jid))
            .await
    }

    /// Installs `sender`'s distribution (when given) and decrypts its `skmsg` (when given)
    /// into a `Message`.
    pub async fn group_receive(
        &self,
        group: &str,
        sender: &Jid,
        distribution: Option<&[u8]>,
        skmsg: Option<&[u8]>,
    ) -> Result<Option<wa::Message>, SignalError> {
        let name = Self::key_name(group, sender);
        let lock = self.cipher.lock_sender_key(&name).await;
        let (plain, changes) = self
            .cipher
            .group_decrypt_staged(&lock, &name, distribution, skmsg)
            .await?;
        self.cipher.store().apply(&changes).await?;
        plain
            .map(|p| {
                let body =
                    crate::stanza::unpad(&p).ok_or(SignalError::InvalidMessage("padding"))?;
                wa::Message::decode(body).map_err(|_| SignalError::InvalidMessage("protobuf"))
            })
            .transpose()
    }

    /// Starts this device's sender key for `group` over (a member left).
    pub async fn rotate_group_key(&self, group: &str) -> Result<(), SignalError> {
        self.cipher
            .rotate_sender_key(&Self::key_name(group, &self.jid))
            .await
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
        let b = (!self.has_session(device).await).then_some(PreKeyBundle {
            registration_id: bundle.registration_id,
            pre_key: one_time,
            signed_pre_key_id: bundle.signed_pre_key_id,
            signed_pre_key: bundle.signed_pre_key,
            signed_pre_key_signature: bundle.signature,
            identity_key: *identity,
        });
        let ct = self.encrypt(device, b.as_ref(), message).await?;
        let mut node = Node::new("message")
            .attr("from", Jid::new(phone.number.clone(), Server::User))
            .attr("type", "text")
            .attr("id", crate::util::ids::phone_message_id())
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

/// The initial history bootstrap, inline (zlib-compressed `HistorySync`): no conversations yet,
/// the account's push name, its phone-number ↔ LID mapping and its NCT salt (`nctSalt`, 19:
/// the companion applies it as backfill, CLIENT-FEATURES §1.1).
pub fn initial_history(phone: &PhoneAccount, nct_salt: Option<&[u8]>, now: u64) -> wa::Message {
    use std::io::Write;
    let pn = Jid::new(phone.number.clone(), Server::User).to_string();
    let history = wa::HistorySync {
        sync_type: Some(wa::HistorySyncType::InitialBootstrap as i32),
        chunk_order: Some(0),
        progress: Some(100),
        pushnames: phone
            .push_name
            .iter()
            .map(|name| wa::Pushname {
                id: Some(pn.clone()),
                pushname: Some(name.clone()),
            })
            .collect(),
        phone_number_to_lid_mappings: vec![wa::PhoneNumberToLidMapping {
            pn_jid: Some(pn),
            lid_jid: Some(Jid::new(phone.lid.clone(), Server::Lid).to_string()),
        }],
        nct_salt: nct_salt.map(<[u8]>::to_vec),
        ..Default::default()
    };
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = z.write_all(&history.encode_to_vec());
    let inline = z.finish().unwrap_or_default();
    wa::Message {
        protocol_message: Some(Box::new(wa::ProtocolMessage {
            r#type: Some(ProtocolType::HistorySyncNotification as i32),
            history_sync_notification: Some(wa::HistorySyncNotification {
                sync_type: Some(wa::HistorySyncType::InitialBootstrap as i32),
                chunk_order: Some(0),
                progress: Some(100),
                oldest_msg_in_chunk_timestamp_sec: Some(now as i64),
                initial_hist_bootstrap_inline_payload: Some(inline),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_history_bootstrap_carries_name_and_lid_inline() {
        let phone = PhoneAccount {
            number: "15550001234".into(),
            lid: "201234567890123".into(),
            identity: crate::signal::KeyPair::generate(),
            platform: "android".into(),
            push_name: Some("Alice".into()),
            business_name: None,
        };
        let m = initial_history(&phone, Some(b"salt"), 1_700_000_000);
        let n = m
            .protocol_message
            .and_then(|p| p.history_sync_notification)
            .unwrap();
        let mut plain = Vec::new();
        flate2::read::ZlibDecoder::new(&n.initial_hist_bootstrap_inline_payload.unwrap()[..])
            .read_to_end(&mut plain)
            .unwrap();
        let h = wa::HistorySync::decode(&plain[..]).unwrap();
        assert_eq!(
            h.sync_type,
            Some(wa::HistorySyncType::InitialBootstrap as i32)
        );
        assert_eq!(h.pushnames[0].pushname.as_deref(), Some("Alice"));
        assert_eq!(h.nct_salt.as_deref(), Some(&b"salt"[..]));
        assert_eq!(
            h.phone_number_to_lid_mappings[0].lid_jid.as_deref(),
            Some("201234567890123@lid")
        );
    }
}
