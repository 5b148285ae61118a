//! The bounds-checked reader both node decoders share: every length is checked against the
//! input, so no input can make a decoder index out of range.

use super::error::DecodeError;
use super::tag;

/// A position in the input.
pub(crate) struct Cursor<'a> {
    pub(crate) src: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(src: &'a [u8]) -> Cursor<'a> {
        Cursor { src, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.src.len() - self.pos
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .src
            .get(self.pos)
            .ok_or(DecodeError::UnexpectedEof { offset: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    /// Skips `n` bytes and returns where they start.
    #[inline]
    pub(crate) fn skip(&mut self, n: usize) -> Result<usize, DecodeError> {
        let start = self.pos;
        let end = start
            .checked_add(n)
            .filter(|&e| e <= self.src.len())
            .ok_or(DecodeError::UnexpectedEof { offset: start })?;
        self.pos = end;
        Ok(start)
    }

    /// The next `n` bytes.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let start = self.skip(n)?;
        Ok(&self.src[start..start + n])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Length of a BINARY_8/20/32 value whose tag was just read.
    pub(crate) fn binary_len(&mut self, t: u8) -> Result<usize, DecodeError> {
        Ok(match t {
            tag::BINARY_8 => self.u8()? as usize,
            tag::BINARY_20 => {
                let b = self.take(3)?;
                (((b[0] & 0x0f) as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize
            }
            _ => {
                let b = self.take(4)?;
                u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
            }
        })
    }

    /// Size of a list whose tag was just read.
    pub(crate) fn list_size(&mut self, t: u8, context: &'static str) -> Result<usize, DecodeError> {
        match t {
            tag::LIST_EMPTY => Ok(0),
            tag::LIST_8 => Ok(self.u8()? as usize),
            tag::LIST_16 => Ok(self.u16()? as usize),
            _ => Err(DecodeError::InvalidTag {
                tag: t,
                context,
                offset: self.pos - 1,
            }),
        }
    }
}
