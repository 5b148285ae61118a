//! Inline JPEG thumbnails (`JPEGThumbnail`, CLIENT-FEATURES §2.4): decode a JPEG or PNG, shrink it
//! by area averaging to [`THUMB_WIDTH`] pixels wide, encode JPEG at [`THUMB_QUALITY`]. The sizes
//! are Baileys' (`extractImageThumb`: 32 px wide, quality 50); WhatsApp's own are unknown
//! (CLIENT-FEATURES Appendix C.5).

use std::io::Cursor;

use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

use super::error::{MediaError, ThumbnailError};
use super::sniff::sniff;

/// Thumbnail width in pixels (Baileys `extractImageThumb` default).
pub const THUMB_WIDTH: u32 = 32;
/// Thumbnail JPEG quality (Baileys `extractImageThumb`).
pub const THUMB_QUALITY: u8 = 50;
/// The largest image, in pixels, we decode: its headers are read first, so a small file that
/// declares a huge canvas (a decompression bomb) is refused before any pixel buffer exists.
/// 25 MP covers what phones save by default (larger images simply go without a thumbnail);
/// the RGB buffer is then at most 75 MB, and the service makes one thumbnail at a time.
pub const MAX_PIXELS: u64 = 25_000_000;

/// Whether `bytes` look like a JPEG (start and end markers), for checking a thumbnail a caller
/// hands us.
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\xFF\xD8\xFF") && bytes.ends_with(b"\xFF\xD9")
}

/// An 8-bit RGB image.
struct Rgb {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

fn check_budget(width: u32, height: u32) -> Result<(), ThumbnailError> {
    if width == 0 || height == 0 || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ThumbnailError::TooManyPixels { width, height });
    }
    Ok(())
}

fn decode_jpeg(bytes: &[u8]) -> Result<Rgb, ThumbnailError> {
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(u16::MAX as usize)
        .set_max_height(u16::MAX as usize);
    let mut dec = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    dec.decode_headers()
        .map_err(|e| ThumbnailError::Decode(e.to_string()))?;
    let info = dec
        .info()
        .ok_or_else(|| ThumbnailError::Decode("no frame header".into()))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_budget(width, height)?;
    let pixels = dec
        .decode()
        .map_err(|e| ThumbnailError::Decode(e.to_string()))?;
    Ok(Rgb {
        width,
        height,
        pixels,
    })
}

fn decode_png(bytes: &[u8]) -> Result<Rgb, ThumbnailError> {
    let err = |e: png::DecodingError| ThumbnailError::Decode(e.to_string());
    let limits = png::Limits {
        bytes: (MAX_PIXELS * 8) as usize,
    };
    let mut dec = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    let info = dec.read_header_info().map_err(err)?;
    check_budget(info.width, info.height)?;
    // Palette → RGB, low bit depths → 8, 16-bit → 8: four 8-bit layouts remain.
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().map_err(err)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| ThumbnailError::Decode("image too large".into()))?;
    let mut buf = vec![0; size];
    let frame = reader.next_frame(&mut buf).map_err(err)?;
    buf.truncate(frame.buffer_size());
    let (width, height) = (frame.width, frame.height);
    // Transparent pixels are composited over white, as a chat bubble shows them.
    let over_white =
        |c: u8, a: u8| ((u16::from(c) * u16::from(a) + 255 * u16::from(255 - a)) / 255) as u8;
    let pixels = match frame.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf
            .chunks_exact(4)
            .flat_map(|p| [0, 1, 2].map(|i| over_white(p[i], p[3])))
            .collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => buf
            .chunks_exact(2)
            .flat_map(|p| [over_white(p[0], p[1]); 3])
            .collect(),
        png::ColorType::Indexed => {
            return Err(ThumbnailError::Decode("palette not expanded".into()));
        }
    };
    Ok(Rgb {
        width,
        height,
        pixels,
    })
}

/// Shrinks to `THUMB_WIDTH` wide (never enlarges), each output pixel the mean of the source
/// pixels it covers.
fn downscale(img: &Rgb) -> Result<Rgb, ThumbnailError> {
    let (sw, sh) = (u64::from(img.width), u64::from(img.height));
    if img.pixels.len() as u64 != sw * sh * 3 {
        return Err(ThumbnailError::Decode("short pixel buffer".into()));
    }
    let tw = sw.min(u64::from(THUMB_WIDTH));
    let th = ((sh * tw + sw / 2) / sw).max(1);
    let mut out = Vec::with_capacity((tw * th * 3) as usize);
    for ty in 0..th {
        let (y0, y1) = (ty * sh / th, ((ty + 1) * sh / th).max(ty * sh / th + 1));
        for tx in 0..tw {
            let (x0, x1) = (tx * sw / tw, ((tx + 1) * sw / tw).max(tx * sw / tw + 1));
            let mut sum = [0u64; 3];
            for y in y0..y1.min(sh) {
                let row = (y * sw * 3) as usize;
                let span = img
                    .pixels
                    .get(row + (x0 * 3) as usize..row + (x1.min(sw) * 3) as usize)
                    .unwrap_or_default();
                for p in span.chunks_exact(3) {
                    for (s, &c) in sum.iter_mut().zip(p) {
                        *s += u64::from(c);
                    }
                }
            }
            let n = ((y1.min(sh) - y0) * (x1.min(sw) - x0)).max(1);
            out.extend(sum.map(|s| ((s + n / 2) / n) as u8));
        }
    }
    Ok(Rgb {
        width: tw as u32,
        height: th as u32,
        pixels: out,
    })
}

/// Makes a JPEG thumbnail of a JPEG or PNG image: 32 px wide (or narrower if the image is),
/// aspect kept, quality 50. Images declaring more than [`MAX_PIXELS`] are refused unread.
pub fn jpeg_thumbnail(image: &[u8]) -> Result<Vec<u8>, MediaError> {
    let decoded = match sniff(image) {
        Some("image/jpeg") => decode_jpeg(image)?,
        Some("image/png") => decode_png(image)?,
        _ => return Err(ThumbnailError::Unsupported.into()),
    };
    let small = downscale(&decoded)?;
    let (Ok(w), Ok(h)) = (u16::try_from(small.width), u16::try_from(small.height)) else {
        return Err(ThumbnailError::Encode("thumbnail too tall".into()).into());
    };
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, THUMB_QUALITY)
        .encode(&small.pixels, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| ThumbnailError::Encode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::sniff::dimensions;

    fn png_bytes(width: u32, height: u32, color: png::ColorType, pixel: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&pixel.repeat((width * height) as usize))
            .unwrap();
        w.finish().unwrap();
        out
    }

    #[test]
    fn png_to_32_wide_jpeg_keeping_aspect() {
        let png = png_bytes(320, 200, png::ColorType::Rgb, &[200, 30, 30]);
        let thumb = jpeg_thumbnail(&png).unwrap();
        assert!(is_jpeg(&thumb));
        assert_eq!(dimensions(&thumb), Some((32, 20)));
        // And the thumbnail itself (a JPEG) thumbnails again, without enlarging.
        let again = jpeg_thumbnail(&thumb).unwrap();
        assert_eq!(dimensions(&again), Some((32, 20)));
        let tiny = jpeg_thumbnail(&png_bytes(4, 9, png::ColorType::Rgba, &[0, 0, 0, 0])).unwrap();
        assert_eq!(dimensions(&tiny), Some((4, 9)));
    }

    #[test]
    fn average_colour_survives() {
        let png = png_bytes(64, 64, png::ColorType::Grayscale, &[100]);
        let thumb = jpeg_thumbnail(&png).unwrap();
        let mut dec = JpegDecoder::new(ZCursor::new(&thumb[..]));
        let px = dec.decode().unwrap();
        assert!(px.iter().all(|&c| c.abs_diff(100) <= 3), "{:?}", &px[..6]);
    }

    #[test]
    fn refuses_bombs_and_other_formats() {
        // A PNG header declaring 100,000 x 100,000 pixels, with no data behind it.
        let mut bomb = png_bytes(1, 1, png::ColorType::Rgb, &[0, 0, 0]);
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            jpeg_thumbnail(&bomb),
            Err(MediaError::Thumbnail(ThumbnailError::TooManyPixels { .. }))
        ));
        assert_eq!(
            jpeg_thumbnail(b"GIF89a"),
            Err(MediaError::Thumbnail(ThumbnailError::Unsupported))
        );
        assert!(jpeg_thumbnail(b"\xFF\xD8\xFF\xE0").is_err());
        assert!(!is_jpeg(b"\xFF\xD8\xFF"));
    }

    /// The PNG chunk CRC (ISO 3309), so the bomb's IHDR passes the decoder's CRC check.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
