//! Property tests of the media core: encrypt→decrypt is the identity for any length and any
//! chunking, any single bit flipped anywhere in a body is caught, and arbitrary bytes never panic
//! the decryptor, the sniffers, the header parsers or the thumbnailer.

use proptest::prelude::*;
use wa_gateway::media::cipher::{self, Decryptor, Encryptor, Expect};
use wa_gateway::media::sniff::{dimensions, ogg_opus_duration, sniff};
use wa_gateway::media::thumb::{is_jpeg, jpeg_thumbnail};
use wa_gateway::media::{MediaError, MediaType, accepts, expand};

fn any_type() -> impl Strategy<Value = MediaType> {
    prop::sample::select(MediaType::MESSAGE_KINDS.to_vec())
}

/// Splits `data` at the given cut points (taken modulo its length).
fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut prev = 0;
    for c in at.into_iter().chain([data.len()]) {
        out.push(&data[prev..c]);
        prev = c;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_any_length_any_chunking(
        key in any::<[u8; 32]>(),
        ty in any_type(),
        plain in prop::collection::vec(any::<u8>(), 0..5000),
        enc_cuts in prop::collection::vec(any::<usize>(), 0..8),
        dec_cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let keys = expand(&key, ty);
        let (one_shot, done) = cipher::encrypt(&keys, &plain);
        let mut enc = Encryptor::new(&keys);
        let mut body = Vec::new();
        for p in pieces(&plain, &enc_cuts) {
            enc.update(p, &mut body);
        }
        prop_assert_eq!(enc.finish(&mut body), done);
        prop_assert_eq!(&body, &one_shot);

        let expect = Expect {
            file_sha256: done.file_sha256,
            file_enc_sha256: Some(done.file_enc_sha256),
            max_plain: plain.len() as u64,
        };
        let mut dec = Decryptor::new(&keys, expect);
        let mut out = Vec::new();
        for p in pieces(&body, &dec_cuts) {
            dec.update(p, &mut out).unwrap();
        }
        prop_assert_eq!(dec.finish(&mut out).unwrap().file_length, plain.len() as u64);
        prop_assert_eq!(out, plain);
    }

    #[test]
    fn any_single_bit_flip_fails(
        key in any::<[u8; 32]>(),
        plain in prop::collection::vec(any::<u8>(), 0..600),
        bit in any::<usize>(),
        check_enc_hash in any::<bool>(),
    ) {
        let keys = expand(&key, MediaType::Image);
        let (mut body, done) = cipher::encrypt(&keys, &plain);
        let bit = bit % (body.len() * 8);
        body[bit / 8] ^= 1 << (bit % 8);
        let expect = Expect {
            file_sha256: done.file_sha256,
            file_enc_sha256: check_enc_hash.then_some(done.file_enc_sha256),
            max_plain: plain.len() as u64,
        };
        let got = cipher::decrypt(&keys, &body, expect);
        let want = if check_enc_hash { MediaError::EncHashMismatch } else { MediaError::BadMac };
        prop_assert_eq!(got, Err(want));
    }

    #[test]
    fn arbitrary_bodies_never_panic(
        key in any::<[u8; 32]>(),
        body in prop::collection::vec(any::<u8>(), 0..300),
        cuts in prop::collection::vec(any::<usize>(), 0..5),
        max_plain in 0u64..400,
    ) {
        let keys = expand(&key, MediaType::Audio);
        let expect = Expect { file_sha256: [0; 32], file_enc_sha256: None, max_plain };
        let mut dec = Decryptor::new(&keys, expect);
        let mut out = Vec::new();
        let mut failed = false;
        for p in pieces(&body, &cuts) {
            if dec.update(p, &mut out).is_err() {
                failed = true;
                break;
            }
        }
        if !failed {
            prop_assert!(dec.finish(&mut out).is_err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parsers(
        data in prop::collection::vec(any::<u8>(), 0..2048),
        tail in prop::collection::vec(any::<u8>(), 0..512),
        ty in any_type(),
        declared in "[a-z/;= ]{0,30}",
    ) {
        let sniffed = sniff(&data);
        let _ = accepts(ty, &declared, sniffed);
        let _ = dimensions(&data);
        let _ = ogg_opus_duration(&data, &tail);
        let _ = is_jpeg(&data);
        let _ = jpeg_thumbnail(&data);
    }

    /// Valid magic followed by garbage reaches the format-specific paths.
    #[test]
    fn magic_then_garbage_never_panics(
        magic in prop::sample::select(vec![
            &b"\xFF\xD8\xFF"[..],
            b"\x89PNG\r\n\x1A\n\0\0\0\x0DIHDR",
            b"RIFF\0\0\0\0WEBPVP8 ",
            b"RIFF\0\0\0\0WEBPVP8L",
            b"RIFF\0\0\0\0WEBPVP8X",
            b"GIF89a",
            b"OggS\0\x02",
            b"\0\0\0\x18ftyp",
        ]),
        rest in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut data = magic.to_vec();
        data.extend_from_slice(&rest);
        let _ = sniff(&data);
        let _ = dimensions(&data);
        let _ = ogg_opus_duration(&data, &data);
        let _ = jpeg_thumbnail(&data);
    }
}
