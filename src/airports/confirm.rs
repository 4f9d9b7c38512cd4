//! Confirmation links: `GET /airports/create?…` and `GET /airports/{id}/update?…`
//! write nothing and hand out a token that performs the action once.
//!
//! A token is `base64url(claims JSON) "." base64url(HMAC-SHA256(claims))`,
//! keyed with the server secret. The claims carry the action with its
//! validated payload, the expiry and a random nonce; the nonce is recorded in
//! PostgreSQL when the action runs (see [`super::confirm`]), so a token works once.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{AirportPatch, NewAirport};

type HmacSha256 = Hmac<Sha256>;

/// What a confirmation link performs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    Create { airport: NewAirport },
    Update { id: i64, patch: AirportPatch },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Create { .. } => "airport.create",
            Action::Update { .. } => "airport.update",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    action: Action,
    /// Expiry, Unix seconds.
    exp: i64,
    nonce: String,
}

/// A signed link ready to hand out.
#[derive(Debug, Clone)]
pub struct Token {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// A token whose signature and expiry checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub action: Action,
    pub nonce: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the confirmation link is malformed")]
    Malformed,
    #[error("the confirmation link's signature does not match: it was altered or not issued here")]
    BadSignature,
    #[error("the confirmation link expired at {0}")]
    Expired(DateTime<Utc>),
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("could not generate a nonce: {0}")]
    Random(String),
    #[error("could not encode the token: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Signs and checks tokens with one key and lifetime.
pub struct Signer<'a> {
    key: &'a [u8],
    ttl: TimeDelta,
}

impl<'a> Signer<'a> {
    pub fn new(key: &'a [u8], ttl: std::time::Duration) -> Self {
        Self {
            key,
            ttl: TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX),
        }
    }

    fn mac(&self, message: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.key).expect("HMAC takes keys of any length");
        mac.update(message);
        mac
    }

    /// A token for `action`, valid from `now` for the lifetime.
    pub fn sign(&self, action: Action, now: DateTime<Utc>) -> Result<Token, SignError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| SignError::Random(e.to_string()))?;
        let expires_at = now
            .checked_add_signed(self.ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let claims = Claims {
            action,
            exp: expires_at.timestamp(),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?);
        let signature =
            URL_SAFE_NO_PAD.encode(self.mac(payload.as_bytes()).finalize().into_bytes());
        Ok(Token {
            token: format!("{payload}.{signature}"),
            expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or(expires_at),
        })
    }

    /// Checks the signature (in constant time), then the expiry.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Verified, TokenError> {
        let (payload, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        self.mac(payload.as_bytes())
            .verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        // Signed by us, so the claims are ours; a decoding failure is still not a panic.
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(TokenError::Malformed)?;
        let expires_at = DateTime::from_timestamp(claims.exp, 0).ok_or(TokenError::Malformed)?;
        if now >= expires_at {
            return Err(TokenError::Expired(expires_at));
        }
        Ok(Verified {
            action: claims.action,
            nonce: claims.nonce,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn action() -> Action {
        Action::Update {
            id: 7,
            patch: serde_json::from_value(serde_json::json!({"city": null, "altitude": 3}))
                .unwrap(),
        }
    }

    #[test]
    fn a_token_verifies_with_its_key_until_it_expires() {
        let signer = Signer::new(b"secret", Duration::from_secs(60));
        let now = Utc::now();
        let token = signer.sign(action(), now).unwrap();
        let verified = signer.verify(&token.token, now).unwrap();
        assert_eq!(verified.action, action());
        assert_eq!(verified.expires_at, token.expires_at);
        assert_eq!(
            signer.verify(&token.token, now + TimeDelta::seconds(61)),
            Err(TokenError::Expired(token.expires_at))
        );
        let other = Signer::new(b"other", Duration::from_secs(60));
        assert_eq!(
            other.verify(&token.token, now),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tampering_is_detected() {
        let signer = Signer::new(b"secret", Duration::from_secs(60));
        let now = Utc::now();
        let token = signer.sign(action(), now).unwrap().token;
        let (payload, signature) = token.split_once('.').unwrap();
        // Another payload under the old signature.
        let forged = URL_SAFE_NO_PAD.encode(
            String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap())
                .unwrap()
                .replace("\"id\":7", "\"id\":8"),
        );
        assert_eq!(
            signer.verify(&format!("{forged}.{signature}"), now),
            Err(TokenError::BadSignature)
        );
        assert_eq!(signer.verify("no-dot", now), Err(TokenError::Malformed));
        assert_eq!(
            signer.verify(&format!("{payload}.!!"), now),
            Err(TokenError::Malformed)
        );
        let a = signer.sign(action(), now).unwrap().token;
        assert_ne!(a, token, "every token has its own nonce");
    }
}
