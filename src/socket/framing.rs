//! 3-byte big-endian length framing (PROTOCOL.md §1.3), sans-IO. One WebSocket message may
//! carry several frames or part of one; the decoder reassembles.

use bytes::{Buf, Bytes, BytesMut};

use super::error::FramingError;

/// Largest payload a 3-byte length can announce: also the references' 16 MiB read limit.
pub const MAX_FRAME: usize = (1 << 24) - 1;

/// Largest handshake frame (and `ED` routing block) accepted. A ServerHello with its
/// certificate chain or a ClientFinish with its payload is well under 1 KiB; before the peer has
/// authenticated, a frame may not pin more memory than this.
pub const MAX_HANDSHAKE_FRAME: usize = 8 * 1024;

/// Appends `len(payload)` (3 bytes BE) and `payload` to `out`.
pub fn write_frame(out: &mut Vec<u8>, payload: &[u8]) -> Result<(), FramingError> {
    let len = payload.len();
    if len > MAX_FRAME {
        return Err(FramingError::TooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    Ok(())
}

/// Whether the decoder must first consume the client's connection header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intro {
    /// Expect `WA 06 03` (optionally preceded by an `ED` edge-routing block).
    Expected([u8; 4]),
    /// Done (or never expected, on the client side).
    Done,
}

/// Reassembles frames from arbitrary chunks. Memory grows only with the bytes received, never
/// with a length the peer merely announced.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max: usize,
    intro: Intro,
}

impl FrameDecoder {
    /// A decoder for the server's frames (no header), capped at `max` bytes a frame. Start
    /// at [`MAX_HANDSHAKE_FRAME`] and raise the cap with [`Self::set_max`] after the handshake.
    pub fn new(max: usize) -> FrameDecoder {
        FrameDecoder {
            buf: BytesMut::new(),
            max: max.min(MAX_FRAME),
            intro: Intro::Done,
        }
    }

    /// A decoder for a client's frames: the first bytes must be `header`.
    pub fn with_intro(max: usize, header: [u8; 4]) -> FrameDecoder {
        FrameDecoder {
            intro: Intro::Expected(header),
            ..FrameDecoder::new(max)
        }
    }

    /// Changes the cap on frames not yet returned (raised once the peer is authenticated).
    pub fn set_max(&mut self, max: usize) {
        self.max = max.min(MAX_FRAME);
    }

    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame's payload, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FramingError> {
        if let Intro::Expected(header) = self.intro {
            if !self.consume_intro(header)? {
                return Ok(None);
            }
            self.intro = Intro::Done;
        }
        if self.buf.len() < 3 {
            return Ok(None);
        }
        let len = (usize::from(self.buf[0]) << 16)
            | (usize::from(self.buf[1]) << 8)
            | usize::from(self.buf[2]);
        if len > self.max {
            return Err(FramingError::TooLarge { len, max: self.max });
        }
        if self.buf.len() < 3 + len {
            return Ok(None);
        }
        self.buf.advance(3);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Consumes `[ED 00 01 len3 routing]` `WA 06 03`; false if more bytes are needed.
    fn consume_intro(&mut self, header: [u8; 4]) -> Result<bool, FramingError> {
        let mut skip = 0;
        if self.buf.len() >= 2 && self.buf[..2] == *b"ED" {
            if self.buf.len() < 7 {
                return Ok(false);
            }
            if self.buf[2..4] != [0, 1] {
                return Err(FramingError::BadHeader);
            }
            let len = (usize::from(self.buf[4]) << 16)
                | (usize::from(self.buf[5]) << 8)
                | usize::from(self.buf[6]);
            if len > MAX_HANDSHAKE_FRAME {
                return Err(FramingError::TooLarge {
                    len,
                    max: MAX_HANDSHAKE_FRAME,
                });
            }
            skip = 7 + len;
        }
        if self.buf.len() < skip + 4 {
            let have = &self.buf[skip.min(self.buf.len())..];
            return if header.starts_with(have) {
                Ok(false)
            } else {
                Err(FramingError::BadHeader)
            };
        }
        if self.buf[skip..skip + 4] != header {
            return Err(FramingError::BadHeader);
        }
        self.buf.advance(skip + 4);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassembles_split_and_joined_frames() {
        let mut wire = Vec::new();
        for n in [0usize, 1, 300, 70_000] {
            write_frame(&mut wire, &vec![n as u8; n]).unwrap();
        }
        // Byte-by-byte and all-at-once give the same frames.
        for chunk in [1usize, 7, wire.len()] {
            let mut d = FrameDecoder::new(MAX_FRAME);
            let mut got = Vec::new();
            for c in wire.chunks(chunk) {
                d.push(c);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f.len());
                }
            }
            assert_eq!(got, [0, 1, 300, 70_000]);
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn enforces_cap_and_header() {
        let mut d = FrameDecoder::new(10);
        d.push(&[0, 0, 11]);
        assert_eq!(
            d.next_frame(),
            Err(FramingError::TooLarge { len: 11, max: 10 })
        );

        let mut d = FrameDecoder::with_intro(100, *b"WA\x06\x03");
        d.push(b"WA");
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&[6, 3, 0, 0, 1, 9]);
        assert_eq!(d.next_frame().unwrap().unwrap().as_ref(), &[9]);

        let mut d = FrameDecoder::with_intro(100, *b"WA\x06\x03");
        d.push(b"WA\x06\x02\x00\x00\x00");
        assert_eq!(d.next_frame(), Err(FramingError::BadHeader));

        let mut d = FrameDecoder::with_intro(100, *b"WA\x06\x03");
        d.push(b"ED\x00\x01\x00\x00\x02xyWA\x06\x03\x00\x00\x01\x05");
        assert_eq!(d.next_frame().unwrap().unwrap().as_ref(), &[5]);
    }

    #[test]
    fn announced_lengths_reserve_nothing() {
        // 7 bytes announcing a 16 MiB routing block: refused at once.
        let mut d = FrameDecoder::with_intro(MAX_HANDSHAKE_FRAME, *b"WA\x06\x03");
        d.push(b"ED\x00\x01\xff\xff\xff");
        assert_eq!(
            d.next_frame(),
            Err(FramingError::TooLarge {
                len: MAX_FRAME,
                max: MAX_HANDSHAKE_FRAME
            })
        );

        // A handshake frame announcing more than the handshake cap: refused.
        let mut d = FrameDecoder::with_intro(MAX_HANDSHAKE_FRAME, *b"WA\x06\x03");
        d.push(b"WA\x06\x03\x00\x40\x01");
        assert_eq!(
            d.next_frame(),
            Err(FramingError::TooLarge {
                len: 0x4001,
                max: MAX_HANDSHAKE_FRAME
            })
        );

        // After the handshake a 16 MiB frame is allowed, but only what arrived is buffered.
        let mut d = FrameDecoder::new(MAX_HANDSHAKE_FRAME);
        d.set_max(MAX_FRAME);
        d.push(&[0xff, 0xff, 0xff, 1, 2, 3, 4]);
        assert_eq!(d.next_frame(), Ok(None));
        assert!(
            d.buf.capacity() < 4096,
            "reserved {} bytes for 7 received",
            d.buf.capacity()
        );
    }
}
