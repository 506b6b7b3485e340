//! Signed session tokens: what the page's cookie carries once a person has signed in with the
//! secret. Nothing is stored server-side, so every API replica that shares the secret accepts
//! the others' tokens, and a token dies on its own at its expiry.
//!
//! Format (documented in `docs/api.md`): `v1.<expiry>.<nonce>.<mac>`, where `expiry` is a Unix
//! time in seconds, `nonce` 32 random hex digits, and `mac` the lowercase hex
//! HMAC-SHA256 of `v1.<expiry>.<nonce>` keyed by `HMAC-SHA256(secret, "movierec session v1")`.
//! The secret itself never leaves the server.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The version prefix of a token; a new format gets a new one.
const VERSION: &str = "v1";

/// What the key derivation hashes, so the session key is never the secret itself.
const KEY_LABEL: &[u8] = b"movierec session v1";

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session token is not in the v1 format")]
    Malformed,
    #[error("the session token's signature does not match")]
    BadSignature,
    #[error("the session token has expired")]
    Expired,
}

/// The key tokens are signed with (derived from the secret), ready keyed.
#[derive(Clone)]
pub struct SessionKey(HmacSha256);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(***)")
    }
}

/// HMAC refused a key (HMAC takes any length, so this does not happen).
#[derive(Debug, thiserror::Error)]
#[error("HMAC-SHA256 refused the key")]
pub struct KeyError;

impl SessionKey {
    /// Keyed by `HMAC-SHA256(secret, "movierec session v1")`.
    pub fn derive(secret: &Secret) -> Result<Self, KeyError> {
        let mut derive = HmacSha256::new_from_slice(secret.expose()).map_err(|_| KeyError)?;
        derive.update(KEY_LABEL);
        let key = derive.finalize().into_bytes();
        HmacSha256::new_from_slice(&key)
            .map(Self)
            .map_err(|_| KeyError)
    }

    /// A fresh token valid until `expires_at` (Unix seconds).
    pub fn mint(&self, expires_at: u64) -> String {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let payload = format!("{VERSION}.{expires_at}.{nonce}");
        let mut mac = self.0.clone();
        mac.update(payload.as_bytes());
        let tag = hex::encode(mac.finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// Accepts a token this key signed whose expiry is after `now` (Unix seconds). The signature
    /// is checked in constant time, before anything the token says is believed.
    pub fn verify(&self, token: &str, now: u64) -> Result<(), SessionError> {
        let (payload, tag) = token.rsplit_once('.').ok_or(SessionError::Malformed)?;
        let mut parts = payload.split('.');
        let (Some(VERSION), Some(expiry), Some(nonce), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SessionError::Malformed);
        };
        if nonce.is_empty() || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SessionError::Malformed);
        }
        let tag = hex::decode(tag).map_err(|_| SessionError::Malformed)?;
        let mut mac = self.0.clone();
        mac.update(payload.as_bytes());
        mac.verify_slice(&tag)
            .map_err(|_| SessionError::BadSignature)?;
        let expiry: u64 = expiry.parse().map_err(|_| SessionError::Malformed)?;
        if expiry <= now {
            return Err(SessionError::Expired);
        }
        Ok(())
    }
}

/// Now, in Unix seconds (0 if the clock is before 1970, which makes every token look fresh
/// only to a broken clock, and no token is minted for the past).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> SessionKey {
        SessionKey::derive(&secret.parse().unwrap()).unwrap()
    }

    #[test]
    fn a_minted_token_holds_until_its_expiry_and_only_under_its_key() {
        let k = key("s3cret");
        let token = k.mint(1_000);
        assert_eq!(k.verify(&token, 999), Ok(()));
        assert_eq!(k.verify(&token, 1_000), Err(SessionError::Expired));
        assert_eq!(
            key("s3cret").verify(&token, 10),
            Ok(()),
            "same secret, other replica"
        );
        assert_eq!(
            key("other").verify(&token, 10),
            Err(SessionError::BadSignature)
        );
        assert_ne!(k.mint(1_000), token, "each token has its own nonce");
    }

    #[test]
    fn a_changed_expiry_or_a_mangled_token_is_refused() {
        let k = key("s3cret");
        let token = k.mint(1_000);
        let forged = token.replacen("v1.1000.", "v1.9999.", 1);
        assert_eq!(k.verify(&forged, 10), Err(SessionError::BadSignature));
        for bad in [
            "",
            "v1",
            "v1.1000.abc",
            "v2.1000.ab.cd",
            "v1.x.ab.zz",
            "v1.1.2.3.4",
        ] {
            assert!(k.verify(bad, 10).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_format_is_the_documented_one() {
        // An independent signer: the documented recipe, written out with the hmac crate.
        let secret = "s3cret";
        let mut derive = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
        derive.update(b"movierec session v1");
        let session_key = derive.finalize().into_bytes();
        let payload = "v1.4000000000.00112233445566778899aabbccddeeff";
        let mut mac = HmacSha256::new_from_slice(&session_key).unwrap();
        mac.update(payload.as_bytes());
        let token = format!("{payload}.{}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(key(secret).verify(&token, 10), Ok(()));
    }
}
