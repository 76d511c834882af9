//! The client's IP address: the TCP peer, or, behind `TRUST_PROXY_HOPS`
//! proxies, the entry of `X-Forwarded-For` that the outermost trusted proxy
//! added. Entries further left are written by the client and never trusted.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};

pub fn client_ip(
    headers: &HeaderMap,
    extensions: &Extensions,
    trust_proxy_hops: usize,
) -> Option<IpAddr> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if trust_proxy_hops == 0 {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    // The right-most `hops` entries were appended by our proxies; the one
    // furthest left of those is the address the outermost proxy saw.
    if entries.len() < trust_proxy_hops {
        return entries.first().and_then(|e| parse_entry(e)).or(peer);
    }
    entries
        .get(entries.len() - trust_proxy_hops)
        .and_then(|e| parse_entry(e))
        .or(peer)
}

fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    // "1.2.3.4:5678" or "[::1]:5678"
    entry.parse::<SocketAddr>().ok().map(|s| s.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    fn ext() -> Extensions {
        let mut e = Extensions::new();
        e.insert(ConnectInfo::<SocketAddr>("10.0.0.1:4000".parse().unwrap()));
        e
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let ip = client_ip(&headers("1.1.1.1"), &ext(), 0).unwrap();
        assert_eq!(ip.to_string(), "10.0.0.1");
    }

    #[test]
    fn with_one_proxy_the_right_most_entry_counts() {
        let ip = client_ip(&headers("6.6.6.6, 9.9.9.9, 2.2.2.2"), &ext(), 1).unwrap();
        assert_eq!(ip.to_string(), "2.2.2.2");
        let ip = client_ip(&headers("6.6.6.6, 9.9.9.9, 2.2.2.2"), &ext(), 2).unwrap();
        assert_eq!(ip.to_string(), "9.9.9.9");
    }

    #[test]
    fn garbage_falls_back_to_the_peer() {
        let ip = client_ip(&headers("not-an-ip"), &ext(), 1).unwrap();
        assert_eq!(ip.to_string(), "10.0.0.1");
    }
}
