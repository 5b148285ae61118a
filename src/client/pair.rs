//! The companion's side of QR pairing (PROTOCOL.md §6.2–§6.3), as pure functions over nodes:
//! refs from `pair-device`, the QR string, and `pair-success` → verified identity + the
//! `pair-device-sign` reply. Every signature is checked; nothing is trusted on structure alone.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use prost::Message;
use sha2::Sha256;

use crate::binary::{Jid, Node, Server, Value};
use crate::proto::wa::{
    AdvDeviceIdentity, AdvEncryptionType, AdvSignedDeviceIdentity, AdvSignedDeviceIdentityHmac,
};
use crate::signal::{KeyPair, xeddsa_verify};

/// Prefix of the QR text: the phone's camera opens the linked-devices screen with it.
pub const QR_PREFIX: &str = "https://wa.me/settings/linked_devices#";

/// Signature prefixes (whatsmeow `pair.go`, Baileys `validate-connection.ts`).
const ACCOUNT_SIG_PREFIX: [u8; 2] = [6, 0];
const DEVICE_SIG_PREFIX: [u8; 2] = [6, 1];
const HOSTED_ACCOUNT_SIG_PREFIX: [u8; 2] = [6, 5];

/// Why a pair-success was refused. Each maps to the error the references send back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    /// The stanza lacks `device-identity` or `device`, or a protobuf in it is malformed.
    #[error("malformed pair-success: {0}")]
    Malformed(&'static str),
    /// The HMAC over the device identity does not match our ADV secret.
    #[error("pair-success HMAC does not match our ADV secret")]
    HmacMismatch,
    /// The phone's account signature over our identity key is invalid.
    #[error("pair-success account signature is invalid")]
    AccountSignatureMismatch,
}

impl PairError {
    /// The `<error code text>` the references reply with.
    pub fn reply_code(&self) -> (u16, &'static str) {
        match self {
            PairError::Malformed(_) => (500, "internal-error"),
            PairError::HmacMismatch => (401, "hmac-mismatch"),
            PairError::AccountSignatureMismatch => (401, "signature-mismatch"),
        }
    }
}

/// Our keys that a QR code carries.
#[derive(Clone, Copy)]
pub struct QrKeys<'a> {
    /// Noise static public key.
    pub noise_public: &'a [u8; 32],
    /// Signal identity public key.
    pub identity_public: &'a [u8; 32],
    /// ADV secret (32 random bytes).
    pub adv_secret: &'a [u8; 32],
}

impl std::fmt::Debug for QrKeys<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Whoever holds the ADV secret can forge our pairing: it never reaches a log.
        f.debug_struct("QrKeys")
            .field(
                "noise_public",
                &crate::util::hex::Short(self.noise_public.as_slice()),
            )
            .field(
                "identity_public",
                &crate::util::hex::Short(self.identity_public.as_slice()),
            )
            .finish_non_exhaustive()
    }
}

/// The QR text for one ref: `prefix ref,b64(noise),b64(identity),b64(adv),platform`, exactly as
/// the reference clients build it (platform: one character, e.g. `1` = Chrome).
pub fn qr_string(r#ref: &str, keys: QrKeys<'_>, platform: char) -> String {
    format!(
        "{QR_PREFIX}{},{},{},{},{}",
        r#ref,
        B64.encode(keys.noise_public),
        B64.encode(keys.identity_public),
        B64.encode(keys.adv_secret),
        platform
    )
}

/// A `<iq type="set"><pair-device><ref>…</ref>…</pair-device></iq>`: its id and the refs.
pub fn parse_pair_device(iq: &Node) -> Option<(String, Vec<String>)> {
    let pd = iq.child("pair-device")?;
    let id = iq.get_str("id")?.into_owned();
    let refs = pd
        .child_nodes()
        .iter()
        .filter(|n| n.tag == "ref")
        .filter_map(|n| match &n.content {
            crate::binary::Content::Bytes(b) => String::from_utf8(b.to_vec()).ok(),
            crate::binary::Content::Text(v) => Some(v.as_str().into_owned()),
            _ => None,
        })
        .collect();
    Some((id, refs))
}

/// The `<iq type="result">` acknowledging a server iq.
pub fn iq_result(id: &str) -> Node {
    Node::new("iq")
        .attr("to", Jid::server_jid())
        .attr("type", "result")
        .attr("id", id.to_owned())
}

/// What a verified pair-success established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paired {
    /// Our device JID on the phone-number server (`phone:device@s.whatsapp.net`).
    pub jid: Jid,
    /// Our device JID on the LID server, when given.
    pub lid: Option<Jid>,
    /// The phone's platform (e.g. `android`), when given.
    pub platform: Option<String>,
    /// Business name, when the account is a business.
    pub business_name: Option<String>,
    /// ADVDeviceIdentity.keyIndex.
    pub key_index: u32,
    /// The primary phone's identity key (its Signal identity as device 0).
    pub account_signature_key: [u8; 32],
    /// ADVSignedDeviceIdentity with our device signature and the account key: what later goes
    /// out as `<device-identity>` with pkmsgs.
    pub signed_identity: Vec<u8>,
    /// The iq id of the pair-success (the reply's id).
    pub iq_id: String,
}

impl Paired {
    /// What we keep about ourselves from this link (the push name arrives later).
    pub fn me(&self) -> super::store::Me {
        super::store::Me {
            jid: self.jid.clone(),
            lid: self.lid.clone(),
            platform: self.platform.clone(),
            business_name: self.business_name.clone(),
            push_name: None,
            signed_identity: self.signed_identity.clone(),
            account_signature_key: self.account_signature_key,
        }
    }
}

/// A companion device JID we can log in with: `<digits fitting u64>:<device ≥ 1>@s.whatsapp.net`.
pub fn is_phone_device_jid(jid: &Jid) -> bool {
    jid.server == Server::User
        && jid.device > 0
        && !jid.user.is_empty()
        && jid.user.bytes().all(|c| c.is_ascii_digit())
        && jid.user.parse::<u64>().is_ok()
}

/// Verifies a `<iq><pair-success>…` against our identity key and ADV secret, and signs our
/// device identity. On success returns what to persist and the `pair-device-sign` reply.
pub fn handle_pair_success(
    iq: &Node,
    identity: &KeyPair,
    adv_secret: &[u8; 32],
) -> Result<(Paired, Node), PairError> {
    let ps = iq
        .child("pair-success")
        .ok_or(PairError::Malformed("no pair-success"))?;
    let iq_id = iq
        .get_str("id")
        .ok_or(PairError::Malformed("no iq id"))?
        .into_owned();
    let container = ps
        .child("device-identity")
        .and_then(Node::content_bytes)
        .ok_or(PairError::Malformed("no device-identity"))?;
    let device = ps
        .child("device")
        .ok_or(PairError::Malformed("no device"))?;
    let jid = device
        .get_jid("jid")
        .ok_or(PairError::Malformed("no device jid"))?;
    // Validated before anything is stored: a JID we could not log in with would strand the link.
    if !is_phone_device_jid(&jid) {
        return Err(PairError::Malformed(
            "device jid is not a phone-number device JID",
        ));
    }
    let lid = device.get_jid("lid").filter(|l| l.server == Server::Lid);
    let platform = ps
        .child("platform")
        .and_then(|p| p.get_str("name"))
        .map(|s| s.into_owned());
    let business_name = ps
        .child("biz")
        .and_then(|p| p.get_str("name"))
        .map(|s| s.into_owned());

    let hmac_msg = AdvSignedDeviceIdentityHmac::decode(&container[..])
        .map_err(|_| PairError::Malformed("ADVSignedDeviceIdentityHMAC"))?;
    let details = hmac_msg
        .details
        .as_deref()
        .ok_or(PairError::Malformed("HMAC details"))?;
    let hosted_container = hmac_msg.account_type == Some(AdvEncryptionType::Hosted as i32);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(adv_secret)
        .map_err(|_| PairError::Malformed("adv key"))?;
    if hosted_container {
        mac.update(&HOSTED_ACCOUNT_SIG_PREFIX);
    }
    mac.update(details);
    mac.verify_slice(hmac_msg.hmac.as_deref().unwrap_or_default())
        .map_err(|_| PairError::HmacMismatch)?;

    let mut signed = AdvSignedDeviceIdentity::decode(details)
        .map_err(|_| PairError::Malformed("ADVSignedDeviceIdentity"))?;
    let inner = signed
        .details
        .clone()
        .ok_or(PairError::Malformed("identity details"))?;
    let adv = AdvDeviceIdentity::decode(&inner[..])
        .map_err(|_| PairError::Malformed("ADVDeviceIdentity"))?;
    let account_key: [u8; 32] = signed
        .account_signature_key
        .as_deref()
        .and_then(|k| k.try_into().ok())
        .ok_or(PairError::Malformed("account signature key"))?;
    let account_sig: [u8; 64] = signed
        .account_signature
        .as_deref()
        .and_then(|k| k.try_into().ok())
        .ok_or(PairError::AccountSignatureMismatch)?;
    let prefix = if adv.device_type == Some(AdvEncryptionType::Hosted as i32) {
        HOSTED_ACCOUNT_SIG_PREFIX
    } else {
        ACCOUNT_SIG_PREFIX
    };
    let msg = [&prefix[..], &inner, &identity.public].concat();
    if !xeddsa_verify(&account_key, &msg, &account_sig) {
        return Err(PairError::AccountSignatureMismatch);
    }

    let dev_msg = [
        &DEVICE_SIG_PREFIX[..],
        &inner,
        &identity.public,
        &account_key,
    ]
    .concat();
    signed.device_signature = Some(identity.sign(&dev_msg).to_vec());
    let signed_identity = signed.encode_to_vec();
    // The reply carries the identity without the account key (whatsmeow, Baileys).
    let mut reply_identity = signed;
    reply_identity.account_signature_key = None;
    let key_index = adv.key_index.unwrap_or(0);
    let reply = iq_result(&iq_id).children(vec![Node::new("pair-device-sign").children(vec![
        Node::new("device-identity")
            .attr("key-index", Value::from(key_index.to_string()))
            .bytes(reply_identity.encode_to_vec()),
    ])]);
    Ok((
        Paired {
            jid,
            lid,
            platform,
            business_name,
            key_index,
            account_signature_key: account_key,
            signed_identity,
            iq_id,
        },
        reply,
    ))
}

/// The error reply to a refused pair-success.
pub fn pair_error_reply(iq_id: &str, err: &PairError) -> Node {
    let (code, text) = err.reply_code();
    Node::new("iq")
        .attr("to", Jid::server_jid())
        .attr("type", "error")
        .attr("id", iq_id.to_owned())
        .children(vec![
            Node::new("error")
                .attr("code", code.to_string())
                .attr("text", text),
        ])
}
