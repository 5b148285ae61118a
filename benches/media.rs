//! Media encryption and verified decryption of 1 MiB and 16 MiB in 64 KiB chunks, side by side
//! with the limit: raw AES-256-CBC plus HMAC-SHA256 over the same bytes (the `cbc` and `hmac`
//! crates alone, no SHA-256 of the plaintext or the body), and the same plus the two SHA-256s the
//! protocol requires (fileSha256, fileEncSha256). Results in MB/s: benches/README.md.

use std::hint::black_box;

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wa_gateway::media::cipher::{Decryptor, Encryptor, Expect, encrypt};
use wa_gateway::media::{MediaKeys, MediaType, expand};

const CHUNK: usize = 64 * 1024;

/// The raw crates' CBC encryption of `plain` into `buf` plus the HMAC: (ciphertext length, tag).
fn raw_encrypt_mac(keys: &MediaKeys, plain: &[u8], buf: &mut [u8]) -> (usize, [u8; 32]) {
    buf[..plain.len()].copy_from_slice(plain);
    let ct = cbc::Encryptor::<Aes256>::new((&*keys.cipher_key).into(), (&keys.iv).into())
        .encrypt_padded_mut::<Pkcs7>(buf, plain.len())
        .unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&keys.mac_key[..]).unwrap();
    mac.update(&keys.iv);
    mac.update(ct);
    (ct.len(), mac.finalize().into_bytes().into())
}

fn media(c: &mut Criterion) {
    let keys = expand(&[0x42; 32], MediaType::Video);
    for size in [1usize << 20, 16 << 20] {
        let plain: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let (body, done) = encrypt(&keys, &plain);
        let expect = Expect {
            file_sha256: done.file_sha256,
            file_enc_sha256: Some(done.file_enc_sha256),
            max_plain: size as u64,
        };
        let mut g = c.benchmark_group(format!("media/{}MiB", size >> 20));
        g.throughput(Throughput::Bytes(size as u64));
        g.sample_size(10);
        let mut out = Vec::with_capacity(CHUNK + 64);

        g.bench_function("encrypt (ours: CBC+MAC+2 sha256, streaming)", |b| {
            b.iter(|| {
                let mut enc = Encryptor::new(&keys);
                for piece in plain.chunks(CHUNK) {
                    out.clear();
                    enc.update(black_box(piece), &mut out);
                }
                out.clear();
                black_box(enc.finish(&mut out))
            })
        });
        g.bench_function("decrypt (ours: CBC+MAC+2 sha256, streaming)", |b| {
            b.iter(|| {
                let mut dec = Decryptor::new(&keys, expect);
                for piece in body.chunks(CHUNK) {
                    out.clear();
                    dec.update(black_box(piece), &mut out).unwrap();
                }
                out.clear();
                black_box(dec.finish(&mut out).unwrap())
            })
        });

        let mut buf = vec![0u8; size + 16];
        g.bench_function("limit: CBC encrypt + HMAC (raw crates)", |b| {
            b.iter(|| black_box(raw_encrypt_mac(&keys, &plain, &mut buf)))
        });
        g.bench_function("limit + both sha256 (raw crates, encrypt)", |b| {
            b.iter(|| {
                let plain_hash = Sha256::digest(&plain);
                let (ct_len, tag) = raw_encrypt_mac(&keys, &plain, &mut buf);
                let mut enc_hash = Sha256::new();
                enc_hash.update(&buf[..ct_len]);
                enc_hash.update(&tag[..10]);
                black_box((plain_hash, enc_hash.finalize()))
            })
        });
        let ct = &body[..body.len() - 10];
        g.bench_function("limit: CBC decrypt + HMAC (raw crates)", |b| {
            b.iter(|| {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&keys.mac_key[..]).unwrap();
                mac.update(&keys.iv);
                mac.update(ct);
                black_box(mac.finalize());
                buf[..ct.len()].copy_from_slice(ct);
                let pt =
                    cbc::Decryptor::<Aes256>::new((&*keys.cipher_key).into(), (&keys.iv).into())
                        .decrypt_padded_mut::<Pkcs7>(&mut buf[..ct.len()])
                        .unwrap();
                black_box(pt.len())
            })
        });
        g.finish();
    }
}

criterion_group!(benches, media);
criterion_main!(benches);
