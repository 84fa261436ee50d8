//! Connection settings: a `redis://[user:password@]host:port/db` URL
//! (`rediss://` for TLS; the server's certificate is verified against the
//! system's authorities, or the file in `SSL_CERT_FILE`), a namespace, and
//! the timeouts that keep a dead server from hanging a thread.

use crate::error::{Error, Result};
use redis::IntoConnectionInfo;
use std::time::Duration;

/// Where and how to reach Redis. The password lives only inside `info` and
/// never appears in `Display` output.
#[derive(Clone, Debug)]
pub struct Config {
    /// Parsed connection details (address, db, credentials).
    pub info: redis::ConnectionInfo,
    /// Namespace shared by controllers and workers of one deployment.
    pub namespace: String,
    /// Bound on establishing a TCP connection.
    pub connect_timeout: Duration,
    /// Bound on one non-blocking command's answer.
    pub io_timeout: Duration,
    /// Shared secret for signed payloads (`REDQ_SECRET`), if any.
    pub secret: Option<Vec<u8>>,
    /// Where values over a size go instead of Redis (`REDQ_OFFLOAD_PATH`,
    /// `REDQ_OFFLOAD_THRESHOLD`, or set by the controller or worker).
    pub offload: Option<Offload>,
}

/// A directory shared by controllers and workers for large values.
#[derive(Clone, Debug)]
pub struct Offload {
    /// The directory (each process may see it under its own path).
    pub path: std::path::PathBuf,
    /// Values over this many bytes are written there.
    pub threshold: usize,
}

impl Offload {
    /// From `REDQ_OFFLOAD_PATH` and `REDQ_OFFLOAD_THRESHOLD` (bytes,
    /// default 1 MB), if the path is set.
    pub fn from_env() -> Option<Offload> {
        let path = std::env::var("REDQ_OFFLOAD_PATH").ok().filter(|p| !p.is_empty())?;
        let threshold = std::env::var("REDQ_OFFLOAD_THRESHOLD").ok().and_then(|t| t.parse::<f64>().ok());
        Some(Offload { path: path.into(), threshold: threshold.map_or(1 << 20, |t| t.max(0.0) as usize) })
    }
}

impl Config {
    /// Parse a URL and validate the namespace.
    pub fn new(url: &str, namespace: &str) -> Result<Config> {
        validate_name("namespace", namespace)?;
        if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://")) {
            return Err(Error::Argument(format!(
                "'{}' is not a Redis URL: use redis://[user:password@]host:port/db",
                redact(url)
            )));
        }
        let info = url.into_connection_info().map_err(|e| {
            Error::Argument(format!("cannot parse the Redis URL '{}': {e}", redact(url)))
        })?;
        if !info.addr().is_supported() {
            return Err(Error::Argument(format!("'{}': this kind of address is not supported here", redact(url))));
        }
        let redis = info.redis_settings().clone().set_skip_set_lib_name();
        Ok(Config {
            info: info.set_redis_settings(redis),
            namespace: namespace.to_string(),
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(10),
            secret: crate::signature::secret_from_env(),
            offload: Offload::from_env(),
        })
    }

    /// `host:port/db`, safe to print.
    pub fn address(&self) -> String {
        format!("{}/{}", self.info.addr(), self.info.redis_settings().db())
    }
}

/// Namespaces, queue names and worker names end up inside key names: keep
/// them to characters that cannot break the `redq:{ns}:noun:id` pattern.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(Error::Argument(format!(
            "invalid {what} '{name}': use 1-200 letters, digits, '_', '-', '.' or '@'"
        )))
    }
}

/// Replace the password of a URL with `***`.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let cred = &url[s + 3..at];
            match cred.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &cred[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        let c = Config::new("redis://u:secret@127.0.0.1:7000/2", "ns").unwrap();
        assert_eq!(c.address(), "127.0.0.1:7000/2");
        assert!(!format!("{}", c.address()).contains("secret"));
        assert_eq!(redact("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Config::new("http://x", "ns").unwrap_err().kind() == "argument");
        assert!(Config::new("redis://127.0.0.1:1", "a b").is_err());
        assert!(Config::new("redis://127.0.0.1:1", "").is_err());
        assert!(validate_name("queue", "jobs-1.a_b").is_ok());
        assert!(validate_name("queue", "x{y}").is_err());
    }
}
