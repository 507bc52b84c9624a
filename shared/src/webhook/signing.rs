//! Secrets and the two signatures every delivery carries; verification for receivers.

use super::*;

/// The prefix of generated secrets, as in Standard Webhooks.
pub const SECRET_PREFIX: &str = "whsec_";

/// A webhook signing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(super) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A secret that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid webhook secret: {0}")]
pub struct InvalidSecret(pub String);

impl Secret {
    /// A new `whsec_` secret from 32 random bytes.
    pub fn generate() -> Self {
        // The thread-local CSPRNG, seeded from the OS (two UUIDv4s held only 244 random bits).
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes[..]);
        Secret(format!("{SECRET_PREFIX}{}", B64.encode(bytes)))
    }

    /// Accepts a `whsec_<base64>` secret (Standard Webhooks), or any other
    /// string of 16 to 256 bytes (a legacy-style secret, used as is).
    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidSecret> {
        let raw = raw.into();
        if let Some(encoded) = raw.strip_prefix(SECRET_PREFIX) {
            let key = B64.decode(encoded).map_err(|_| InvalidSecret("the part after whsec_ is not base64".into()))?;
            if !(16..=64).contains(&key.len()) {
                return Err(InvalidSecret(format!("the key is {} bytes; 16 to 64 are accepted", key.len())));
            }
        } else if !(16..=256).contains(&raw.len()) {
            return Err(InvalidSecret(format!("is {} bytes; 16 to 256 are accepted", raw.len())));
        }
        Ok(Secret(raw))
    }

    /// The secret as stored and shown to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The HMAC key of the Standard Webhooks signature: the decoded bytes of
    /// a `whsec_` secret, else the string's bytes.
    fn standard_key(&self) -> Vec<u8> {
        match self.0.strip_prefix(SECRET_PREFIX) {
            Some(encoded) => B64.decode(encoded).unwrap_or_else(|_| self.0.as_bytes().to_vec()),
            None => self.0.as_bytes().to_vec(),
        }
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// The legacy hub's `X-Webhook-Signature`: lowercase hex HMAC-SHA256 of the body.
pub fn legacy_signature(secret: &Secret, body: &[u8]) -> String {
    let mut m = mac(secret.0.as_bytes());
    m.update(body);
    m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// One Standard Webhooks signature, `v1,<base64>`.
pub fn standard_signature(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut m = mac(&secret.standard_key());
    m.update(msg_id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    format!("v1,{}", B64.encode(m.finalize().into_bytes()))
}

/// The `webhook-signature` header value: the current secret's signature,
/// then those of secrets still in their rotation grace period.
pub fn signature_header(secrets: &[&Secret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|s| standard_signature(s, msg_id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

/// Why a delivery did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The timestamp is not a number.
    #[error("webhook-timestamp is not a Unix timestamp")]
    BadTimestamp,
    /// Older or newer than the tolerance allows (replay protection).
    #[error("webhook-timestamp is outside the tolerance")]
    StaleTimestamp,
    /// No `v1` signature matched.
    #[error("no matching signature")]
    NoMatch,
}

/// Verifies a Standard Webhooks delivery: `msg_id`, `timestamp` and
/// `signatures` are the `webhook-id`, `webhook-timestamp` and
/// `webhook-signature` headers. Any one matching `v1` signature suffices
/// (rotations send two); comparison is constant-time.
pub fn verify_signature(
    secret: &Secret,
    msg_id: &str,
    timestamp: &str,
    body: &[u8],
    signatures: &str,
    now_secs: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp.trim().parse().map_err(|_| VerifyError::BadTimestamp)?;
    if (now_secs - ts).unsigned_abs() > tolerance.as_secs() {
        return Err(VerifyError::StaleTimestamp);
    }
    let key = secret.standard_key();
    for candidate in signatures.split_whitespace() {
        let Some(encoded) = candidate.strip_prefix("v1,") else { continue };
        let Ok(expected) = B64.decode(encoded) else { continue };
        let mut m = mac(&key);
        m.update(msg_id.as_bytes());
        m.update(b".");
        m.update(ts.to_string().as_bytes());
        m.update(b".");
        m.update(body);
        if m.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}
