//! QR codes for pairing: the text as a PNG data URL a frontend can show as an `<img>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use qrcode::{Color, EcLevel, QrCode};

/// Pixels per QR module and the quiet zone in modules (ISO 18004 asks for 4).
const SCALE: usize = 6;
const QUIET: usize = 4;

/// Why a QR image could not be made (only for absurdly long text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot render QR code: {0}")]
pub struct QrError(String);

/// Renders `text` as a black-on-white grayscale PNG.
pub fn qr_png(text: &str) -> Result<Vec<u8>, QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L)
        .map_err(|e| QrError(e.to_string()))?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c != Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
        for y in my * SCALE..(my + 1) * SCALE {
            pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| QrError(e.to_string()))?;
        w.write_image_data(&pixels)
            .map_err(|e| QrError(e.to_string()))?;
    }
    Ok(out)
}

/// `data:image/png;base64,…` of [`qr_png`].
pub fn qr_data_url(text: &str) -> Result<String, QrError> {
    Ok(format!(
        "data:image/png;base64,{}",
        B64.encode(qr_png(text)?)
    ))
}
