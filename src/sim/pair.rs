//! The server and phone side of QR pairing (PROTOCOL.md §6.3), mirroring `client/pair.rs`:
//! parse a scanned QR, issue a `pair-success` whose HMAC and account signature are real, and
//! check the device signature in the companion's `pair-device-sign` reply. Strict like the real
//! server: anything unsigned or mis-signed is refused.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use prost::Message;
use sha2::Sha256;

use crate::binary::{Jid, Node, Server};
use crate::proto::wa::{AdvDeviceIdentity, AdvSignedDeviceIdentity, AdvSignedDeviceIdentityHmac};
use crate::signal::{KeyPair, xeddsa_verify};

/// The deep-link prefix phones accept in front of the QR fields (a protocol constant; the sim
/// does not borrow it from the client).
pub const QR_PREFIX: &str = "https://wa.me/settings/linked_devices#";

/// What a phone reads from a companion's QR code.
#[derive(Clone, PartialEq, Eq)]
pub struct ScannedQr {
    /// The server ref the QR was made for.
    pub r#ref: String,
    /// Companion noise public key.
    pub noise_public: [u8; 32],
    /// Companion identity public key.
    pub identity_public: [u8; 32],
    /// Companion ADV secret.
    pub adv_secret: [u8; 32],
    /// Platform character, when present (5-field form).
    pub platform: Option<char>,
}

impl std::fmt::Debug for ScannedQr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The ref and the ADV secret are the QR's secrets: neither is printed.
        f.debug_struct("ScannedQr")
            .field("noise_public", &crate::util::hex::Short(&self.noise_public))
            .field(
                "identity_public",
                &crate::util::hex::Short(&self.identity_public),
            )
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

/// Why a QR string or a pairing reply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimPairError {
    /// The QR text is not `[prefix]ref,noise,identity,adv[,platform]` with 32-byte keys.
    #[error("not a WhatsApp pairing QR: {0}")]
    BadQr(&'static str),
    /// The reply lacks `pair-device-sign/device-identity` or it is malformed.
    #[error("malformed pair-device-sign: {0}")]
    MalformedReply(&'static str),
    /// The reply changed the signed details or the account signature.
    #[error("pair-device-sign does not carry the identity we issued")]
    IdentityMismatch,
    /// The device signature does not verify with the companion's identity key.
    #[error("pair-device-sign device signature is invalid")]
    BadDeviceSignature,
}

fn key32(s: &str, what: &'static str) -> Result<[u8; 32], SimPairError> {
    B64.decode(s)
        .ok()
        .and_then(|v| crate::util::bytes::array32(&v))
        .ok_or(SimPairError::BadQr(what))
}

/// Parses QR text in the current 5-field form (with or without the URL prefix) or the older
/// 4-field form.
pub fn parse_qr(text: &str) -> Result<ScannedQr, SimPairError> {
    let body = text.strip_prefix(QR_PREFIX).unwrap_or(text);
    let parts: Vec<&str> = body.split(',').collect();
    if !(4..=5).contains(&parts.len()) || parts[0].is_empty() {
        return Err(SimPairError::BadQr("wrong number of fields"));
    }
    let platform = match parts.get(4) {
        Some(p) => {
            let mut c = p.chars();
            match (c.next(), c.next()) {
                (Some(ch), None) => Some(ch),
                _ => return Err(SimPairError::BadQr("platform")),
            }
        }
        None => None,
    };
    Ok(ScannedQr {
        r#ref: parts[0].to_owned(),
        noise_public: key32(parts[1], "noise key")?,
        identity_public: key32(parts[2], "identity key")?,
        adv_secret: key32(parts[3], "adv secret")?,
        platform,
    })
}

/// The phone's account as pairing needs it.
#[derive(Debug, Clone)]
pub struct PhoneAccount {
    /// Phone number (digits).
    pub number: String,
    /// LID user (digits).
    pub lid: String,
    /// The phone's identity key: signs device identities (`accountSignatureKey`).
    pub identity: KeyPair,
    /// Platform name shown to the companion (e.g. `android`).
    pub platform: String,
    /// The name the user set on the phone; reaches companions as `notify` on the phone's messages.
    pub push_name: Option<String>,
    /// Business name, for business accounts.
    pub business_name: Option<String>,
}

/// A pair-success in flight: what the reply must match.
#[derive(Debug, Clone)]
pub struct IssuedPairing {
    /// The iq id of the pair-success.
    pub iq_id: String,
    /// The companion's new device JID (phone number).
    pub jid: Jid,
    /// The companion's new device JID (LID).
    pub lid: Jid,
    /// The serialized ADVDeviceIdentity.
    pub details: Vec<u8>,
    /// The account signature over it.
    pub account_signature: Vec<u8>,
    /// ADVDeviceIdentity.keyIndex.
    pub key_index: u32,
    /// The companion's identity key (from the QR).
    pub companion_identity: [u8; 32],
    /// The phone's identity key.
    pub account_key: [u8; 32],
}

/// A deliberate defect in a pair-success, to test that companions refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// The HMAC does not match the ADV secret.
    Hmac,
    /// The account signature does not verify (the HMAC is recomputed, so only it is wrong).
    AccountSignature,
}

/// Builds the `<iq><pair-success>` a phone's scan makes the server send to the companion.
pub fn issue_pair_success(
    phone: &PhoneAccount,
    qr: &ScannedQr,
    device: u16,
    key_index: u32,
    iq_id: &str,
    now: u64,
) -> (Node, IssuedPairing) {
    issue_pair_success_with(phone, qr, device, key_index, iq_id, now, None)
}

/// [`issue_pair_success`], optionally with a defect.
pub fn issue_pair_success_with(
    phone: &PhoneAccount,
    qr: &ScannedQr,
    device: u16,
    key_index: u32,
    iq_id: &str,
    now: u64,
    tamper: Option<Tamper>,
) -> (Node, IssuedPairing) {
    let details = AdvDeviceIdentity {
        raw_id: Some(rand::random()),
        timestamp: Some(now),
        key_index: Some(key_index),
        ..Default::default()
    }
    .encode_to_vec();
    let msg = [&[6u8, 0][..], &details, &qr.identity_public].concat();
    let mut account_signature = phone.identity.sign(&msg).to_vec();
    if tamper == Some(Tamper::AccountSignature) {
        account_signature[5] ^= 0x40;
    }
    let signed = AdvSignedDeviceIdentity {
        details: Some(details.clone()),
        account_signature_key: Some(phone.identity.public.to_vec()),
        account_signature: Some(account_signature.clone()),
        device_signature: None,
    }
    .encode_to_vec();
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(&qr.adv_secret).unwrap_or_else(|_| unreachable!());
    mac.update(&signed);
    let mut hmac = mac.finalize().into_bytes().to_vec();
    if tamper == Some(Tamper::Hmac) {
        hmac[0] ^= 1;
    }
    let container = AdvSignedDeviceIdentityHmac {
        details: Some(signed),
        hmac: Some(hmac),
        account_type: None,
    }
    .encode_to_vec();
    let jid = Jid::with_device(phone.number.clone(), device, Server::User);
    let lid = Jid::with_device(phone.lid.clone(), device, Server::Lid);
    let mut children = vec![
        Node::new("device-identity").bytes(container),
        Node::new("device")
            .attr("jid", jid.clone())
            .attr("lid", lid.clone()),
        Node::new("platform").attr("name", phone.platform.clone()),
    ];
    if let Some(b) = &phone.business_name {
        children.push(Node::new("biz").attr("name", b.clone()));
    }
    let node = Node::new("iq")
        .attr("from", Jid::server_jid())
        .attr("type", "set")
        .attr("id", iq_id.to_owned())
        .attr("xmlns", "md")
        .children(vec![Node::new("pair-success").children(children)]);
    (
        node,
        IssuedPairing {
            iq_id: iq_id.to_owned(),
            jid,
            lid,
            details,
            account_signature,
            key_index,
            companion_identity: qr.identity_public,
            account_key: phone.identity.public,
        },
    )
}

/// Checks the companion's `pair-device-sign` reply: same details and account signature as
/// issued, no account key, and a device signature by the companion's identity key.
pub fn verify_pair_device_sign(reply: &Node, issued: &IssuedPairing) -> Result<(), SimPairError> {
    let dev = reply
        .child_path(&["pair-device-sign", "device-identity"])
        .ok_or(SimPairError::MalformedReply(
            "no pair-device-sign/device-identity",
        ))?;
    if dev.get_str("key-index").as_deref() != Some(issued.key_index.to_string().as_str()) {
        return Err(SimPairError::MalformedReply("key-index"));
    }
    let bytes = dev
        .content_bytes()
        .ok_or(SimPairError::MalformedReply("no identity bytes"))?;
    let signed = AdvSignedDeviceIdentity::decode(&bytes[..])
        .map_err(|_| SimPairError::MalformedReply("identity"))?;
    if signed.details.as_deref() != Some(&issued.details[..])
        || signed.account_signature.as_deref() != Some(&issued.account_signature[..])
    {
        return Err(SimPairError::IdentityMismatch);
    }
    if signed.account_signature_key.is_some() {
        return Err(SimPairError::MalformedReply("account key must be stripped"));
    }
    let sig: [u8; 64] = signed
        .device_signature
        .as_deref()
        .and_then(|s| s.try_into().ok())
        .ok_or(SimPairError::BadDeviceSignature)?;
    let msg = [
        &[6u8, 1][..],
        &issued.details,
        &issued.companion_identity,
        &issued.account_key,
    ]
    .concat();
    if !xeddsa_verify(&issued.companion_identity, &msg, &sig) {
        return Err(SimPairError::BadDeviceSignature);
    }
    Ok(())
}
