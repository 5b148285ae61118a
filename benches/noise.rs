//! Noise transport: encrypt+frame and decrypt of 100 B and 64 KiB payloads (AES-256-GCM with the
//! WhatsApp nonce layout). Results in MB/s: benches/README.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wa_gateway::signal::KeyPair;
use wa_gateway::socket::TrustRoot;
use wa_gateway::socket::cert::ServerIdentity;
use wa_gateway::socket::noise::{CONN_HEADER, CipherState, Initiator, Responder};

/// Runs a real handshake and returns (client send, server recv) cipher states.
fn pair() -> (CipherState, CipherState) {
    let id = ServerIdentity::generate(1_800_000_000, 86_400);
    let (init, hello) =
        Initiator::new(&CONN_HEADER, KeyPair::generate(), KeyPair::generate()).client_hello();
    let resp = Responder::new(
        &CONN_HEADER,
        id.static_key.clone(),
        KeyPair::generate(),
        id.chain.clone(),
    );
    let (resp, server_hello) = resp.read_client_hello(&hello).unwrap();
    let trust: TrustRoot = id.trust_root();
    let init = init
        .read_server_hello(&server_hello, &trust, 1_800_000_000)
        .unwrap();
    let (finish, client) = init.client_finish(b"payload");
    let server = resp.read_client_finish(&finish).unwrap();
    (client.send, server.cipher.recv)
}

fn noise(c: &mut Criterion) {
    for size in [100usize, 64 * 1024] {
        let plain = vec![0x5au8; size];
        let mut g = c.benchmark_group(format!("noise/{size}B"));
        g.throughput(Throughput::Bytes(size as u64));
        let (mut send, _) = pair();
        let mut out = Vec::with_capacity(size + 32);
        g.bench_function("encrypt+frame", |b| {
            b.iter(|| {
                out.clear();
                send.encrypt_frame(black_box(&plain), &mut out).unwrap();
            })
        });
        // Frames must be decrypted in counter order: encrypt `iters` of them untimed, then time
        // decrypting them all.
        g.bench_function("decrypt", |b| {
            b.iter_custom(|iters| {
                let (mut s, mut r) = pair();
                let frames: Vec<Vec<u8>> = (0..iters)
                    .map(|_| {
                        let mut f = Vec::new();
                        s.encrypt_frame(&plain, &mut f).unwrap();
                        f
                    })
                    .collect();
                let start = std::time::Instant::now();
                for f in &frames {
                    black_box(r.decrypt(black_box(&f[3..])).unwrap());
                }
                start.elapsed()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, noise);
criterion_main!(benches);
