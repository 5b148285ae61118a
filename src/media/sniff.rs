//! What a file is, from its first bytes: mimetype sniffing, the mimetypes WhatsApp takes for each
//! media type, image dimensions and OGG Opus duration. Every function reads a bounded prefix (or
//! suffix) and returns `None` rather than panicking on any input.

use std::time::Duration;

use super::error::MediaError;
use super::keys::MediaType;

/// How many leading bytes [`sniff`] and [`dimensions`] want for a reliable answer.
pub const HEAD_LEN: usize = 64 * 1024;
/// How many trailing bytes [`ogg_opus_duration`] wants.
pub const TAIL_LEN: usize = 64 * 1024;

/// Opus mimetype as WhatsApp writes it for voice notes (Baileys `MIMETYPE_MAP.audio`).
pub const OGG_OPUS: &str = "audio/ogg; codecs=opus";

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?) as u32)
}
fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as u32)
}
fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 3)?;
    Some(u32::from(s[0]) | u32::from(s[1]) << 8 | u32::from(s[2]) << 16)
}
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The mimetype the magic bytes at the start of a file announce, if any of the formats WhatsApp
/// media uses. Plain text and unknown formats give `None`.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    if at(0, b"\xFF\xD8\xFF") {
        return Some("image/jpeg");
    }
    if at(0, b"\x89PNG\r\n\x1A\n") {
        return Some("image/png");
    }
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return Some("image/gif");
    }
    if at(0, b"RIFF") && at(8, b"WEBP") {
        return Some("image/webp");
    }
    if at(0, b"RIFF") && at(8, b"WAVE") {
        return Some("audio/wav");
    }
    if at(4, b"ftyp") {
        // ISO base media: the major brand says which flavour (ftyps.com registry).
        let brand = head.get(8..12)?;
        return Some(match brand {
            b"3gp4" | b"3gp5" | b"3gp6" | b"3gp7" | b"3ge6" | b"3ge7" | b"3gg6" | b"3g2a" => {
                "video/3gpp"
            }
            b"M4A " | b"M4B " | b"M4P " => "audio/mp4",
            b"qt  " => "video/quicktime",
            _ => "video/mp4",
        });
    }
    if at(0, b"OggS") {
        // The first page's first packet names the codec; the header is 27 bytes plus one byte
        // per segment (RFC 3533 §6).
        let segments = *head.get(26)? as usize;
        return Some(if at(27 + segments, b"OpusHead") {
            OGG_OPUS
        } else {
            "audio/ogg"
        });
    }
    if at(0, b"#!AMR-WB\n") {
        return Some("audio/amr-wb");
    }
    if at(0, b"#!AMR\n") {
        return Some("audio/amr");
    }
    if at(0, b"ID3") {
        return Some("audio/mpeg");
    }
    if let [0xFF, b1, ..] = *head {
        // MPEG audio frame sync (11 set bits). Layer bits 00 mean ADTS AAC, else MP3.
        if b1 & 0xE0 == 0xE0 {
            return Some(if b1 & 0x06 == 0 {
                "audio/aac"
            } else {
                "audio/mpeg"
            });
        }
    }
    if at(0, b"%PDF-") {
        return Some("application/pdf");
    }
    if at(0, b"PK\x03\x04") {
        // docx, xlsx, pptx, odt, apk and jar are zips too; their mimetype is the sender's word.
        return Some("application/zip");
    }
    None
}

/// The part of a mimetype before its parameters, lowercased.
fn base(mimetype: &str) -> String {
    mimetype
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The base mimetypes WhatsApp takes for a media type; `None` means any.
fn allowed(ty: MediaType) -> Option<&'static [&'static str]> {
    match ty {
        // WhatsApp shows JPEG and PNG images; WebP is accepted too (Baileys sends any image).
        MediaType::Image => Some(&["image/jpeg", "image/png", "image/webp"]),
        MediaType::Sticker => Some(&["image/webp"]),
        MediaType::Video => Some(&["video/mp4", "video/3gpp"]),
        _ => None,
    }
}

/// Whether a send of `ty` declared as `declared_mimetype`, whose bytes sniffed as `sniffed`, is
/// one WhatsApp takes: images are JPEG, PNG or WebP, stickers WebP, video MP4 or 3GPP, audio any
/// `audio/*`, documents anything. Bytes that sniff as another kind than declared are a
/// [`MediaError::MimeMismatch`]; bytes that sniff as nothing are let through (the declared type
/// is all there is to go on).
pub fn accepts(
    ty: MediaType,
    declared_mimetype: &str,
    sniffed: Option<&'static str>,
) -> Result<(), MediaError> {
    let declared = base(declared_mimetype);
    let not_allowed = || MediaError::MimeNotAllowed {
        kind: ty.as_str(),
        declared: declared_mimetype.to_owned(),
    };
    let mismatch = |sniffed| MediaError::MimeMismatch {
        declared: declared_mimetype.to_owned(),
        sniffed,
    };
    match ty {
        MediaType::Image | MediaType::Sticker => {
            if !allowed(ty).unwrap_or_default().contains(&declared.as_str()) {
                return Err(not_allowed());
            }
            // Phones decode by the declared type: a PNG labelled JPEG is a mismatch too.
            match sniffed {
                Some(s) if base(s) != declared => Err(mismatch(s)),
                _ => Ok(()),
            }
        }
        MediaType::Video => {
            let ok = allowed(ty).unwrap_or_default();
            if !ok.contains(&declared.as_str()) {
                return Err(not_allowed());
            }
            // MP4 and 3GPP are both ISO base media; either brand plays.
            match sniffed {
                Some(s) if !ok.contains(&s) => Err(mismatch(s)),
                _ => Ok(()),
            }
        }
        MediaType::Audio => {
            if !declared.starts_with("audio/") {
                return Err(not_allowed());
            }
            // Audio-only MP4 often carries a video brand (isom, mp42, 3gp4).
            match sniffed {
                Some(s) if !(s.starts_with("audio/") || s == "video/mp4" || s == "video/3gpp") => {
                    Err(mismatch(s))
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// Width and height of a JPEG, PNG, GIF or WebP image from its header.
pub fn dimensions(head: &[u8]) -> Option<(u32, u32)> {
    match sniff(head)? {
        // IHDR is always the first chunk (PNG spec §5.6).
        "image/png" => Some((be32(head, 16)?, be32(head, 20)?)),
        "image/gif" => Some((le16(head, 6)?, le16(head, 8)?)),
        "image/webp" => webp_dimensions(head),
        "image/jpeg" => jpeg_dimensions(head),
        _ => None,
    }
}

fn webp_dimensions(head: &[u8]) -> Option<(u32, u32)> {
    // RFC 9649: the first chunk after "RIFF" size "WEBP" decides the layout.
    match head.get(12..16)? {
        // Lossy: 3-byte frame tag, start code 9d 01 2a, 14-bit width and height.
        b"VP8 " => {
            if head.get(23..26)? != b"\x9D\x01\x2A" {
                return None;
            }
            Some((le16(head, 26)? & 0x3FFF, le16(head, 28)? & 0x3FFF))
        }
        // Lossless: signature 0x2f, then width-1 and height-1 in 14 bits each.
        b"VP8L" => {
            if *head.get(20)? != 0x2F {
                return None;
            }
            let bits = le32(head, 21)?;
            Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        // Extended: canvas width-1 and height-1, 24 bits each.
        b"VP8X" => Some((le24(head, 24)? + 1, le24(head, 27)? + 1)),
        _ => None,
    }
}

fn jpeg_dimensions(head: &[u8]) -> Option<(u32, u32)> {
    // Walk the marker segments to the first start-of-frame (ITU T.81 §B.1.1); every step moves
    // forward, so the loop ends within `head`.
    let mut i = 2;
    loop {
        if *head.get(i)? != 0xFF {
            return None;
        }
        let marker = *head.get(i + 1)?;
        match marker {
            0xFF => i += 1, // fill byte
            0x01 | 0xD0..=0xD7 => i += 2,
            0xD9 | 0xDA => return None, // end of image or scan before any frame header
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let h = be16(head, i + 5)?;
                let w = be16(head, i + 7)?;
                return Some((w, h));
            }
            _ => i += 2 + be16(head, i + 2)? as usize,
        }
    }
}

/// The Ogg CRC's byte table (polynomial 0x04c11db7, no reflection), made at compile time.
const OGG_CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
            k += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
};

/// The Ogg page CRC (RFC 3533 §6: polynomial 0x04c11db7, no reflection, zero init), with the
/// page's own CRC field (bytes 22..26) read as zeros.
pub fn ogg_crc(page: &[u8]) -> u32 {
    let mut crc = 0u32;
    for (i, &b) in page.iter().enumerate() {
        // The CRC field itself (bytes 22..26) counts as zeros.
        let b = if (22..26).contains(&i) { 0 } else { b };
        crc = (crc << 8) ^ OGG_CRC_TABLE[((crc >> 24) as u8 ^ b) as usize];
    }
    crc
}

/// A complete, CRC-valid Ogg page starting at `at`: (granule position, serial).
fn ogg_page(b: &[u8], at: usize) -> Option<(u64, u32)> {
    let hdr = b.get(at..at + 27)?;
    if &hdr[..4] != b"OggS" || hdr[4] != 0 {
        return None;
    }
    let segments = hdr[26] as usize;
    let table = b.get(at + 27..at + 27 + segments)?;
    let body: usize = table.iter().map(|&s| s as usize).sum();
    let page = b.get(at..at + 27 + segments + body)?;
    if ogg_crc(page) != le32(hdr, 22)? {
        return None;
    }
    let granule = u64::from_le_bytes(hdr.get(6..14)?.try_into().ok()?);
    Some((granule, le32(hdr, 14)?))
}

/// How many `OggS` candidates the duration search checks from the end.
const MAX_PAGE_TRIES: usize = 16;

/// Duration of an Ogg Opus file: the last page's granule position minus the pre-skip, at
/// 48 kHz (RFC 7845 §4). `head` is the file's start (for OpusHead's pre-skip), `tail` its last
/// bytes ([`TAIL_LEN`] is plenty: a page is at most 65,307 bytes), so a large file is never loaded.
pub fn ogg_opus_duration(head: &[u8], tail: &[u8]) -> Option<Duration> {
    let (_, serial) = ogg_page(head, 0)?;
    let segments = *head.get(26)? as usize;
    let opus_head = 27 + segments;
    if head.get(opus_head..opus_head + 8)? != b"OpusHead" {
        return None;
    }
    let pre_skip = u64::from(le16(head, opus_head + 10)?);
    // Search backwards for the last valid page of the same stream with a granule position
    // (-1 means no packet ends on that page).
    // A bounded number of candidates: a tail made of `OggS` patterns must not cost a CRC of
    // each (a real file's last page is found at the first or second).
    let mut end = tail.len();
    let mut tries = 0;
    while let Some(at) = tail[..end].windows(4).rposition(|w| w == b"OggS") {
        tries += 1;
        if tries > MAX_PAGE_TRIES {
            return None;
        }
        if let Some((granule, s)) = ogg_page(tail, at)
            && s == serial
            && granule != u64::MAX
        {
            let samples = granule.saturating_sub(pre_skip);
            return Some(Duration::from_micros(
                samples.saturating_mul(1_000_000) / 48_000,
            ));
        }
        end = at;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ogg_crc_is_the_catalogued_crc32_without_its_final_xor() {
        // CRC-32/CKSUM (poly 0x04c11db7, init 0, not reflected) checks "123456789" as
        // 0x765e7680 after its final xor with 0xffffffff; Ogg's CRC has no final xor.
        assert_eq!(ogg_crc(b"123456789"), 0x765e_7680 ^ 0xffff_ffff);
    }

    #[test]
    fn sniffs_magic() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0\0\x10JFIF"), Some("image/jpeg"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1A\n"), Some("image/png"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"\0\0\0\x18ftypmp42"), Some("video/mp4"));
        assert_eq!(sniff(b"\0\0\0\x18ftyp3gp4"), Some("video/3gpp"));
        assert_eq!(sniff(b"\0\0\0\x18ftypM4A "), Some("audio/mp4"));
        assert_eq!(sniff(b"ID3\x04"), Some("audio/mpeg"));
        assert_eq!(sniff(b"\xFF\xFB\x90"), Some("audio/mpeg"));
        assert_eq!(sniff(b"\xFF\xF1\x50"), Some("audio/aac"));
        assert_eq!(sniff(b"%PDF-1.7"), Some("application/pdf"));
        assert_eq!(sniff(b"PK\x03\x04"), Some("application/zip"));
        assert_eq!(sniff(b"#!AMR\n"), Some("audio/amr"));
        assert_eq!(sniff(b"hello world"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"\0\0\0\0ftyp"), None);
    }

    #[test]
    fn accepts_per_type() {
        assert_eq!(
            accepts(MediaType::Image, "image/jpeg", Some("image/jpeg")),
            Ok(())
        );
        assert_eq!(accepts(MediaType::Image, "image/png", None), Ok(()));
        assert!(matches!(
            accepts(MediaType::Image, "image/jpeg", Some("application/pdf")),
            Err(MediaError::MimeMismatch {
                sniffed: "application/pdf",
                ..
            })
        ));
        assert!(matches!(
            accepts(MediaType::Image, "image/gif", Some("image/gif")),
            Err(MediaError::MimeNotAllowed { .. })
        ));
        assert_eq!(
            accepts(MediaType::Sticker, "image/webp", Some("image/webp")),
            Ok(())
        );
        assert!(accepts(MediaType::Sticker, "image/png", Some("image/png")).is_err());
        assert_eq!(accepts(MediaType::Audio, OGG_OPUS, Some(OGG_OPUS)), Ok(()));
        assert_eq!(
            accepts(MediaType::Audio, "audio/mp4", Some("video/mp4")),
            Ok(())
        );
        assert!(accepts(MediaType::Audio, "video/mp4", None).is_err());
        assert_eq!(
            accepts(MediaType::Video, "video/mp4", Some("video/3gpp")),
            Ok(())
        );
        assert!(accepts(MediaType::Video, "video/mp4", Some("image/jpeg")).is_err());
        assert_eq!(
            accepts(MediaType::Document, "x/anything", Some("application/zip")),
            Ok(())
        );
    }

    #[test]
    fn dimensions_from_headers() {
        let mut png = b"\x89PNG\r\n\x1A\n\0\0\0\x0DIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        assert_eq!(dimensions(&png), Some((640, 480)));
        assert_eq!(dimensions(b"GIF89a\x20\x03\x58\x02"), Some((800, 600)));
        // A JPEG with an APP0 segment, then SOF0 for 300x200.
        let jpeg = b"\xFF\xD8\xFF\xE0\0\x04ab\xFF\xC0\0\x11\x08\0\xC8\x01\x2C\x03";
        assert_eq!(dimensions(jpeg), Some((300, 200)));
        let vp8x = b"RIFF\0\0\0\0WEBPVP8X\x0A\0\0\0\0\0\0\0\x1F\x03\0\x57\x02\0";
        assert_eq!(dimensions(vp8x), Some((800, 600)));
        assert_eq!(dimensions(b"\xFF\xD8\xFF\xE0\xFF\xFF"), None);
    }

    fn ogg_page_bytes(granule: u64, serial: u32, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut p = b"OggS\0\0".to_vec();
        p.extend_from_slice(&granule.to_le_bytes());
        p.extend_from_slice(&serial.to_le_bytes());
        p.extend_from_slice(&seq.to_le_bytes());
        p.extend_from_slice(&[0; 4]);
        p.push(1);
        p.push(body.len() as u8);
        p.extend_from_slice(body);
        let crc = ogg_crc(&p);
        p[22..26].copy_from_slice(&crc.to_le_bytes());
        p
    }

    #[test]
    fn ogg_opus_duration_from_last_page() {
        let mut head_body = b"OpusHead\x01\x01".to_vec();
        head_body.extend_from_slice(&312u16.to_le_bytes());
        head_body.extend_from_slice(&[0x80, 0xBB, 0, 0, 0, 0, 0]);
        let mut file = ogg_page_bytes(0, 7, 0, &head_body);
        assert_eq!(sniff(&file), Some(OGG_OPUS));
        file.extend(ogg_page_bytes(48_000, 7, 1, b"audio..."));
        // 3.5 s plus the pre-skip; a trailing "OggS" inside garbage does not fool it.
        file.extend(ogg_page_bytes(168_000 + 312, 7, 2, b"more audio"));
        file.extend_from_slice(b"junk OggS junk");
        let d = ogg_opus_duration(&file, &file[file.len() / 2..]);
        assert_eq!(d, Some(Duration::from_millis(3500)));
        assert_eq!(ogg_opus_duration(&file, b""), None);
        assert_eq!(ogg_opus_duration(b"OggS", &file), None);
    }

    #[test]
    fn a_tail_of_fake_pages_costs_a_bounded_search() {
        let mut head_body = b"OpusHead\x01\x01".to_vec();
        head_body.extend_from_slice(&312u16.to_le_bytes());
        head_body.extend_from_slice(&[0x80, 0xBB, 0, 0, 0, 0, 0]);
        let head = ogg_page_bytes(0, 7, 0, &head_body);
        let last = ogg_page_bytes(48_000 + 312, 7, 1, b"audio");
        // The real last page, then a tail of page-like patterns that are no pages.
        let mut tail = last.clone();
        tail.extend(b"OggS\0".repeat(13_000));
        tail.truncate(TAIL_LEN);
        assert_eq!(ogg_opus_duration(&head, &tail), None);
        // A few fakes after it still leave the real one within reach.
        let mut tail = last;
        tail.extend(b"OggS\0".repeat(MAX_PAGE_TRIES - 1));
        assert_eq!(
            ogg_opus_duration(&head, &tail),
            Some(Duration::from_secs(1))
        );
    }
}
