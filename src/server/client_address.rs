//! Owns who the client is when a reverse proxy stands in between: with
//! `--trusted-proxies`, the address a request came from is walked back
//! through `Forwarded` (RFC 7239 `for=`) or, without it, `X-Forwarded-For`,
//! hop by hop from the right, for as long as the hop is a trusted proxy. The
//! first untrusted hop is the client. A peer that is no trusted proxy is the
//! client itself, whatever its headers claim: nobody can pick their own
//! address for the per-address limits and the logs.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};
use ipnet::IpNet;

/// The client's address for a request served with `ConnectInfo` (the
/// WebSocket upgrade, the fallback's stream): [`client_address`] of its peer.
pub fn of_request(
    extensions: &Extensions,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| client_address(peer.ip(), headers, trusted))
}

/// The client's address: `peer` itself unless it is one of `trusted`, then
/// the nearest untrusted hop the forwarding headers name.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|net| net.contains(address));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for hop in forwarded_chain(headers).iter().rev() {
        match hop {
            Some(address) if is_trusted(&client) => client = *address,
            // An obfuscated or unknown hop: the last hop we could read stands.
            _ => break,
        }
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

/// Whether a trusted proxy says the request reached it over TLS (its
/// `X-Forwarded-Proto: https`). TLS that ends in Pulse itself is the
/// request's `http::Secure` extension; the admin cookie's `Secure` flag asks both.
pub fn came_over_tls(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> bool {
    if !trusted.iter().any(|net| net.contains(&peer)) {
        return false;
    }
    // The nearest proxy's word counts: the last value, several lines being one list.
    headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(','))
        .next_back()
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// The addresses the proxies added, left (the original client) to right (the
/// proxy nearest to us); `None` for a hop that names no address. `Forwarded`
/// wins when present; several header lines are one list.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|line| line.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| parse_node(value))
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(parse_node)
        .collect()
}

/// One node: `192.0.2.1`, `192.0.2.1:4711`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            let inner = text.strip_prefix('[')?.split(']').next()?;
            inner.parse().ok()
        })
}

/// Parses `--trusted-proxies`' CIDRs (a bare address is a /32 or /128).
pub fn parse_trusted(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{text}` is not an address or a CIDR (10.0.0.0/8, ::1)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn trusted(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|t| parse_trusted(t).unwrap()).collect()
    }

    #[test]
    fn only_a_trusted_proxy_says_the_request_came_over_tls() {
        let https = headers(&[("x-forwarded-proto", "https")]);
        let proxies = trusted(&["10.0.0.0/8"]);
        assert!(came_over_tls(ip("10.0.0.1"), &https, &proxies));
        assert!(!came_over_tls(ip("192.0.2.1"), &https, &proxies));
        assert!(!came_over_tls(ip("10.0.0.1"), &https, &[]));
        let http = headers(&[("x-forwarded-proto", "http")]);
        assert!(!came_over_tls(ip("10.0.0.1"), &http, &proxies));
        assert!(!came_over_tls(ip("10.0.0.1"), &headers(&[]), &proxies));
        let chain = headers(&[("x-forwarded-proto", "http, https")]);
        assert!(came_over_tls(ip("10.0.0.1"), &chain, &proxies));
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_it_claims() {
        let claims = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        assert_eq!(client_address(ip("10.0.0.5"), &claims, &[]), ip("10.0.0.5"));
        let others = trusted(&["10.1.0.0/16"]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &claims, &others),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn a_trusted_proxy_passes_on_the_nearest_untrusted_hop() {
        let proxies = trusted(&["10.0.0.0/8", "192.168.1.1"]);
        // The client spoofs a first hop; the chain's right end is what our
        // proxies saw.
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 192.168.1.1")]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &chain, &proxies),
            ip("203.0.113.9")
        );
        // Header lines add up to one list.
        let split = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &split, &proxies),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn forwarded_wins_and_its_nodes_may_carry_ports_and_brackets() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let both = headers(&[
            (
                "forwarded",
                r#"for=192.0.2.60;proto=https, for="[2001:db8:cafe::17]:4711""#,
            ),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &both, &proxies),
            ip("2001:db8:cafe::17")
        );
        let port = headers(&[("forwarded", "for=\"192.0.2.43:47011\"")]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &port, &proxies),
            ip("192.0.2.43")
        );
    }

    #[test]
    fn an_unreadable_hop_stops_the_walk_at_the_last_address_read() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let hidden = headers(&[("forwarded", "for=_hidden, for=10.0.0.9")]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &hidden, &proxies),
            ip("10.0.0.9")
        );
        let none = headers(&[]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &none, &proxies),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn trusted_proxies_parse_as_cidrs_or_addresses() {
        assert!(parse_trusted("10.0.0.0/8").is_ok());
        assert!(parse_trusted("::1").is_ok());
        assert!(parse_trusted("fd00::/8").is_ok());
        assert!(parse_trusted("10.0.0.0/33").is_err());
        assert!(parse_trusted("proxy.example").is_err());
    }
}
