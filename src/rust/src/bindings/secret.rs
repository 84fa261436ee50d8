//! Secrets: passwords, tokens and signing keys, from the operating
//! system's secure generator (never from R's, which a seed makes
//! predictable and which redq must not advance).

use super::out;
use extendr_api::prelude::*;

/// A new secret of `bytes` random bytes, as hexadecimal digits.
#[extendr]
fn rs_secret_new(bytes: f64) -> Robj {
    out(crate::protocol::required_count("bytes", bytes, 1, 1024).and_then(|n| crate::signature::random_token(n as usize)))
}

/// A secret given from R (NULL or "" for none).
pub(crate) fn given(secret: &Nullable<String>) -> Option<&str> {
    match secret {
        Nullable::NotNull(s) if !s.is_empty() => Some(s.as_str()),
        _ => None,
    }
}

extendr_module! {
    mod secret;
    fn rs_secret_new;
}
