//! The JWT settings as an operator meets them: `serve` refuses an RS256 key without an issuer
//! and an audience (exit 2, naming the variable), and `wa-gateway token` mints tokens that name
//! the configured (or given) issuer and audience, so the service takes them.

use std::process::Stdio;
use std::time::Duration;

use wa_gateway::api::{AuthKey, TokenRules, Verifier};

/// A 2048-bit RSA public key (made with `openssl genrsa 2048 | openssl rsa -pubout`).
const RSA_PUBLIC_FULL: &str = concat!(
    "-----BEGIN PUBLIC KEY-----\n",
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAvHrIk+zfaCrOPq2jiq4B\n",
    "JOrVFZTAAAHjWDfs1Og4ikaSOusqA9R5YE/7shdty+XD9xdlvvTY8cRyV/ZiwhuD\n",
    "BQbze48B2AgzmSTfJK/M/t0houv8zsHA5csLY3Qf/FX/JtSPUY4o3I6nPqDop7zU\n",
    "YNdUKj1UytubBQCkM186tsnyNlyli0NERdlLmcUmRcnz031PUmq7qGaz0EUL7/7J\n",
    "BYpbK5ENZBhaH9UEKQu7Nf4pfWDddiCe30ItVWV1+jm2XnSXUzCa+dGNwPTNILnQ\n",
    "ZyWLvNKrNKNG0kaMUZ4tO4whgsybAuY5QSwjL0TtcjiWPnnvJ43084bWhMB3xHXm\n",
    "MwIDAQAB\n",
    "-----END PUBLIC KEY-----\n",
);

fn gateway(dir: &std::path::Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-gateway"));
    c.env_clear()
        .env("WA_GATEWAY_DATA_DIR", dir)
        .env("WA_GATEWAY_BIND", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

#[tokio::test]
async fn serve_refuses_an_rs256_key_without_issuer_and_audience() {
    let dir = tempfile::tempdir().unwrap();
    let pem = RSA_PUBLIC_FULL.trim();
    for (extra, missing) in [
        (vec![], "WA_GATEWAY_JWT_ISSUER"),
        (
            vec![("WA_GATEWAY_JWT_ISSUER", "https://idp.example")],
            "WA_GATEWAY_JWT_AUDIENCE",
        ),
    ] {
        let mut cmd = gateway(dir.path());
        cmd.arg("serve").env("WA_GATEWAY_JWT_PUBLIC_KEY", pem);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .expect("exits at once")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(missing), "{stderr}");
    }
}

#[tokio::test]
async fn token_names_the_configured_issuer_and_the_given_audience() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "a-test-secret-of-at-least-32-bytes!!";
    let mut cmd = gateway(dir.path());
    cmd.args([
        "token",
        "--sub",
        "ops",
        "--role",
        "viewer",
        "--audience",
        "wa-gw-test",
    ])
    .env("WA_GATEWAY_JWT_SECRET", secret)
    .env("WA_GATEWAY_JWT_ISSUER", "https://idp.example");
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("exits at once")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let key = AuthKey::Hs256(secret.as_bytes().to_vec());
    let rules = TokenRules {
        issuer: Some("https://idp.example".into()),
        audience: Some("wa-gw-test".into()),
    };
    let claims = Verifier::with_rules(&key, &rules)
        .unwrap()
        .verify(&token)
        .unwrap();
    assert_eq!(claims.sub, "ops");
    // A service expecting no audience does not take a token minted for one.
    let e = Verifier::new(&key).unwrap().verify(&token).unwrap_err();
    assert!(e.to_string().contains("audience"), "{e}");
}
