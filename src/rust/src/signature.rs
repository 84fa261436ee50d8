//! Signed payloads. Anyone who can write to a namespace can make its
//! workers run code, since payloads are R objects that workers unserialize
//! and evaluate. With a shared secret in `REDQ_SECRET`, controllers sign
//! every payload (HMAC-SHA256) and workers refuse, without unserializing,
//! any payload whose signature does not verify.
//!
//! A signed payload is `MAGIC ++ tag (32 bytes) ++ payload`.

use crate::error::{Error, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Marks a signed payload (an R serialization never starts with it).
pub const MAGIC: &[u8; 4] = b"RQS1";
const TAG: usize = 32;

/// The environment variable holding the shared secret.
pub const SECRET_VAR: &str = "REDQ_SECRET";

/// The secret from the environment, if set and not empty.
pub fn secret_from_env() -> Option<Vec<u8>> {
    std::env::var_os(SECRET_VAR)
        .map(|s| s.into_encoded_bytes())
        .filter(|s| !s.is_empty())
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size")
}

/// Sign a payload.
pub fn sign(secret: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m = mac(secret);
    m.update(payload);
    let tag = m.finalize().into_bytes();
    let mut out = Vec::with_capacity(MAGIC.len() + TAG + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&tag);
    out.extend_from_slice(payload);
    out
}

/// Sign when a secret is configured, else pass the payload through.
pub fn seal(secret: Option<&[u8]>, payload: &[u8]) -> Vec<u8> {
    match secret {
        Some(s) => sign(s, payload),
        None => payload.to_vec(),
    }
}

/// The payload a worker may unserialize. With a secret, only a payload
/// signed with that secret passes; without one, signed payloads are
/// refused too (the worker cannot check them).
pub fn open(secret: Option<&[u8]>, data: Vec<u8>) -> Result<Vec<u8>> {
    let signed = data.len() >= MAGIC.len() + TAG && data.starts_with(MAGIC);
    match (secret, signed) {
        (None, false) => Ok(data),
        (None, true) => Err(Error::Signature(format!(
            "this payload is signed but the worker has no {SECRET_VAR}; give workers the controller's secret"
        ))),
        (Some(_), false) => Err(Error::Signature(format!(
            "refused an unsigned payload: this worker has {SECRET_VAR} set and runs only payloads signed with it"
        ))),
        (Some(s), true) => {
            let (tag, payload) = data[MAGIC.len()..].split_at(TAG);
            let mut m = mac(s);
            m.update(payload);
            m.verify_slice(tag).map_err(|_| {
                Error::Signature(format!(
                    "refused a payload whose signature does not match this worker's {SECRET_VAR}"
                ))
            })?;
            // the payload without its header, in place: no second copy
            let mut data = data;
            data.drain(..MAGIC.len() + TAG);
            Ok(data)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_payloads_open_only_with_the_same_secret() {
        let p = b"X\n\x00\x00\x00\x03payload".to_vec();
        let s = sign(b"k1", &p);
        assert_eq!(open(Some(b"k1"), s.clone()).unwrap(), p);
        assert!(open(Some(b"k2"), s.clone()).unwrap_err().kind() == "signature");
        assert!(open(None, s.clone()).is_err());
        assert!(open(Some(b"k1"), p.clone()).is_err());
        assert_eq!(open(None, p.clone()).unwrap(), p);
        let mut forged = s;
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(open(Some(b"k1"), forged).is_err());
    }
}
