//! Real, small media files made on the spot, so a developer offline has a photo and a voice note
//! to send (through the control API's `GET /samples/{name}`, or a phone's `media.sample`) that
//! phones and our checks take as what they claim to be: a JPEG that decodes, an Ogg Opus file with
//! valid page CRCs, a length and a loudness that varies.

use crate::media::sniff::{OGG_OPUS, ogg_crc};

/// The samples by name, with their mimetypes.
pub const SAMPLES: [(&str, &str); 3] = [
    ("photo.jpg", "image/jpeg"),
    ("photo.png", "image/png"),
    ("voice.ogg", OGG_OPUS),
];

/// Sample `name` ([`SAMPLES`]) and its mimetype.
pub fn sample(name: &str) -> Option<(Vec<u8>, &'static str)> {
    let mime = SAMPLES.iter().find(|(n, _)| *n == name)?.1;
    let bytes = match name {
        "photo.jpg" => photo_jpeg(320, 240),
        "photo.png" => photo_png(64, 48),
        _ => voice_ogg(5),
    };
    Some((bytes, mime))
}

/// RGB pixels of a diagonal gradient.
fn gradient(width: u16, height: u16) -> Vec<u8> {
    let mut px = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for y in 0..u32::from(height) {
        for x in 0..u32::from(width) {
            px.extend_from_slice(&[
                (x * 255 / u32::from(width)) as u8,
                (y * 255 / u32::from(height)) as u8,
                128,
            ]);
        }
    }
    px
}

/// A `width` × `height` baseline JPEG.
pub fn photo_jpeg(width: u16, height: u16) -> Vec<u8> {
    let mut out = Vec::new();
    // Encoding a buffer of the right size into a Vec cannot fail.
    let _ = jpeg_encoder::Encoder::new(&mut out, 80).encode(
        &gradient(width, height),
        width,
        height,
        jpeg_encoder::ColorType::Rgb,
    );
    out
}

/// A `width` × `height` RGB PNG.
pub fn photo_png(width: u16, height: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, u32::from(width), u32::from(height));
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    if let Ok(mut w) = enc.write_header() {
        let _ = w.write_image_data(&gradient(width, height));
    }
    out
}

/// Opus pre-skip: samples the decoder drops at the start (RFC 7845 §5.1; 312 is libopus').
const PRE_SKIP: u16 = 312;
/// Samples per 20 ms packet at 48 kHz.
const PACKET_SAMPLES: u64 = 960;

/// One Ogg page of `serial` holding `packets` whole, with its CRC.
fn ogg_page(flags: u8, granule: u64, serial: u32, seq: u32, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut table = Vec::new();
    for p in packets {
        table.extend(std::iter::repeat_n(255u8, p.len() / 255));
        table.push((p.len() % 255) as u8);
    }
    let mut page = b"OggS\0".to_vec();
    page.push(flags);
    page.extend_from_slice(&granule.to_le_bytes());
    page.extend_from_slice(&serial.to_le_bytes());
    page.extend_from_slice(&seq.to_le_bytes());
    page.extend_from_slice(&[0; 4]);
    page.push(table.len() as u8);
    page.extend_from_slice(&table);
    for p in packets {
        page.extend_from_slice(p);
    }
    let crc = ogg_crc(&page);
    page[22..26].copy_from_slice(&crc.to_le_bytes());
    page
}

/// A mono Ogg Opus voice note of `seconds`: 20 ms CELT packets whose sizes swell and fade like
/// speech (a decoder plays them as noise of that loudness), one page per second.
pub fn voice_ogg(seconds: u32) -> Vec<u8> {
    let serial = 0x5741_4757;
    let mut head = b"OpusHead\x01\x01".to_vec();
    head.extend_from_slice(&PRE_SKIP.to_le_bytes());
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&[0, 0, 0]);
    let mut tags = b"OpusTags".to_vec();
    let vendor = b"wa-gateway simulator";
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor);
    tags.extend_from_slice(&0u32.to_le_bytes());
    let mut out = ogg_page(0x02, 0, serial, 0, &[head]);
    out.extend(ogg_page(0x00, 0, serial, 1, &[tags]));
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut granule = u64::from(PRE_SKIP);
    for s in 0..seconds {
        let packets: Vec<Vec<u8>> = (0..50u32)
            .map(|i| {
                // Loudness: a syllable every 0.4 s on top of a slow swell.
                let t = f64::from(s * 50 + i) / 50.0;
                let level = (t * std::f64::consts::PI / 0.4).sin().abs()
                    * (0.5 + 0.5 * (t * 0.7).sin().abs());
                let len = 8 + (level * 110.0) as usize;
                // TOC 0xF8: CELT-only, fullband, 20 ms, mono, one frame (RFC 6716 §3.1).
                let mut p = vec![0xF8u8];
                p.extend((0..len).map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                }));
                p
            })
            .collect();
        granule += PACKET_SAMPLES * packets.len() as u64;
        let flags = if s + 1 == seconds { 0x04 } else { 0x00 };
        out.extend(ogg_page(flags, granule, serial, s + 2, &packets));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Probe, dimensions, jpeg_thumbnail, ogg_opus_duration, sniff};

    #[test]
    fn samples_are_what_they_claim() {
        for (name, mime) in SAMPLES {
            let (bytes, m) = sample(name).unwrap();
            assert_eq!(m, mime);
            assert_eq!(sniff(&bytes), Some(mime), "{name}");
        }
        let jpg = photo_jpeg(320, 240);
        assert_eq!(dimensions(&jpg), Some((320, 240)));
        assert!(jpeg_thumbnail(&jpg).is_ok());
        assert_eq!(dimensions(&photo_png(64, 48)), Some((64, 48)));
        let ogg = voice_ogg(5);
        let d = ogg_opus_duration(&ogg, &ogg).unwrap();
        // The last granule counts the pre-skip too: exactly 5 s of sound.
        assert_eq!(d.as_millis(), 5000);
        let mut p = Probe::new();
        p.update(&ogg);
        let w = p.finish().waveform.unwrap();
        assert_eq!(w.iter().max(), Some(&100));
        assert!(w.iter().min().unwrap() < &40, "it swells and fades: {w:?}");
        assert!(sample("nope.gif").is_none());
    }
}
