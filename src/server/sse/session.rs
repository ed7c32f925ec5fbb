//! Owns the fallback's sessions on this instance: minting and checking the
//! signed session ids (`s1.{instance}.{nonce}.{signature}`, HS256 over the
//! first three parts with a key derived from the server's secret), and the
//! registry of sessions whose connection task is running here, each with the
//! bounded queue its POSTs feed and the pipe its streams read.

use axum::extract::ws::Message;
use jsonwebtoken::{crypto, Algorithm, DecodingKey, EncodingKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

use super::stream::Pipe;

/// The version tag every session id starts with.
const VERSION: &str = "s1";

/// What the secret is suffixed with before it signs session ids, so a session
/// id's signature can never be taken for a token's or the other way round.
const KEY_CONTEXT: &[u8] = b"|pulse-sse-session";

/// Why a session id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("not a session id")]
    Malformed,
    #[error("the session id's signature does not match")]
    Forged,
    #[error("no open stream for this session: open GET /sse again")]
    NotOpen,
}

/// One session served by this instance.
pub struct Session {
    /// To the connection task's inbound stream (the `SseSocket` holds the
    /// receiver): every POSTed envelope goes in here, in order. Bounded:
    /// a POST waits while the connection is behind.
    pub inbound: mpsc::Sender<Message>,
    /// The events on their way to the stream, and those kept for a resume.
    pub pipe: Arc<Pipe>,
}

/// The sessions open on this instance and the key their ids are signed with.
pub struct Sessions {
    encoding: EncodingKey,
    decoding: DecodingKey,
    instance: Arc<str>,
    open: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    pub fn new(secret: &[u8], instance: Arc<str>) -> Self {
        let key = [secret, KEY_CONTEXT].concat();
        Sessions {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            instance,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A new, unguessable session id naming this instance.
    pub fn mint(&self) -> String {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let signed = format!("{VERSION}.{}.{nonce}", self.instance);
        let signature = crypto::sign(signed.as_bytes(), &self.encoding, Algorithm::HS256)
            .expect("HS256 signing with an in-memory key cannot fail");
        format!("{signed}.{signature}")
    }

    /// Whether `id` is a session id this server's secret signed. (It says
    /// nothing of whether the session is still open: see [`Sessions::get`].)
    pub fn verify(&self, id: &str) -> Result<(), SessionError> {
        let (signed, signature) = id.rsplit_once('.').ok_or(SessionError::Malformed)?;
        let mut parts = signed.split('.');
        let well_formed = parts.next() == Some(VERSION)
            && parts.next().is_some_and(|instance| !instance.is_empty())
            && parts.next().is_some_and(|nonce| nonce.len() == 32)
            && parts.next().is_none()
            && !signature.is_empty();
        if !well_formed {
            return Err(SessionError::Malformed);
        }
        match crypto::verify(
            signature,
            signed.as_bytes(),
            &self.decoding,
            Algorithm::HS256,
        ) {
            Ok(true) => Ok(()),
            _ => Err(SessionError::Forged),
        }
    }

    /// The instance that minted `id` (and holds its session, if open),
    /// checked first.
    pub fn owner<'a>(&self, id: &'a str) -> Result<&'a str, SessionError> {
        self.verify(id)?;
        id.split('.').nth(1).ok_or(SessionError::Malformed)
    }

    /// The open session `id` names, checked first.
    pub fn get(&self, id: &str) -> Result<Arc<Session>, SessionError> {
        self.verify(id)?;
        self.lock().get(id).cloned().ok_or(SessionError::NotOpen)
    }

    pub fn insert(&self, id: String, session: Arc<Session>) {
        self.lock().insert(id, session);
    }

    /// Forgets the open session `id` names (checked first) and hands it to
    /// the caller, who ends it: only one caller gets it.
    pub fn take(&self, id: &str) -> Result<Arc<Session>, SessionError> {
        self.verify(id)?;
        self.lock().remove(id).ok_or(SessionError::NotOpen)
    }

    /// Forgets a session: its POSTs are refused from now on, and once no POST
    /// holds its queue any more, its connection task reads the end of input.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        // Every update is one insert or remove: a poisoned map is still whole.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(secret: &[u8]) -> Sessions {
        Sessions::new(secret, "instance1".into())
    }

    #[test]
    fn a_minted_id_verifies_and_a_changed_one_does_not() {
        let sessions = sessions(b"0123456789abcdef0123456789abcdef");
        let id = sessions.mint();
        assert_eq!(sessions.verify(&id), Ok(()));
        assert_eq!(sessions.owner(&id), Ok("instance1"));
        assert_eq!(sessions.get(&id).err(), Some(SessionError::NotOpen));
        // Another nonce under the same signature is a forgery.
        let (signed, signature) = id.rsplit_once('.').unwrap();
        let (head, _) = signed.rsplit_once('.').unwrap();
        let forged = format!("{head}.{}.{signature}", "0".repeat(32));
        assert_eq!(sessions.verify(&forged), Err(SessionError::Forged));
        // Another server's secret signs other ids.
        let other = self::sessions(b"another secret, another server!!").mint();
        assert_eq!(sessions.verify(&other), Err(SessionError::Forged));
        assert_eq!(sessions.verify("nonsense"), Err(SessionError::Malformed));
        assert_eq!(sessions.verify("s1.a.b.c"), Err(SessionError::Malformed));
    }
}
