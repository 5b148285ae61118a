//! Media-retry ("rmr") crypto, both sides (CLIENT-FEATURES §2.6): the companion asks the phone
//! to re-upload expired media with an encrypted `ServerErrorReceipt`, the phone answers with an
//! encrypted `MediaRetryNotification`. Both are AES-256-GCM under a key derived from the media
//! key, with the message id as AAD and a 16-byte tag appended (whatsmeow `mediaretry.go`; Baileys
//! `encryptMediaRetryRequest`, `decryptMediaRetryData`). The caller supplies the 12-byte IV, so
//! randomness stays injected.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use prost::Message as _;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::error::MediaError;
use crate::proto::wa::{MediaRetryNotification, ServerErrorReceipt};

/// HKDF info for the retry key (whatsmeow `getMediaRetryKey`).
const RETRY_INFO: &[u8] = b"WhatsApp Media Retry Notification";

/// The AES-256-GCM key for a media key's retry messages: HKDF-SHA256, no salt, L = 32.
pub fn retry_key(media_key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is within HKDF-SHA256's output limit, so `expand` cannot fail.
    let _ = Hkdf::<Sha256>::new(None, media_key).expand(RETRY_INFO, &mut key[..]);
    key
}

fn seal(media_key: &[u8; 32], stanza_id: &str, plain: &[u8], iv: [u8; 12]) -> Vec<u8> {
    let key = retry_key(media_key);
    let cipher = Aes256Gcm::new((&*key).into());
    let payload = Payload {
        msg: plain,
        aad: stanza_id.as_bytes(),
    };
    // AES-GCM only fails for inputs near 64 GiB; these are a few dozen bytes.
    cipher
        .encrypt(Nonce::from_slice(&iv), payload)
        .unwrap_or_else(|_| unreachable!())
}

fn open(
    media_key: &[u8; 32],
    stanza_id: &str,
    ct: &[u8],
    iv: &[u8],
) -> Result<Vec<u8>, MediaError> {
    // The IV comes from the peer's `<enc_iv>`: any other length than 12 cannot authenticate.
    let iv: [u8; 12] = iv.try_into().map_err(|_| MediaError::RetryDecrypt)?;
    let key = retry_key(media_key);
    let payload = Payload {
        msg: ct,
        aad: stanza_id.as_bytes(),
    };
    Aes256Gcm::new((&*key).into())
        .decrypt(Nonce::from_slice(&iv), payload)
        .map_err(|_| MediaError::RetryDecrypt)
}

/// The companion's request (`<enc_p>` of the `server-error` receipt): `ServerErrorReceipt`
/// holding the message id, encrypted with that id as AAD.
pub fn encrypt_request(media_key: &[u8; 32], stanza_id: &str, iv: [u8; 12]) -> Vec<u8> {
    let receipt = ServerErrorReceipt {
        stanza_id: Some(stanza_id.to_owned()),
    };
    seal(media_key, stanza_id, &receipt.encode_to_vec(), iv)
}

/// The phone's side of [`encrypt_request`]: authenticates the request and checks that it names
/// the receipt's message.
pub fn decrypt_request(
    media_key: &[u8; 32],
    stanza_id: &str,
    ct: &[u8],
    iv: &[u8],
) -> Result<(), MediaError> {
    let plain = open(media_key, stanza_id, ct, iv)?;
    let receipt =
        ServerErrorReceipt::decode(plain.as_slice()).map_err(|_| MediaError::RetryMalformed)?;
    if receipt.stanza_id.as_deref() != Some(stanza_id) {
        return Err(MediaError::RetryStanzaMismatch);
    }
    Ok(())
}

/// The phone's answer (`<enc_p>` of the `mediaretry` notification), encrypted with the message
/// id as AAD.
pub fn encrypt_notification(
    media_key: &[u8; 32],
    stanza_id: &str,
    notification: &MediaRetryNotification,
    iv: [u8; 12],
) -> Vec<u8> {
    seal(media_key, stanza_id, &notification.encode_to_vec(), iv)
}

/// Reads the phone's answer. A notification whose inner stanza id is not `stanza_id` is
/// rejected, as whatsapp-rust does (`parse_media_retry_notification`): it would otherwise swap one
/// message's media path into another.
pub fn decrypt_notification(
    media_key: &[u8; 32],
    stanza_id: &str,
    ct: &[u8],
    iv: &[u8],
) -> Result<MediaRetryNotification, MediaError> {
    let plain = open(media_key, stanza_id, ct, iv)?;
    let n =
        MediaRetryNotification::decode(plain.as_slice()).map_err(|_| MediaError::RetryMalformed)?;
    if n.stanza_id.as_deref() != Some(stanza_id) {
        return Err(MediaError::RetryStanzaMismatch);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wa::media_retry_notification::ResultType;
    use crate::util::hex;

    const KEY: [u8; 32] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
        25, 26, 27, 28, 29, 30, 31,
    ];

    /// CLIENT-FEATURES Appendix B check value.
    #[test]
    fn appendix_b_retry_key() {
        assert_eq!(
            hex::encode(&retry_key(&KEY)[..]),
            "c84dfe50a708e0ec382a7ad2ba40135256f41b652cebe2129661d27871111cb2"
        );
    }

    #[test]
    fn request_round_trip_and_binding() {
        let ct = encrypt_request(&KEY, "3EB0AA", [9; 12]);
        assert_eq!(decrypt_request(&KEY, "3EB0AA", &ct, &[9; 12]), Ok(()));
        // The id is the AAD: another id does not authenticate.
        let other = decrypt_request(&KEY, "3EB0AB", &ct, &[9; 12]);
        assert_eq!(other, Err(MediaError::RetryDecrypt));
        let short_iv = decrypt_request(&KEY, "3EB0AA", &ct, &[9; 11]);
        assert_eq!(short_iv, Err(MediaError::RetryDecrypt));
    }

    #[test]
    fn notification_round_trip_and_id_check() {
        let n = MediaRetryNotification {
            stanza_id: Some("3EB0AA".into()),
            direct_path: Some("/v/t62/abc.enc?ccb=1".into()),
            result: Some(ResultType::Success as i32),
            message_secret: None,
        };
        let ct = encrypt_notification(&KEY, "3EB0AA", &n, [1; 12]);
        assert_eq!(
            decrypt_notification(&KEY, "3EB0AA", &ct, &[1; 12]),
            Ok(n.clone())
        );
        // Sealed for the right AAD but naming another message inside.
        let ct = encrypt_notification(&KEY, "3EB0BB", &n, [1; 12]);
        let swapped = decrypt_notification(&KEY, "3EB0BB", &ct, &[1; 12]);
        assert_eq!(swapped, Err(MediaError::RetryStanzaMismatch));
        let mut bad = encrypt_notification(&KEY, "3EB0AA", &n, [1; 12]);
        bad[0] ^= 1;
        let tampered = decrypt_notification(&KEY, "3EB0AA", &bad, &[1; 12]);
        assert_eq!(tampered, Err(MediaError::RetryDecrypt));
    }
}
