//! Fuzzes what a CDN (or a sender) controls in media: the encrypted body the decryptor verifies,
//! fed in chunks whose sizes the input picks, and the bytes the sniffer, the header parsers, the
//! thumbnailer and the probe's Ogg page walker read. Any input must give Ok or Err, never a
//! panic; the decryptor must never accept a body it did not see encrypted (the input cannot
//! forge the MAC).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wa_gateway::media::cipher::{Decryptor, Expect};
use wa_gateway::media::sniff::{accepts, dimensions, ogg_opus_duration, sniff};
use wa_gateway::media::thumb::jpeg_thumbnail;
use wa_gateway::media::{MediaType, Probe, WAVEFORM_LEN, expand};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let keys = expand(&[7; 32], MediaType::Document);
    let expect = Expect {
        file_sha256: [0; 32],
        file_enc_sha256: None,
        max_plain: u64::from(selector) * 64,
    };
    let mut dec = Decryptor::new(&keys, expect);
    let mut out = Vec::new();
    let chunk = usize::from(selector % 37) + 1;
    let mut ok = true;
    for piece in rest.chunks(chunk) {
        if dec.update(piece, &mut out).is_err() {
            ok = false;
            break;
        }
    }
    if ok {
        assert!(dec.finish(&mut out).is_err(), "a forged body verified");
    }

    let sniffed = sniff(rest);
    for ty in MediaType::MESSAGE_KINDS {
        let _ = accepts(ty, sniffed.unwrap_or("application/octet-stream"), sniffed);
    }
    let _ = dimensions(rest);
    let (head, tail) = rest.split_at(rest.len() / 2);
    let _ = ogg_opus_duration(head, tail);
    let _ = jpeg_thumbnail(rest);

    // The probe walks Ogg pages as the bytes stream past, cut where the input says.
    let mut probe = Probe::new();
    for piece in rest.chunks(chunk) {
        probe.update(piece);
    }
    let probed = probe.finish();
    assert!(probed.head.len() <= rest.len() && probed.tail.len() <= rest.len());
    if let Some(w) = probed.waveform {
        assert!(w.len() == WAVEFORM_LEN && w.iter().all(|&v| v <= 100));
    }
});
