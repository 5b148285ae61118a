//! What a file is, learnt while it streams past once: its first and last bytes (for
//! [`sniff`](super::sniff::sniff), [`dimensions`](super::sniff::dimensions) and
//! [`ogg_opus_duration`](super::sniff::ogg_opus_duration)) and, for Ogg Opus, a voice-note
//! waveform. Memory is bounded whatever the file's length, so a 2 GiB document costs the same as
//! a 2 KiB one.
//!
//! The waveform is read from packet sizes, not decoded samples: Opus in VBR (what every phone
//! records) spends bytes where the signal has energy, so the bytes per stretch of time trace the
//! loudness without an audio decoder. WhatsApp draws the 64 values as bars, 0–100, as Baileys
//! computes them from decoded samples; ours have the same shape and scale.

use super::sniff::{HEAD_LEN, TAIL_LEN};

/// Values in a voice note's waveform (WhatsApp draws 64 bars).
pub const WAVEFORM_LEN: usize = 64;

/// Buckets of packet sizes kept while reading; when full, neighbours merge, so memory stays put.
const MAX_BUCKETS: usize = 2048;

/// Collects what a file's description needs while its bytes are written elsewhere.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    head: Vec<u8>,
    tail: Vec<u8>,
    len: u64,
    ogg: OggPackets,
}

/// What a [`Probe`] learnt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probed {
    /// The first [`HEAD_LEN`] bytes (or all, if fewer).
    pub head: Vec<u8>,
    /// The last [`TAIL_LEN`] bytes (or all, if fewer).
    pub tail: Vec<u8>,
    /// For a well-formed Ogg stream of audio packets: [`WAVEFORM_LEN`] values 0–100.
    pub waveform: Option<Vec<u8>>,
}

impl Probe {
    /// A probe that has seen nothing.
    pub fn new() -> Probe {
        Probe::default()
    }

    /// Takes the next bytes of the file.
    pub fn update(&mut self, chunk: &[u8]) {
        self.len += chunk.len() as u64;
        if self.head.len() < HEAD_LEN {
            let take = (HEAD_LEN - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        if chunk.len() >= TAIL_LEN {
            self.tail.clear();
            self.tail
                .extend_from_slice(&chunk[chunk.len() - TAIL_LEN..]);
        } else {
            // Room for two tails, trimmed back to one when full: each byte moves once on
            // average, where trimming on every write would move the whole tail each time.
            self.tail.extend_from_slice(chunk);
            if self.tail.len() > 2 * TAIL_LEN {
                self.tail.drain(..self.tail.len() - TAIL_LEN);
            }
        }
        self.ogg.update(chunk);
    }

    /// How many bytes it has seen.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it has seen none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What it learnt.
    pub fn finish(mut self) -> Probed {
        if self.tail.len() > TAIL_LEN {
            self.tail.drain(..self.tail.len() - TAIL_LEN);
        }
        Probed {
            waveform: self.ogg.waveform(),
            head: self.head,
            tail: self.tail,
        }
    }
}

/// Where the Ogg page reader is (RFC 3533 §6: a 27-byte header, a segment table of one lacing
/// value per segment, then the segments).
#[derive(Debug, Clone)]
enum OggState {
    Header {
        buf: [u8; 27],
        have: usize,
    },
    Segments {
        serial: u32,
        n: usize,
        have: usize,
    },
    Body {
        left: u64,
    },
    /// Not Ogg, or broken: no waveform.
    Dead,
}

/// Packet sizes of the first logical stream of an Ogg file, summed per bucket of
/// `per_bucket` consecutive packets.
#[derive(Debug, Clone)]
struct OggPackets {
    state: OggState,
    table: Vec<u8>,
    serial: Option<u32>,
    /// Bytes of the packet in progress (a packet may span segments and pages).
    current: u64,
    /// Packets completed in the stream.
    packets: u64,
    buckets: Vec<u64>,
    per_bucket: u64,
    /// Packets in the last bucket.
    fill: u64,
}

impl Default for OggPackets {
    fn default() -> Self {
        OggPackets {
            state: OggState::Header {
                buf: [0; 27],
                have: 0,
            },
            table: Vec::new(),
            serial: None,
            current: 0,
            packets: 0,
            buckets: Vec::new(),
            per_bucket: 1,
            fill: 0,
        }
    }
}

impl OggPackets {
    fn update(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            match &mut self.state {
                OggState::Dead => return,
                OggState::Header { buf, have } => {
                    let take = (27 - *have).min(chunk.len());
                    buf[*have..*have + take].copy_from_slice(&chunk[..take]);
                    *have += take;
                    chunk = &chunk[take..];
                    if *have == 27 {
                        let buf = *buf;
                        if &buf[..4] != b"OggS" || buf[4] != 0 {
                            self.state = OggState::Dead;
                            return;
                        }
                        let serial = u32::from_le_bytes([buf[14], buf[15], buf[16], buf[17]]);
                        self.table.clear();
                        self.state = OggState::Segments {
                            serial,
                            n: buf[26] as usize,
                            have: 0,
                        };
                        self.after_segments();
                    }
                }
                OggState::Segments { n, have, .. } => {
                    let take = (*n - *have).min(chunk.len());
                    self.table.extend_from_slice(&chunk[..take]);
                    *have += take;
                    chunk = &chunk[take..];
                    self.after_segments();
                }
                OggState::Body { left } => {
                    let take = (*left).min(chunk.len() as u64);
                    *left -= take;
                    chunk = &chunk[take as usize..];
                    if *left == 0 {
                        self.state = OggState::Header {
                            buf: [0; 27],
                            have: 0,
                        };
                    }
                }
            }
        }
    }

    /// Once a page's segment table is whole: counts its packets and skips its body.
    fn after_segments(&mut self) {
        let OggState::Segments { serial, n, have } = self.state else {
            return;
        };
        if have < n {
            return;
        }
        let ours = *self.serial.get_or_insert(serial) == serial;
        let body: u64 = self.table.iter().map(|&v| u64::from(v)).sum();
        if ours {
            for i in 0..self.table.len() {
                let v = self.table[i];
                self.current += u64::from(v);
                if v < 255 {
                    let size = std::mem::take(&mut self.current);
                    self.packet(size);
                }
            }
        }
        self.state = if body == 0 {
            OggState::Header {
                buf: [0; 27],
                have: 0,
            }
        } else {
            OggState::Body { left: body }
        };
    }

    fn packet(&mut self, size: u64) {
        self.packets += 1;
        // The first two packets are the codec's headers (OpusHead, OpusTags), not sound.
        if self.packets <= 2 {
            return;
        }
        if self.fill == 0 {
            if self.buckets.len() == MAX_BUCKETS {
                // Full: halve the resolution. MAX_BUCKETS is even and every bucket is
                // complete here, so pairs merge evenly.
                let merged: Vec<u64> = self.buckets.chunks(2).map(|p| p.iter().sum()).collect();
                self.buckets = merged;
                self.per_bucket *= 2;
            }
            self.buckets.push(0);
        }
        if let Some(last) = self.buckets.last_mut() {
            *last += size;
        }
        self.fill += 1;
        if self.fill == self.per_bucket {
            self.fill = 0;
        }
    }

    fn waveform(&self) -> Option<Vec<u8>> {
        if matches!(self.state, OggState::Dead) || self.buckets.is_empty() {
            return None;
        }
        // Average bytes per packet in each bucket; the last may hold fewer packets.
        let n = self.buckets.len();
        let avg: Vec<f64> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, &sum)| {
                let count = if i + 1 == n && self.fill != 0 {
                    self.fill
                } else {
                    self.per_bucket
                };
                sum as f64 / count as f64
            })
            .collect();
        let values: Vec<f64> = (0..WAVEFORM_LEN)
            .map(|j| {
                let lo = j * n / WAVEFORM_LEN;
                let hi = ((j + 1) * n / WAVEFORM_LEN).max(lo + 1).min(n);
                avg[lo..hi].iter().sum::<f64>() / (hi - lo) as f64
            })
            .collect();
        let max = values.iter().copied().fold(0.0, f64::max);
        Some(
            values
                .iter()
                .map(|v| {
                    if max > 0.0 {
                        (100.0 * v / max).floor() as u8
                    } else {
                        0
                    }
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ogg page (CRC left zero: the walker does not need it) holding `packets` whole.
    fn page(serial: u32, seq: u32, packets: &[Vec<u8>]) -> Vec<u8> {
        let mut table = Vec::new();
        let mut body = Vec::new();
        for p in packets {
            let mut left = p.len();
            while left >= 255 {
                table.push(255);
                left -= 255;
            }
            table.push(left as u8);
            body.extend_from_slice(p);
        }
        let mut out = b"OggS\0\0".to_vec();
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&serial.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.push(table.len() as u8);
        out.extend_from_slice(&table);
        out.extend_from_slice(&body);
        out
    }

    fn feed(bytes: &[u8], step: usize) -> Probed {
        let mut p = Probe::new();
        for c in bytes.chunks(step) {
            p.update(c);
        }
        p.finish()
    }

    /// Loud then quiet: packets of 200 bytes, then of 20 (plus the two header packets).
    fn loud_then_quiet(each: usize) -> Vec<u8> {
        let mut out = page(7, 0, &[b"OpusHead-----------".to_vec()]);
        out.extend(page(7, 1, &[vec![1; 600]]));
        let mut seq = 2;
        for size in [200usize, 20] {
            for _ in 0..each / 10 {
                out.extend(page(7, seq, &vec![vec![0x55; size]; 10]));
                seq += 1;
            }
        }
        out
    }

    #[test]
    fn head_and_tail_are_the_ends_of_the_file_however_it_is_cut() {
        let bytes: Vec<u8> = (0..(3 * HEAD_LEN + 123))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        for step in [1usize, 7, 4096, TAIL_LEN, TAIL_LEN + 1, bytes.len()] {
            if step == 1 && bytes.len() > 50_000 {
                // One byte at a time over 200 KiB is slow in debug builds; 7 covers odd cuts.
                continue;
            }
            let p = feed(&bytes, step);
            assert_eq!(p.head, bytes[..HEAD_LEN], "step {step}");
            assert_eq!(p.tail, bytes[bytes.len() - TAIL_LEN..], "step {step}");
        }
        let small = feed(b"tiny", 1);
        assert_eq!(
            (small.head.as_slice(), small.tail.as_slice()),
            (&b"tiny"[..], &b"tiny"[..])
        );
    }

    #[test]
    fn waveform_follows_the_bytes_spent_per_stretch() {
        let bytes = loud_then_quiet(400);
        for step in [1usize, 13, 4096] {
            let w = feed(&bytes, step)
                .waveform
                .expect("an Ogg stream has a waveform");
            assert_eq!(w.len(), WAVEFORM_LEN);
            assert!(w[..31].iter().all(|&v| v == 100), "loud half: {w:?}");
            assert!(w[33..].iter().all(|&v| v == 10), "quiet half: {w:?}");
        }
    }

    #[test]
    fn a_long_recording_keeps_its_shape_in_bounded_memory() {
        // Far more packets than buckets: resolution halves, the shape stays.
        let bytes = loud_then_quiet(20 * MAX_BUCKETS);
        let mut p = Probe::new();
        for c in bytes.chunks(65_536) {
            p.update(c);
        }
        assert!(p.ogg.buckets.len() <= MAX_BUCKETS);
        let w = p.finish().waveform.unwrap();
        assert!(w[..31].iter().all(|&v| v == 100), "{w:?}");
        assert!(w[33..].iter().all(|&v| v == 10), "{w:?}");
    }

    #[test]
    fn packets_spanning_pages_and_other_streams_count_right() {
        // One 600-byte packet split over two pages (lacing 255,255 then 90), and a page of
        // another stream between them that must not count.
        let mut out = page(1, 0, &[b"OpusHead".to_vec()]);
        out.extend(page(1, 1, &[b"OpusTags".to_vec()]));
        let mut split = page(1, 2, &[]);
        split[26] = 2;
        split.extend_from_slice(&[255, 255]);
        split.extend(vec![9u8; 510]);
        out.extend(split);
        out.extend(page(2, 0, &[vec![3; 5000 % 255]]));
        out.extend(page(1, 3, &[vec![9; 90], vec![9; 60]]));
        let mut p = Probe::new();
        p.update(&out);
        assert_eq!(p.ogg.packets, 4);
        assert_eq!(p.ogg.buckets, vec![600, 60]);
    }

    #[test]
    fn anything_else_has_no_waveform() {
        assert_eq!(
            feed(b"\xFF\xD8\xFF\xE0 not ogg at all.....................", 5).waveform,
            None
        );
        assert_eq!(feed(b"", 1).waveform, None);
        // Only the two header packets: no sound, no waveform.
        let mut headers = page(7, 0, &[b"OpusHead".to_vec()]);
        headers.extend(page(7, 1, &[b"OpusTags".to_vec()]));
        assert_eq!(feed(&headers, 3).waveform, None);
        // A broken page after good ones kills it.
        let mut broken = loud_then_quiet(40);
        broken.extend_from_slice(b"OggX\0junkjunkjunkjunkjunkjunkjunk");
        assert_eq!(feed(&broken, 64).waveform, None);
    }
}
