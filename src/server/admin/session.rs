//! Owns the admin session: a signed, expiring token in an HttpOnly,
//! `SameSite=Strict` cookie, minted when the admin key is presented once.
//! The key itself never leaves the sign-in request (nothing stores it in the
//! browser). The token is an HS256 JWT signed with a key derived from the
//! admin key, so every instance sharing the key accepts it, and changing the
//! key ends every session.

use axum::http::{header, HeaderMap};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

use crate::client::cookie;

/// The cookie's name.
pub const COOKIE: &str = "pulse_admin";

/// How long a session lasts.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// The audience claim: a user's token (signed with another secret anyway)
/// can never pass for a session, nor a session for a user's token.
const AUDIENCE: &str = "pulse-admin";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    aud: String,
    exp: u64,
}

/// Mints and checks admin sessions for one admin key.
pub struct Sessions {
    key: Vec<u8>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Sessions {
    pub fn new(admin_key: &str) -> Self {
        // A key of its own, so a session is never a signature over anything
        // else made with the admin key.
        let secret = format!("pulse admin session\0{admin_key}");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.leeway = 0;
        Sessions {
            key: admin_key.as_bytes().to_vec(),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Whether `presented` is the admin key (compared in constant time).
    pub fn is_key(&self, presented: &str) -> bool {
        bool::from(presented.as_bytes().ct_eq(&self.key))
    }

    /// A new session token, valid for [`LIFETIME`].
    pub fn mint(&self) -> String {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(LIFETIME)
            .as_secs();
        let claims = Claims {
            sub: "admin".into(),
            aud: AUDIENCE.into(),
            exp,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an in-memory key cannot fail")
    }

    /// Whether `token` is a session this key signed that has not expired.
    pub fn verify(&self, token: &str) -> bool {
        decode::<Claims>(token, &self.decoding, &self.validation).is_ok()
    }

    /// Whether the request carries a valid session cookie.
    pub fn signed_in(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(|line| cookie(line, COOKIE))
            .any(|token| self.verify(token))
    }
}

/// The `Set-Cookie` value carrying `token` (`None`: deleting the cookie);
/// `Secure` when the request came over TLS.
pub fn set_cookie(token: Option<&str>, secure: bool) -> String {
    let (value, max_age) = match token {
        Some(token) => (token, LIFETIME.as_secs()),
        None => ("", 0),
    };
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_accepted_only_by_the_key_that_signed_it() {
        let sessions = Sessions::new("the-admin-key-0123456");
        let token = sessions.mint();
        assert!(sessions.verify(&token));
        assert!(!Sessions::new("another-admin-key-0123").verify(&token));
        assert!(!sessions.verify("not-a-token"));
        assert!(!sessions.verify(&format!("{token}x")));
    }

    #[test]
    fn a_user_token_is_no_session() {
        let sessions = Sessions::new("the-admin-key-0123456");
        let secret = "pulse admin session\0the-admin-key-0123456";
        let auth = crate::server::auth::Auth::new(secret.as_bytes(), LIFETIME);
        let user = crate::protocol::UserRef {
            id: "admin".into(),
            name: "Admin".into(),
        };
        assert!(
            !sessions.verify(&auth.mint(&user)),
            "no audience, no session"
        );
    }

    #[test]
    fn the_key_is_compared_whole() {
        let sessions = Sessions::new("the-admin-key-0123456");
        assert!(sessions.is_key("the-admin-key-0123456"));
        assert!(!sessions.is_key("the-admin-key-012345"));
        assert!(!sessions.is_key(""));
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let plain = set_cookie(Some("t"), false);
        assert_eq!(
            plain,
            "pulse_admin=t; Path=/; Max-Age=28800; HttpOnly; SameSite=Strict"
        );
        assert!(set_cookie(Some("t"), true).ends_with("; Secure"));
        assert!(set_cookie(None, false).contains("Max-Age=0"));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let sessions = Sessions::new("the-admin-key-0123456");
        let mut headers = HeaderMap::new();
        let line = format!("a=1; {COOKIE}={}; b=2", sessions.mint());
        headers.insert(header::COOKIE, line.parse().unwrap());
        assert!(sessions.signed_in(&headers));
        assert!(!sessions.signed_in(&HeaderMap::new()));
    }
}
