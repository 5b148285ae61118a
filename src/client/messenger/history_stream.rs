//! Reads a zlib-compressed `HistorySync` as a stream (CLIENT-FEATURES §5.2): the top-level
//! fields are walked by tag and length and decoded one at a time (a conversation, a push name,
//! a mapping), so a history of hundreds of MB is never in memory at once. What one item may
//! cost is capped ([`Limits::max_item`]); a larger conversation is skipped (read past, never
//! held) and reported. Sans-IO over `std::io::Read`: the caller runs it on a blocking thread.

use std::io::{self, BufRead, BufReader, Read};

use prost::Message as _;

use crate::proto::wa;

/// What one history stream may cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest single top-level item (a conversation with its messages) decoded.
    pub max_item: u64,
    /// Most inflated bytes read in all (a zlib bomb ends here).
    pub max_total: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_item: 32 << 20,
            max_total: 4 << 30,
        }
    }
}

/// One top-level field of a `HistorySync`, decoded.
pub(crate) enum Item {
    /// `syncType` (1).
    SyncType(i32),
    /// `chunkOrder` (5).
    ChunkOrder(u32),
    /// `progress` (6).
    Progress(u32),
    /// A conversation with its messages (2).
    Conversation(Box<wa::Conversation>),
    /// A push name (7).
    Pushname(wa::Pushname),
    /// A PN ↔ LID mapping (15).
    Mapping(wa::PhoneNumberToLidMapping),
    /// An address-book contact (20).
    Contact(wa::InlineContact),
    /// The NCT salt (19).
    NctSalt(Vec<u8>),
    /// An item over [`Limits::max_item`], read past (field number, bytes).
    Skipped(u32, u64),
}

/// Names the item and its size only: conversations carry privacy tokens and messages, the
/// salt is a secret.
impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::SyncType(t) => write!(f, "SyncType({t})"),
            Item::ChunkOrder(c) => write!(f, "ChunkOrder({c})"),
            Item::Progress(p) => write!(f, "Progress({p})"),
            Item::Conversation(c) => write!(f, "Conversation({} messages)", c.messages.len()),
            Item::Pushname(_) => f.write_str("Pushname(..)"),
            Item::Mapping(_) => f.write_str("Mapping(..)"),
            Item::Contact(_) => f.write_str("Contact(..)"),
            Item::NctSalt(s) => write!(f, "NctSalt({} bytes)", s.len()),
            Item::Skipped(field, len) => write!(f, "Skipped({field}, {len})"),
        }
    }
}

/// Why a history stream could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    /// The bytes do not inflate (not zlib, or cut short).
    #[error("the history does not inflate: {0}")]
    Inflate(io::Error),
    /// The inflated bytes are not a `HistorySync`.
    #[error("the history is not a HistorySync: {0}")]
    Malformed(&'static str),
    /// More than [`Limits::max_total`] inflated bytes.
    #[error("the history inflates to more than {0} bytes")]
    TooLarge(u64),
}

/// Counts what is read through it.
struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// The items of one zlib-compressed `HistorySync`, in stream order.
pub(crate) struct HistoryStream<R: Read> {
    r: BufReader<Counted<flate2::read::ZlibDecoder<R>>>,
    limits: Limits,
    done: bool,
}

impl<R: Read> HistoryStream<R> {
    /// Reads the compressed history from `compressed`.
    pub(crate) fn new(compressed: R, limits: Limits) -> HistoryStream<R> {
        HistoryStream {
            r: BufReader::with_capacity(
                64 * 1024,
                Counted {
                    inner: flate2::read::ZlibDecoder::new(compressed),
                    read: 0,
                },
            ),
            limits,
            done: false,
        }
    }

    fn check_total(&self) -> Result<(), StreamError> {
        let read = self.r.get_ref().read;
        if read > self.limits.max_total {
            return Err(StreamError::TooLarge(self.limits.max_total));
        }
        Ok(())
    }

    /// A varint; `Ok(None)` at a clean end of stream before its first byte.
    fn varint(&mut self, first: bool) -> Result<Option<u64>, StreamError> {
        let mut v = 0u64;
        for i in 0..10 {
            let buf = self.r.fill_buf().map_err(StreamError::Inflate)?;
            let Some(&b) = buf.first() else {
                if i == 0 && first {
                    return Ok(None);
                }
                return Err(StreamError::Malformed("cut inside a varint"));
            };
            self.r.consume(1);
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(Some(v));
            }
        }
        Err(StreamError::Malformed("varint over 10 bytes"))
    }

    fn skip(&mut self, n: u64) -> Result<(), StreamError> {
        // Never past the budget, whatever length the field claims.
        let budget = self
            .limits
            .max_total
            .saturating_sub(self.r.get_ref().read)
            .saturating_add(1);
        let want = n.min(budget);
        let copied = io::copy(&mut (&mut self.r).take(want), &mut io::sink())
            .map_err(StreamError::Inflate)?;
        if copied != want {
            return Err(StreamError::Malformed("cut inside a field"));
        }
        self.check_total()?;
        if want < n {
            return Err(StreamError::TooLarge(self.limits.max_total));
        }
        Ok(())
    }

    fn bytes(&mut self, n: u64) -> Result<Vec<u8>, StreamError> {
        let mut buf = Vec::with_capacity(n as usize);
        (&mut self.r)
            .take(n)
            .read_to_end(&mut buf)
            .map_err(StreamError::Inflate)?;
        if buf.len() as u64 != n {
            return Err(StreamError::Malformed("cut inside a field"));
        }
        self.check_total()?;
        Ok(buf)
    }

    fn next_item(&mut self) -> Result<Option<Item>, StreamError> {
        loop {
            let Some(key) = self.varint(true)? else {
                return Ok(None);
            };
            let (field, wire) = ((key >> 3) as u32, key & 7);
            if field == 0 {
                return Err(StreamError::Malformed("field number 0"));
            }
            match wire {
                0 => {
                    let v = self
                        .varint(false)?
                        .ok_or(StreamError::Malformed("cut inside a varint"))?;
                    match field {
                        1 => return Ok(Some(Item::SyncType(v as i32))),
                        5 => return Ok(Some(Item::ChunkOrder(v as u32))),
                        6 => return Ok(Some(Item::Progress(v as u32))),
                        _ => continue,
                    }
                }
                1 => self.skip(8)?,
                5 => self.skip(4)?,
                2 => {
                    let len = self
                        .varint(false)?
                        .ok_or(StreamError::Malformed("cut inside a length"))?;
                    let wanted = matches!(field, 2 | 7 | 15 | 19 | 20);
                    if !wanted {
                        self.skip(len)?;
                        continue;
                    }
                    if len > self.limits.max_item {
                        self.skip(len)?;
                        return Ok(Some(Item::Skipped(field, len)));
                    }
                    let b = self.bytes(len)?;
                    let bad = |_| StreamError::Malformed("a field does not decode");
                    return Ok(Some(match field {
                        2 => Item::Conversation(Box::new(
                            wa::Conversation::decode(&b[..]).map_err(bad)?,
                        )),
                        7 => Item::Pushname(wa::Pushname::decode(&b[..]).map_err(bad)?),
                        15 => {
                            Item::Mapping(wa::PhoneNumberToLidMapping::decode(&b[..]).map_err(bad)?)
                        }
                        20 => Item::Contact(wa::InlineContact::decode(&b[..]).map_err(bad)?),
                        _ => Item::NctSalt(b),
                    }));
                }
                _ => return Err(StreamError::Malformed("unknown wire type")),
            }
        }
    }
}

impl<R: Read> Iterator for HistoryStream<R> {
    type Item = Result<Item, StreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_item().transpose();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zlib(b: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(b).unwrap();
        z.finish().unwrap()
    }

    fn sample() -> wa::HistorySync {
        wa::HistorySync {
            sync_type: Some(wa::HistorySyncType::Recent as i32),
            chunk_order: Some(3),
            progress: Some(40),
            conversations: vec![
                wa::Conversation {
                    id: Some("1@s.whatsapp.net".into()),
                    archived: Some(true),
                    ..Default::default()
                },
                wa::Conversation {
                    id: Some("2@s.whatsapp.net".into()),
                    name: Some("x".repeat(5000)),
                    ..Default::default()
                },
            ],
            pushnames: vec![wa::Pushname {
                id: Some("1@s.whatsapp.net".into()),
                pushname: Some("One".into()),
            }],
            nct_salt: Some(vec![7; 16]),
            ..Default::default()
        }
    }

    #[test]
    fn a_history_streams_item_by_item_in_field_order() {
        let z = zlib(&sample().encode_to_vec());
        let items: Vec<Item> = HistoryStream::new(&z[..], Limits::default())
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(matches!(items[0], Item::SyncType(3)));
        let convs: Vec<&wa::Conversation> = items
            .iter()
            .filter_map(|i| match i {
                Item::Conversation(c) => Some(&**c),
                _ => None,
            })
            .collect();
        assert_eq!(convs.len(), 2);
        assert_eq!(convs[0].archived, Some(true));
        assert!(items.iter().any(|i| matches!(i, Item::ChunkOrder(3))));
        assert!(items.iter().any(|i| matches!(i, Item::Progress(40))));
        assert!(
            items
                .iter()
                .any(|i| matches!(i, Item::Pushname(p) if p.pushname.as_deref() == Some("One")))
        );
        assert!(
            items
                .iter()
                .any(|i| matches!(i, Item::NctSalt(s) if s == &vec![7u8; 16]))
        );
    }

    #[test]
    fn a_conversation_over_the_item_cap_is_skipped_and_the_rest_still_read() {
        let z = zlib(&sample().encode_to_vec());
        let limits = Limits {
            max_item: 1000,
            max_total: 1 << 20,
        };
        let items: Vec<Item> = HistoryStream::new(&z[..], limits)
            .collect::<Result<_, _>>()
            .unwrap();
        let conversations = items
            .iter()
            .filter(|i| matches!(i, Item::Conversation(_)))
            .count();
        assert_eq!(conversations, 1);
        assert!(
            items
                .iter()
                .any(|i| matches!(i, Item::Skipped(2, n) if *n > 5000))
        );
        assert!(items.iter().any(|i| matches!(i, Item::Pushname(_))));
    }

    #[test]
    fn bad_zlib_bytes_that_are_not_a_history_and_a_bomb_are_errors() {
        let bad: Vec<_> = HistoryStream::new(&b"not zlib at all"[..], Limits::default()).collect();
        assert!(matches!(bad.last(), Some(Err(StreamError::Inflate(_)))));
        // Wire type 7 at once.
        let z = zlib(&[0x0f, 0x01, 0x02]);
        let bad: Vec<_> = HistoryStream::new(&z[..], Limits::default()).collect();
        assert!(matches!(bad.last(), Some(Err(StreamError::Malformed(_)))));
        let z = zlib(&sample().encode_to_vec());
        let limits = Limits {
            max_item: 1 << 20,
            max_total: 100,
        };
        let bad: Vec<_> = HistoryStream::new(&z[..], limits).collect();
        assert!(matches!(bad.last(), Some(Err(StreamError::TooLarge(100)))));
    }
}
