//! Sealed values, and the secrets behind them.
//!
//! Anyone who can write to a namespace could make its workers run code
//! (payloads are R objects that workers unserialize and evaluate), and
//! anyone who can write a result could run code in the session that reads
//! it (R unserializes promises). With a shared secret, every value that R
//! will unserialize is sealed by its writer (HMAC-SHA256) and opened by
//! its reader, which refuses, without unserializing, anything whose seal
//! does not verify: payloads, results, job environments, shared objects,
//! worker messages and their replies, relayed conditions, progress values
//! and the namespace's values.
//!
//! A sealed value is `MAGIC ++ tag (32 bytes) ++ value`, where the tag is
//! the HMAC of the value's purpose (one byte), its context (the id of the
//! task, job, message or value it belongs to) and the value: a sealed
//! result cannot pass for a payload, nor task A's result for task B's.
//!
//! Secrets come from the operating system's generator (`random_bytes`),
//! never from R's.

use crate::error::{Error, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Read;

/// Marks a sealed value (an R serialization never starts with it).
pub const MAGIC: &[u8; 4] = b"RQS2";
const TAG: usize = 32;
/// Bytes before the value in a sealed one.
pub const HEADER: usize = MAGIC.len() + TAG;

/// The environment variable holding the shared secret.
pub const SECRET_VAR: &str = "REDQ_SECRET";

/// What a sealed value is for; part of what its tag covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A task's payload.
    Payload,
    /// A task's result.
    Result,
    /// A job's environment.
    Env,
    /// A shared object (common arguments, a large job environment).
    Object,
    /// A message to workers (its command and arguments).
    Message,
    /// A worker's reply to a message.
    Reply,
    /// A condition a running task relays to its waiter.
    Relay,
    /// What a task reported with `task_progress_update()`.
    Progress,
    /// A value stored by name (`value_set()`, `redisSet()`, the namespace's
    /// own records).
    Value,
}

impl Purpose {
    fn byte(self) -> u8 {
        match self {
            Purpose::Payload => b'p',
            Purpose::Result => b'r',
            Purpose::Env => b'e',
            Purpose::Object => b'o',
            Purpose::Message => b'm',
            Purpose::Reply => b'a',
            Purpose::Relay => b'l',
            Purpose::Progress => b'g',
            Purpose::Value => b'v',
        }
    }

    /// The word for it in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Purpose::Payload => "payload",
            Purpose::Result => "result",
            Purpose::Env => "job environment",
            Purpose::Object => "shared object",
            Purpose::Message => "message",
            Purpose::Reply => "reply",
            Purpose::Relay => "relayed condition",
            Purpose::Progress => "progress value",
            Purpose::Value => "value",
        }
    }
}

/// The secret from the environment, if set and not empty.
pub fn secret_from_env() -> Option<Vec<u8>> {
    std::env::var_os(SECRET_VAR)
        .map(|s| s.into_encoded_bytes())
        .filter(|s| !s.is_empty())
}

fn tag(secret: &[u8], purpose: Purpose, context: &str, value: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    m.update(&[purpose.byte()]);
    m.update(&(context.len() as u64).to_be_bytes());
    m.update(context.as_bytes());
    m.update(value);
    m
}

/// Seal a value for `purpose` in `context`.
pub fn sign(secret: &[u8], purpose: Purpose, context: &str, value: &[u8]) -> Vec<u8> {
    let t = tag(secret, purpose, context, value).finalize().into_bytes();
    let mut out = Vec::with_capacity(HEADER + value.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&t);
    out.extend_from_slice(value);
    out
}

/// Seal when a secret is configured, else pass the value through.
pub fn seal(secret: Option<&[u8]>, purpose: Purpose, context: &str, value: &[u8]) -> Vec<u8> {
    match secret {
        Some(s) => sign(s, purpose, context, value),
        None => value.to_vec(),
    }
}

/// Whether `data` looks sealed.
pub fn is_sealed(data: &[u8]) -> bool {
    data.len() >= HEADER && data.starts_with(MAGIC)
}

/// Whether `data` starts like an R serialization (XDR, ASCII or native
/// binary format).
pub fn is_serialization(data: &[u8]) -> bool {
    data.len() >= 2 && data[1] == b'\n' && matches!(data[0], b'X' | b'A' | b'B')
}

/// The value a reader may unserialize. With a secret, only a value sealed
/// with that secret for `purpose` in `context` passes; without one, sealed
/// values are refused too (the reader cannot check them).
pub fn open(secret: Option<&[u8]>, purpose: Purpose, context: &str, data: Vec<u8>) -> Result<Vec<u8>> {
    let what = purpose.noun();
    match (secret, is_sealed(&data)) {
        (None, false) => Ok(data),
        (None, true) => Err(Error::Signature(format!(
            "this {what} is signed, but this process has no secret to check it with: \
             give it the secret of the session that wrote it ({SECRET_VAR})"
        ))),
        (Some(_), false) => Err(Error::Signature(format!(
            "refused an unsigned {what}: with a secret, redq unserializes only what a process \
             with the same secret signed (someone without it wrote this, or its writer has no {SECRET_VAR})"
        ))),
        (Some(s), true) => {
            let (t, value) = data[MAGIC.len()..].split_at(TAG);
            tag(s, purpose, context, value).verify_slice(t).map_err(|_| {
                Error::Signature(format!(
                    "refused a {what} whose signature does not match this process's secret: \
                     it was altered, moved from elsewhere, or written with another {SECRET_VAR}"
                ))
            })?;
            // the value without its header, in place: no second copy
            let mut data = data;
            data.drain(..HEADER);
            Ok(data)
        }
    }
}

/// What a message's seal covers besides its arguments: its id and
/// command, so that neither can be swapped.
pub fn message_context(mid: &str, command: &str) -> String {
    format!("{mid} {command}")
}

/// What a reply's seal covers besides the reply: the message and the
/// worker that answers.
pub fn reply_context(mid: &str, wid: &str) -> String {
    format!("{mid} {wid}")
}

/// `n` bytes from the operating system's secure generator.
pub fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| Error::System(format!("cannot read the system's random generator (/dev/urandom): {e}")))?;
    Ok(buf)
}

/// A secret of `n` random bytes, as `2n` lowercase hexadecimal digits
/// (safe in URLs, configuration files and environment variables).
pub fn random_token(n: usize) -> Result<String> {
    Ok(random_bytes(n)?.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_secret_purpose_and_context() {
        let p = b"X\n\x00\x00\x00\x03payload".to_vec();
        let s = sign(b"k1", Purpose::Payload, "t1", &p);
        assert_eq!(open(Some(b"k1"), Purpose::Payload, "t1", s.clone()).unwrap(), p);
        assert!(open(Some(b"k2"), Purpose::Payload, "t1", s.clone()).unwrap_err().kind() == "signature");
        // a sealed payload does not pass for a result, nor for another task's
        assert!(open(Some(b"k1"), Purpose::Result, "t1", s.clone()).unwrap_err().to_string().contains("result"));
        assert!(open(Some(b"k1"), Purpose::Payload, "t2", s.clone()).is_err());
        assert!(open(None, Purpose::Payload, "t1", s.clone()).is_err());
        assert!(open(Some(b"k1"), Purpose::Payload, "t1", p.clone()).unwrap_err().to_string().contains("unsigned"));
        assert_eq!(open(None, Purpose::Payload, "t1", p.clone()).unwrap(), p);
        let mut forged = s;
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(open(Some(b"k1"), Purpose::Payload, "t1", forged).is_err());
        assert_eq!(seal(None, Purpose::Value, "v", &p), p);
        // the context's length is covered: ("ab", "c...") is not ("a", "bc...")
        let a = sign(b"k", Purpose::Value, "ab", b"c");
        assert!(open(Some(b"k"), Purpose::Value, "a", [&a[..HEADER], b"bc"].concat()).is_err());
    }

    #[test]
    fn tokens_are_random_hex() {
        let a = random_token(32).unwrap();
        let b = random_token(32).unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
