//! Server-side request forgery guard for screenshots: which URLs the
//! browser may fetch. Only http and https; the host is resolved and every
//! address must be public (not loopback, private, link-local, carrier-grade
//! NAT, unique-local, multicast, reserved, documentation or metadata), unless
//! the host is listed in `SCREENSHOT_ALLOWED_HOSTS`.
//!
//! IP literals in decimal, hex or octal (`http://2130706433/`,
//! `http://0x7f.1/`) are normalised by the WHATWG parser of the `url` crate
//! before they are checked, and IPv4-mapped/embedded IPv6 forms are unwrapped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use super::resolver::Resolver;

/// Parses a URL the browser may be sent to: http or https, with a host, no
/// credentials. Says why not otherwise.
pub fn parse_target(raw: &str) -> Result<Url, String> {
    if raw.len() > 4096 {
        return Err("must be at most 4096 characters".into());
    }
    let url = Url::parse(raw.trim()).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("only http and https URLs are allowed".into());
    }
    if url.host().is_none() {
        return Err("must have a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    Ok(url)
}

/// Whether `host` (as the URL shows it) is exempt from the address checks.
fn is_allowed_host(url: &Url, allowed: &[String]) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    allowed.iter().any(|a| {
        let a = a.trim_start_matches('[').trim_end_matches(']');
        a == bare
    })
}

/// Checks a URL the browser wants to fetch: parse, allow-list, resolve
/// (with the service's bounded `resolver`), and refuse any non-public
/// address. `Err` says why.
pub async fn check(raw: &str, allowed: &[String], resolver: &Resolver) -> Result<(), String> {
    let url = parse_target(raw)?;
    if is_allowed_host(&url, allowed) {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<IpAddr> = match url.host() {
        Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        Some(Host::Domain(domain)) => {
            let domain = domain.trim_end_matches('.').to_string();
            if domain.eq_ignore_ascii_case("localhost")
                || domain.to_ascii_lowercase().ends_with(".localhost")
            {
                return Err("the host is loopback".into());
            }
            resolver
                .lookup(&domain, port)
                .await
                .map_err(|e| e.to_string())?
        }
        None => return Err("must have a host".into()),
    };
    if addrs.is_empty() {
        return Err("the host does not resolve".into());
    }
    // The address itself is not named: it would tell a caller what an
    // internal name resolves to.
    if addrs.iter().any(|ip| is_forbidden(*ip)) {
        return Err("the host resolves to a non-public address".into());
    }
    Ok(())
}

/// True for every address that is not a public unicast address.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()          // 0.0.0.0
        || a == 0                // 0.0.0.0/8 "this network"
        || ip.is_loopback()      // 127/8
        || ip.is_private()       // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local()    // 169.254/16 incl. 169.254.169.254 metadata
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 carrier-grade NAT
        || (a == 192 && b == 0 && c == 0)       // 192.0.0/24 IETF assignments
        || (a == 192 && b == 0 && c == 2)       // TEST-NET-1
        || (a == 198 && (18..20).contains(&b))  // 198.18/15 benchmarking
        || (a == 198 && b == 51 && c == 100)    // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)     // TEST-NET-3
        || (a == 192 && b == 88 && c == 99)     // 6to4 relay anycast
        || ip.is_multicast()                    // 224/4
        || a >= 240 // 240/4 reserved and 255.255.255.255
}

/// The IPv4 address carried in two 16-bit IPv6 segments.
fn v4_of(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_forbidden_v4(v4); // ::ffff:a.b.c.d
    }
    let seg = ip.segments();
    // ::a.b.c.d (deprecated IPv4-compatible) and :: / ::1
    if seg[..6] == [0, 0, 0, 0, 0, 0] {
        return true;
    }
    // 64:ff9b::/96 NAT64: judge the embedded IPv4 address.
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_forbidden_v4(v4_of(seg[6], seg[7]));
    }
    // 2002::/16 6to4: the next 32 bits are an IPv4 address.
    if seg[0] == 0x2002 {
        return is_forbidden_v4(v4_of(seg[1], seg[2]));
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()                 // ff00::/8
        || (seg[0] & 0xfe00) == 0xfc00       // fc00::/7 unique local
        || (seg[0] & 0xffc0) == 0xfe80       // fe80::/10 link local
        || (seg[0] & 0xffc0) == 0xfec0       // fec0::/10 site local (deprecated)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || (seg[0] == 0x2001 && seg[1] == 0)     // Teredo
        || seg[0] == 0x0100 && seg[1..4] == [0, 0, 0] // 100::/64 discard
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(check(url, &[], &Resolver::system())).is_err()
    }

    #[test]
    fn non_http_schemes_are_refused() {
        for u in [
            "file:///etc/passwd",
            "ftp://example.com/",
            "javascript:alert(1)",
            "data:text/html,hi",
            "gopher://x/",
        ] {
            assert!(parse_target(u).is_err(), "{u}");
        }
        assert!(parse_target("http://user:pw@example.com/").is_err());
    }

    #[test]
    fn private_and_special_addresses_are_refused_in_every_spelling() {
        for u in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://017700000001/",
            "http://localhost:8080/",
            "http://foo.localhost/",
            "http://0.0.0.0/",
            "http://0/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://100.127.255.254/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[fc00::1]/",
            "http://[fd12:3456::1]/",
            "http://[fe80::1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
        ] {
            assert!(refused(u), "{u} was allowed");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        assert!(!refused("http://8.8.8.8/"));
        assert!(!refused("https://[2606:4700::1111]/"));
    }

    #[test]
    fn allowed_hosts_are_exempt() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let allowed = vec!["127.0.0.1".to_string(), "::1".to_string()];
        let resolver = Resolver::system();
        let check = |url| check(url, &allowed, &resolver);
        assert!(rt.block_on(check("http://127.0.0.1:3000/x")).is_ok());
        assert!(rt.block_on(check("http://[::1]:3000/x")).is_ok());
        assert!(rt.block_on(check("http://localhost:3000/x")).is_err());
    }
}
