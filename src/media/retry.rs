//! Media-retry ("rmr") crypto, both sides (CLIENT-FEATURES §2.6): the key is
//! HKDF-SHA256(mediaKey, info "WhatsApp Media Retry Notification", 32 bytes); requests and
//! answers are AES-256-GCM under it with the message id as associated data and a 12-byte nonce
//! the caller draws (whatsmeow `mediaretry.go`, whatsapp-rust `media_retry.rs`).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use prost::Message as _;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::MediaError;
use crate::proto::wa;

/// The retry key of a media key.
pub fn retry_key(media_key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, media_key)
        .expand(b"WhatsApp Media Retry Notification", &mut out[..])
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

fn seal(media_key: &[u8; 32], stanza_id: &str, plain: &[u8], iv: [u8; 12]) -> Vec<u8> {
    let key = retry_key(media_key);
    let cipher = Aes256Gcm::new_from_slice(&key[..]).expect("32-byte key");
    cipher
        .encrypt(
            Nonce::from_slice(&iv),
            Payload {
                msg: plain,
                aad: stanza_id.as_bytes(),
            },
        )
        .expect("AES-GCM encrypts any length a stanza carries")
}

fn open(
    media_key: &[u8; 32],
    stanza_id: &str,
    ct: &[u8],
    iv: [u8; 12],
) -> Result<Vec<u8>, MediaError> {
    let key = retry_key(media_key);
    let cipher = Aes256Gcm::new_from_slice(&key[..]).map_err(|_| MediaError::RetryDecrypt)?;
    cipher
        .decrypt(
            Nonce::from_slice(&iv),
            Payload {
                msg: ct,
                aad: stanza_id.as_bytes(),
            },
        )
        .map_err(|_| MediaError::RetryDecrypt)
}

/// The request our device sends: `ServerErrorReceipt { stanzaId }`, sealed.
pub fn encrypt_request(media_key: &[u8; 32], stanza_id: &str, iv: [u8; 12]) -> Vec<u8> {
    let plain = wa::ServerErrorReceipt {
        stanza_id: Some(stanza_id.to_owned()),
    }
    .encode_to_vec();
    seal(media_key, stanza_id, &plain, iv)
}

/// Opens a request (the phone's side): it must name the message it came with.
pub fn decrypt_request(
    media_key: &[u8; 32],
    stanza_id: &str,
    ct: &[u8],
    iv: [u8; 12],
) -> Result<(), MediaError> {
    let plain = open(media_key, stanza_id, ct, iv)?;
    let r = wa::ServerErrorReceipt::decode(&plain[..]).map_err(|_| MediaError::RetryMalformed)?;
    if r.stanza_id.as_deref() != Some(stanza_id) {
        return Err(MediaError::RetryStanzaMismatch);
    }
    Ok(())
}

/// The phone's answer, sealed.
pub fn encrypt_notification(
    media_key: &[u8; 32],
    stanza_id: &str,
    n: &wa::MediaRetryNotification,
    iv: [u8; 12],
) -> Vec<u8> {
    seal(media_key, stanza_id, &n.encode_to_vec(), iv)
}

/// Opens the phone's answer; it must name the message it answers (whatsapp-rust's check).
pub fn decrypt_notification(
    media_key: &[u8; 32],
    stanza_id: &str,
    ct: &[u8],
    iv: [u8; 12],
) -> Result<wa::MediaRetryNotification, MediaError> {
    let plain = open(media_key, stanza_id, ct, iv)?;
    let n =
        wa::MediaRetryNotification::decode(&plain[..]).map_err(|_| MediaError::RetryMalformed)?;
    if n.stanza_id.as_deref() != Some(stanza_id) {
        return Err(MediaError::RetryStanzaMismatch);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_key_matches_the_documented_check_value() {
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = i as u8;
        }
        // CLIENT-FEATURES Appendix B.
        assert_eq!(
            crate::util::hex::encode(&retry_key(&key)[..]),
            "c84dfe50a708e0ec382a7ad2ba40135256f41b652cebe2129661d27871111cb2"
        );
    }

    #[test]
    fn requests_and_answers_open_only_for_their_message() {
        let key = [7u8; 32];
        let req = encrypt_request(&key, "ID1", [1; 12]);
        decrypt_request(&key, "ID1", &req, [1; 12]).unwrap();
        assert_eq!(
            decrypt_request(&key, "ID2", &req, [1; 12]),
            Err(MediaError::RetryDecrypt)
        );
        let n = wa::MediaRetryNotification {
            stanza_id: Some("ID1".into()),
            direct_path: Some("/v/new".into()),
            result: Some(wa::media_retry_notification::ResultType::Success as i32),
            message_secret: None,
        };
        let ct = encrypt_notification(&key, "ID1", &n, [2; 12]);
        assert_eq!(decrypt_notification(&key, "ID1", &ct, [2; 12]).unwrap(), n);
        assert!(decrypt_notification(&[8; 32], "ID1", &ct, [2; 12]).is_err());
        // Sealed for ID1 but naming ID9 inside: refused.
        let lying = wa::MediaRetryNotification {
            stanza_id: Some("ID9".into()),
            ..n
        };
        let ct = encrypt_notification(&key, "ID1", &lying, [2; 12]);
        assert_eq!(
            decrypt_notification(&key, "ID1", &ct, [2; 12]),
            Err(MediaError::RetryStanzaMismatch)
        );
    }
}
