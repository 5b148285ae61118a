//! Hostile input costs memory in proportion to its size, measured: a counting allocator (this
//! test binary's global allocator) tracks the peak bytes each thread holds, so a decoder that
//! reserved what a frame merely announces, or built a node per byte of a decompression bomb, is
//! caught here by its allocation, not by a timing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;

use bytes::Bytes;
use wa_gateway::binary::{
    DecodeError, FLAG_COMPRESSED, MAX_ATTRS, MAX_DEPTH, MAX_INFLATED, MAX_NODES, Node, NodeArena,
    Str, Value, decode_frame, encode_node, unpack_frame,
};

/// Counts the bytes the current thread holds and the most it held; other threads (the other
/// tests running in parallel) do not disturb it.
pub struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = HELD.try_with(|h| {
        let now = h.get() + delta;
        h.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are plain
// thread-local cells that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Large blocks grow in place (mremap), so the net change is what is held.
        track(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The most bytes `f` held at once on this thread (beyond what was held before), and its result.
fn peak_of<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let base = HELD.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (PEAK.with(Cell::get).saturating_sub(base) as usize, out)
}

/// The most bytes the future `f` held at once on this thread while it ran (beyond what was held
/// before): on a current-thread runtime, everything the tasks it drives allocated here too.
pub(super) async fn peak_of_async<T>(f: impl std::future::Future<Output = T>) -> (usize, T) {
    let base = HELD.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f.await;
    (PEAK.with(Cell::get).saturating_sub(base) as usize, out)
}

fn tiny_node() -> Vec<u8> {
    let mut out = Vec::new();
    encode_node(&Node::new("iq"), &mut out).unwrap();
    assert_eq!(out.len(), 3, "a token tag and nothing else: {out:?}");
    out
}

/// A node with a LIST_16 child list announcing `n` children, without the children.
fn list_head(n: u16) -> Vec<u8> {
    let mut v = vec![248, 2];
    v.extend_from_slice(&tiny_node()[2..]);
    v.push(249);
    v.extend_from_slice(&n.to_be_bytes());
    v
}

fn compress(body: &[u8]) -> Bytes {
    let mut z = flate2::write::ZlibEncoder::new(vec![FLAG_COMPRESSED], flate2::Compression::best());
    z.write_all(body).unwrap();
    Bytes::from(z.finish().unwrap())
}

/// ~16 MiB of 3-byte nodes under `prefix` (list heads that announce what follows).
fn bomb(prefix: Vec<u8>) -> Bytes {
    let tiny = tiny_node();
    let mut body = prefix;
    let per_mid = 65_535usize;
    let mids = (MAX_INFLATED - body.len() - 1024) / (6 + per_mid * tiny.len());
    body.extend(list_head(mids as u16));
    for _ in 0..mids {
        body.extend(list_head(per_mid as u16));
        for _ in 0..per_mid {
            body.extend_from_slice(&tiny);
        }
    }
    assert!(body.len() <= MAX_INFLATED);
    let frame = compress(&body);
    assert!(frame.len() < 200 * 1024, "{} bytes compressed", frame.len());
    frame
}

/// What decoding may hold at most: the inflated body, the node cap's worth of nodes (a growing
/// vector may briefly hold twice its length), the attribute cap, and 2 MiB of slack.
fn budget() -> usize {
    MAX_INFLATED
        + 2 * MAX_NODES * std::mem::size_of::<Node>()
        + MAX_ATTRS * std::mem::size_of::<(Str, Value)>()
        + (2 << 20)
}

#[test]
fn compressed_bomb_of_tiny_nodes_is_refused_within_budget() {
    let frame = bomb(Vec::new());
    let (peak, got) = peak_of(|| decode_frame(frame.clone()));
    assert_eq!(got.unwrap_err(), DecodeError::TooManyNodes(MAX_NODES));
    assert!(
        peak <= budget(),
        "owned decoder held {peak} bytes, budget {}",
        budget()
    );

    let body = unpack_frame(frame).unwrap();
    let mut arena = NodeArena::new();
    let (peak, got) = peak_of(|| arena.decode(&body).map(|_| ()));
    assert_eq!(got.unwrap_err(), DecodeError::TooManyNodes(MAX_NODES));
    assert!(peak <= 8 << 20, "borrowed decoder held {peak} bytes");
}

#[test]
fn nested_lists_announcing_more_than_they_hold_reserve_nothing() {
    // Each level announces 65,535 children and holds one: the next level. A decoder that sized
    // its child vectors from the announcement would reserve ~7 MB per level.
    let mut prefix = Vec::new();
    for _ in 0..MAX_DEPTH - 2 {
        prefix.extend(list_head(u16::MAX));
    }
    let frame = bomb(prefix);
    let (peak, got) = peak_of(|| decode_frame(frame));
    assert_eq!(got.unwrap_err(), DecodeError::TooManyNodes(MAX_NODES));
    assert!(
        peak <= budget(),
        "owned decoder held {peak} bytes, budget {}",
        budget()
    );
}

#[test]
fn inflating_past_the_cap_holds_at_most_the_cap() {
    let frame = compress(&vec![0u8; MAX_INFLATED + 4096]);
    let (peak, got) = peak_of(|| unpack_frame(frame));
    assert_eq!(
        got.unwrap_err(),
        DecodeError::InflatedTooLarge(MAX_INFLATED)
    );
    assert!(
        peak <= MAX_INFLATED + (1 << 20),
        "inflate held {peak} bytes"
    );
}
