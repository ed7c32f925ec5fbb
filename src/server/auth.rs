//! Owns identity: HS256 tokens (`sub`, `name`, `exp`) signed with the server's
//! secret, minted for guests by `/api/login` or by another backend, and the
//! rules for guest names.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::protocol::{check_guest_name, Channel, UserRef, GUEST_ID_PREFIX};

/// The longest `name` accepted in a token minted elsewhere.
pub const MAX_TOKEN_NAME_CHARS: usize = 64;

/// The shortest HS256 secret accepted (RFC 7518 §3.2: a key at least as long
/// as the hash output); the server refuses to start with a shorter one.
pub const MIN_SECRET_BYTES: usize = 32;

/// Seconds of clock difference allowed between a token's issuer and us.
pub const LEEWAY_SECS: u64 = 5;

/// The claims of a Pulse token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id (at most 64 characters).
    pub sub: String,
    pub name: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

/// Why a token or a name was refused; the text goes to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the token has expired: log in again")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("name: {0}")]
    Name(&'static str),
}

/// A verified token: whom it names and until when it may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user: UserRef,
    /// The moment the token stops being accepted (its `exp` plus the leeway).
    pub valid_until: SystemTime,
}

/// Signs and checks tokens with one secret.
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime: Duration,
}

impl Auth {
    pub fn new(secret: &[u8], lifetime: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Auth {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            lifetime,
        }
    }

    /// A token for `user`, valid for the configured lifetime.
    pub fn mint(&self, user: &UserRef) -> String {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(self.lifetime)
            .as_secs();
        let claims = Claims {
            sub: user.id.clone(),
            name: user.name.clone(),
            exp,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an in-memory key cannot fail")
    }

    /// The user a token names, if its signature, expiry and claims hold.
    pub fn verify(&self, token: &str) -> Result<UserRef, AuthError> {
        self.verify_until(token).map(|verified| verified.user)
    }

    /// Like [`Auth::verify`], with the moment the token expires, so an open
    /// connection can be closed then (PROTOCOL 1.1: 4001 at expiry).
    pub fn verify_until(&self, token: &str) -> Result<Verified, AuthError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|err| {
            match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(err.to_string()),
            }
        })?;
        let Claims { sub, name, exp } = data.claims;
        if !Channel::is_user_id(&sub) {
            return Err(AuthError::Invalid("sub must be 1 to 64 characters".into()));
        }
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_TOKEN_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(AuthError::Invalid(
                "name must be 1 to 64 visible characters".into(),
            ));
        }
        Ok(Verified {
            user: UserRef {
                id: sub,
                name: name.to_owned(),
            },
            // A far-future `exp` from another backend must not overflow.
            valid_until: UNIX_EPOCH
                .checked_add(Duration::from_secs(exp.saturating_add(LEEWAY_SECS)))
                .unwrap_or(UNIX_EPOCH + Duration::from_secs(u32::MAX.into())),
        })
    }
}

/// Checks a guest name and returns the user it logs in as: the name trimmed,
/// the id `guest:` and the name case-folded.
pub fn guest(name: &str) -> Result<UserRef, AuthError> {
    let name = check_guest_name(name).map_err(AuthError::Name)?;
    Ok(UserRef {
        id: format!("{GUEST_ID_PREFIX}{}", name.to_lowercase()),
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a test secret of at least 32 bytes!!";

    fn auth() -> Auth {
        Auth::new(SECRET, Duration::from_secs(3600))
    }

    #[test]
    fn a_minted_token_verifies_as_its_user() {
        let user = guest("  Alice ").unwrap();
        assert_eq!(
            user,
            UserRef {
                id: "guest:alice".into(),
                name: "Alice".into()
            }
        );
        assert_eq!(auth().verify(&auth().mint(&user)), Ok(user));
    }

    #[test]
    fn tokens_from_another_secret_expired_or_garbled_are_refused() {
        let user = guest("bob").unwrap();
        let other = Auth::new(b"other", Duration::from_secs(3600)).mint(&user);
        assert!(matches!(auth().verify(&other), Err(AuthError::Invalid(_))));
        assert!(matches!(
            auth().verify("not.a.token"),
            Err(AuthError::Invalid(_))
        ));
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "bob".into(),
                name: "Bob".into(),
                exp: 1_000,
            },
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(auth().verify(&expired), Err(AuthError::Expired));
    }

    #[test]
    fn tokens_with_bad_claims_are_refused() {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        for (sub, name) in [
            ("", "x"),
            (&*"a".repeat(65), "x"),
            ("x", "  "),
            ("x", &*"n".repeat(65)),
        ] {
            let token = encode(
                &Header::new(Algorithm::HS256),
                &Claims {
                    sub: sub.into(),
                    name: name.into(),
                    exp,
                },
                &EncodingKey::from_secret(SECRET),
            )
            .unwrap();
            assert!(auth().verify(&token).is_err(), "{sub:?} {name:?}");
        }
    }

    #[test]
    fn guest_names_are_one_to_32_visible_characters() {
        assert!(guest("Ada Lovelace").is_ok());
        assert!(guest(&"é".repeat(32)).is_ok());
        assert_eq!(guest("   "), Err(AuthError::Name("must not be empty")));
        assert_eq!(
            guest(&"x".repeat(33)),
            Err(AuthError::Name("at most 32 characters"))
        );
        assert_eq!(
            guest("a\u{7}b"),
            Err(AuthError::Name("only visible characters"))
        );
        assert_eq!(
            guest("\u{200B}"),
            Err(AuthError::Name("only visible characters"))
        );
        assert_eq!(guest("ÅSA").unwrap().id, "guest:åsa");
    }

    /// A guest can never take the id of a user another backend mints tokens
    /// for: whatever the name, the id is in the `guest:` namespace.
    #[test]
    fn guest_ids_never_collide_with_backend_ids() {
        for name in ["1042", "admin", "Alice", "guest:bob"] {
            let user = guest(name).unwrap();
            assert!(user.id.starts_with("guest:"), "{}", user.id);
            assert_ne!(user.id, name.to_lowercase());
        }
    }

    #[test]
    fn a_verified_token_says_until_when_it_is_valid() {
        let user = guest("ann").unwrap();
        let verified = auth().verify_until(&auth().mint(&user)).unwrap();
        let left = verified
            .valid_until
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(
            left > Duration::from_secs(3600) && left <= Duration::from_secs(3600 + LEEWAY_SECS)
        );
    }
}
