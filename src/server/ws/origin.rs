//! Owns the `Origin` check for `/ws`: which browser pages may open a socket.

/// Whether a browser page from `origin` may open a socket on a server reached
/// as `host`. `allowed` empty means "the server's own origin" (the Origin's
/// host and port equal the request's Host header); `*` allows any origin.
/// A request without `Origin` comes from a non-browser client and is allowed,
/// as PROTOCOL.md says.
pub fn is_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else { return true };
    let origin = normalise(origin);
    if allowed.is_empty() {
        let Some(host) = host else { return false };
        return origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host.to_ascii_lowercase());
    }
    allowed
        .iter()
        .any(|entry| entry == "*" || normalise(entry) == origin)
}

fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::is_allowed;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn same_origin_by_default() {
        assert!(is_allowed(
            Some("http://127.0.0.1:3000"),
            Some("127.0.0.1:3000"),
            &[]
        ));
        assert!(is_allowed(
            Some("http://LocalHost:3000/"),
            Some("localhost:3000"),
            &[]
        ));
        assert!(!is_allowed(
            Some("http://evil.test"),
            Some("127.0.0.1:3000"),
            &[]
        ));
        assert!(!is_allowed(
            Some("http://127.0.0.1:3001"),
            Some("127.0.0.1:3000"),
            &[]
        ));
        assert!(!is_allowed(Some("null"), Some("127.0.0.1:3000"), &[]));
    }

    #[test]
    fn clients_without_origin_are_allowed() {
        assert!(is_allowed(None, Some("127.0.0.1:3000"), &[]));
        assert!(is_allowed(None, None, &list(&["http://a.test"])));
    }

    #[test]
    fn an_explicit_list_replaces_the_default() {
        let allowed = list(&["http://a.test", "https://b.test:8443"]);
        assert!(is_allowed(
            Some("https://b.test:8443"),
            Some("pulse:3000"),
            &allowed
        ));
        assert!(!is_allowed(
            Some("http://pulse:3000"),
            Some("pulse:3000"),
            &allowed
        ));
        assert!(is_allowed(Some("http://x.test"), None, &list(&["*"])));
    }
}
