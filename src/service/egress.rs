//! Where webhooks may connect. Any member can point a webhook anywhere, and the outcome of each
//! attempt (connected, refused, timed out, what status) is listed back to them: aimed at the
//! gateway's own network, webhooks would be a port scanner and a way to reach cloud metadata
//! endpoints (server-side request forgery, OWASP API7:2023). Unless private addresses are
//! allowed, an attempt connects only to public addresses: a name is resolved here and the
//! addresses that are not public are dropped before the connection is made (so a name that
//! resolves to a public address when checked and a private one when used, DNS rebinding,
//! still reaches no private address), and a URL whose host is an address (which the HTTP
//! client connects to without resolving) is checked as it is, when set and at each attempt.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether webhooks may connect to `ip`: a public unicast address, not one of the ranges of
/// RFC 6890's special-purpose registries (IANA, "IPv4/IPv6 Special-Purpose Address Registry")
/// that reach the gateway's own host or network, or that are not routed on the internet.
pub fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network", 0.0.0.0 among it (RFC 791)
        || a == 10 // private (RFC 1918)
        || a == 127 // loopback
        || (a == 100 && (64..128).contains(&b)) // shared / CGNAT (RFC 6598), Alibaba's metadata
        || (a == 169 && b == 254) // link-local (RFC 3927), AWS/GCP/Azure metadata 169.254.169.254
        || (a == 172 && (16..32).contains(&b)) // private (RFC 1918)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments (RFC 6890)
        || (a == 192 && b == 0 && c == 2) // documentation TEST-NET-1 (RFC 5737)
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast (RFC 7526)
        || (a == 192 && b == 168) // private (RFC 1918)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking (RFC 2544)
        || (a == 198 && b == 51 && c == 100) // documentation TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // documentation TEST-NET-3
        || a >= 224) // multicast (224/4), reserved (240/4) and broadcast 255.255.255.255
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Addresses that carry an IPv4 address are what that address is.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return public_v4(v4); // ::ffff:0:0/96
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        // ::/128, ::1/128 and the deprecated IPv4-compatible ::/96.
        return ip != Ipv6Addr::UNSPECIFIED
            && ip != Ipv6Addr::LOCALHOST
            && public_v4(embedded(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return public_v4(embedded(s[6], s[7])); // NAT64 (RFC 6052)
    }
    if s[0] == 0x2002 {
        return public_v4(embedded(s[1], s[2])); // 6to4 (RFC 3056)
    }
    !((s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 (RFC 8215)
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0]) // discard-only (RFC 6666)
        || (s[0] == 0x2001 && s[1] < 0x200) // IETF protocol assignments, Teredo (RFC 6890)
        || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation (RFC 3849)
        || (s[0] == 0x3fff && s[1] < 0x1000) // documentation 3fff::/20 (RFC 9637)
        || (s[0] & 0xfe00) == 0xfc00 // unique local (RFC 4193), AWS's metadata fd00:ec2::254
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local, deprecated (RFC 3879)
        || (s[0] & 0xff00) == 0xff00) // multicast
}

/// The address in `url`'s host, when it is one webhooks may not reach (None for a name,
/// checked when resolved, and for a public address).
pub fn refused_literal(url: &str) -> Option<IpAddr> {
    // The URL parser (WHATWG's, as the HTTP client's) has already turned every IPv4 form
    // (`2130706433`, `0x7f.1`, `127.1`) into dotted decimal; IPv6 comes in brackets.
    let url = reqwest::Url::parse(url).ok()?;
    let host = url.host_str()?;
    let ip: IpAddr = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()?;
    (!public(ip)).then_some(ip)
}

/// A name resolved only to addresses webhooks may not reach. Its message names none of them:
/// it reaches members as the delivery's `lastError`, and what an internal name resolves to is
/// not theirs to learn (the service log has them, at debug).
#[derive(Debug, thiserror::Error)]
#[error(
    "address not allowed: the host resolves only to addresses webhooks may not reach \
     (loopback, private, link-local or otherwise not public; WA_GATEWAY_WEBHOOK_ALLOW_PRIVATE \
     allows them)"
)]
pub struct NotAllowed(pub Vec<IpAddr>);

/// The resolver of the webhook client: the system's (getaddrinfo, as reqwest's own), keeping
/// only public addresses.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (public, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
                all.into_iter().partition(|a| public(a.ip()));
            if public.is_empty() {
                if refused.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the host has no address",
                    )
                    .into());
                }
                let refused: Vec<IpAddr> = refused.iter().map(SocketAddr::ip).collect();
                tracing::debug!(
                    host,
                    ?refused,
                    "webhook host resolves only to refused addresses"
                );
                return Err(NotAllowed(refused).into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Whether `e` (or what caused it) is a refusal of [`PublicOnly`].
pub fn is_not_allowed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<NotAllowed>() {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_unicast_addresses_pass() {
        for refused in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.0.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.251",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.1.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "3fff::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(!public(ip), "{refused} passed");
        }
        for fine in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "223.255.255.254",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "3ffe::1",
            "3fff:1000::1",
        ] {
            let ip: IpAddr = fine.parse().unwrap();
            assert!(public(ip), "{fine} refused");
        }
    }

    #[test]
    fn literals_are_read_as_the_http_client_reads_them() {
        for url in [
            "http://127.0.0.1/h",
            "http://2130706433/h",
            "http://0x7f.1/h",
            "http://127.1/h",
            "http://[::ffff:7f00:1]/h",
            "https://[fd00:ec2::254]:8443/h",
            "http://user:pw@10.0.0.1/h",
        ] {
            assert!(refused_literal(url).is_some(), "{url}");
        }
        for url in [
            "http://localhost/h",
            "https://hooks.example.com/h",
            "https://1.1.1.1/h",
        ] {
            assert_eq!(refused_literal(url), None, "{url}");
        }
    }
}
