//! Connection settings: a `redis://[user:password@]host:port/db` URL
//! (`rediss://` for TLS; the server's certificate is verified against the
//! system's authorities, or the file in `SSL_CERT_FILE`), a Redis Cluster
//! (`redis+cluster://[user:password@]host:port,host:port`) or the
//! sentinels of a master (`redis+sentinel://[user:password@]host:port,
//! host:port/master[/db]`), a namespace, and the timeouts that keep a dead
//! server from hanging a thread.

use crate::error::{Error, Result};
use crate::signature::Purpose;
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
    /// Shared secret that seals what R unserializes (see `signature`):
    /// given by the caller (the embedded servers' own), else
    /// `REDQ_SECRET`, if any.
    pub secret: Option<Vec<u8>>,
    /// Where values over a size go instead of Redis (`REDQ_OFFLOAD_PATH`,
    /// `REDQ_OFFLOAD_THRESHOLD`, or set by the controller or worker).
    pub offload: Option<Offload>,
    /// One server, a cluster or a sentinel-watched master.
    pub topology: Topology,
}

/// How the server that holds the namespace is found.
#[derive(Clone, Debug)]
pub enum Topology {
    /// `info` names it.
    Single,
    /// A Redis Cluster, known by these nodes (with the URL's credentials):
    /// the master of the namespace's slot is asked for at each connect.
    Cluster(Vec<redis::ConnectionInfo>),
    /// The master the sentinels know as `name`, asked for at each connect
    /// (sentinels are reached without credentials).
    Sentinel { name: String, sentinels: Vec<redis::ConnectionInfo> },
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
        let (info, topology) = if let Some((tls, kind, rest)) = several_nodes(url) {
            nodes(url, tls, kind, rest)?
        } else if ["redis://", "rediss://", "unix://", "redis+unix://"].iter().any(|s| url.starts_with(s)) {
            (node_info(url, url)?, Topology::Single)
        } else {
            return Err(Error::Argument(format!(
                "'{}' is not a Redis URL: use redis://[user:password@]host:port/db, \
                 redis+cluster://host:port,host:port or redis+sentinel://host:port,host:port/master",
                redact(url)
            )));
        };
        Ok(Config {
            info,
            namespace: namespace.to_string(),
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(10),
            secret: crate::signature::secret_from_env(),
            offload: Offload::from_env(),
            topology,
        })
    }

    /// Use this secret (None: keep `REDQ_SECRET`'s, if any).
    pub fn with_secret(mut self, secret: Option<&str>) -> Config {
        if let Some(s) = secret.filter(|s| !s.is_empty()) {
            self.secret = Some(s.as_bytes().to_vec());
        }
        self
    }

    /// Seal a value for `purpose` in `context` (the id it belongs to) with
    /// this configuration's secret (as is without one).
    pub fn seal(&self, purpose: Purpose, context: &str, value: &[u8]) -> Vec<u8> {
        crate::signature::seal(self.secret.as_deref(), purpose, context, value)
    }

    /// Open a value sealed for `purpose` in `context`: refused unless its
    /// seal verifies (see `signature::open`).
    pub fn open(&self, purpose: Purpose, context: &str, value: Vec<u8>) -> Result<Vec<u8>> {
        crate::signature::open(self.secret.as_deref(), purpose, context, value)
    }

    /// `host:port/db`, safe to print (for a cluster or sentinels, the
    /// nodes asked).
    pub fn address(&self) -> String {
        let list = |v: &[redis::ConnectionInfo]| v.iter().map(|i| i.addr().to_string()).collect::<Vec<_>>().join(",");
        match &self.topology {
            Topology::Single => format!("{}/{}", self.info.addr(), self.info.redis_settings().db()),
            Topology::Cluster(seeds) => format!("the cluster of {}", list(seeds)),
            Topology::Sentinel { name, sentinels } => format!("master '{name}' of the sentinels {}", list(sentinels)),
        }
    }

    /// The connection details of the server at `host:port` (a cluster node
    /// or the master a sentinel named), with this configuration's
    /// credentials, database and TLS settings.
    pub fn at(&self, host: &str, port: u16) -> redis::ConnectionInfo {
        let addr = match self.info.addr() {
            redis::ConnectionAddr::TcpTls { insecure, tls_params, .. } => redis::ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => redis::ConnectionAddr::Tcp(host.to_string(), port),
        };
        self.info.clone().set_addr(addr)
    }
}

/// `(tls, "cluster" or "sentinel", rest)` for a URL naming several nodes.
fn several_nodes(url: &str) -> Option<(bool, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let (base, kind) = scheme.split_once('+')?;
    let tls = match base {
        "redis" => false,
        "rediss" => true,
        _ => return None,
    };
    matches!(kind, "cluster" | "sentinel").then_some((tls, kind, rest))
}

/// Parse one server's URL (its password never printed).
fn node_info(url: &str, shown: &str) -> Result<redis::ConnectionInfo> {
    let info = url
        .into_connection_info()
        .map_err(|e| Error::Argument(format!("cannot parse the Redis URL '{}': {e}", redact(shown))))?;
    if !info.addr().is_supported() {
        return Err(Error::Argument(format!("'{}': this kind of address is not supported here", redact(shown))));
    }
    let redis = info.redis_settings().clone().set_skip_set_lib_name();
    Ok(info.set_redis_settings(redis))
}

/// A cluster's or sentinels' URL: `[user:password@]host:port,host:port`,
/// then nothing (or `/0`) for a cluster, `/master[/db]` for sentinels.
fn nodes(url: &str, tls: bool, kind: &str, rest: &str) -> Result<(redis::ConnectionInfo, Topology)> {
    let bad = |why: &str| {
        Error::Argument(format!(
            "'{}': {why}; use redis+cluster://[user:password@]host:port,host:port or \
             redis+sentinel://[user:password@]host:port,host:port/master[/db]",
            redact(url)
        ))
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (cred, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let hosts: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
    if hosts.is_empty() {
        return Err(bad("no host:port given"));
    }
    let scheme = if tls { "rediss" } else { "redis" };
    let mut path = path.split('/').filter(|p| !p.is_empty());
    match kind {
        "cluster" => {
            let db = path.next().unwrap_or("0");
            if db != "0" || path.next().is_some() {
                return Err(bad("a cluster has only database 0"));
            }
            let seeds = hosts
                .iter()
                .map(|h| node_info(&format!("{scheme}://{cred}{h}/0"), url))
                .collect::<Result<Vec<_>>>()?;
            Ok((seeds[0].clone(), Topology::Cluster(seeds)))
        }
        _ => {
            let name = path.next().ok_or_else(|| bad("name the master after the sentinels: /master"))?.to_string();
            let db = path.next().unwrap_or("0");
            let sentinels = hosts
                .iter()
                .map(|h| node_info(&format!("{scheme}://{h}/0"), url))
                .collect::<Result<Vec<_>>>()?;
            // the master's connection details: the first sentinel's address
            // until a sentinel names the master
            let info = node_info(&format!("{scheme}://{cred}{}/{db}", hosts[0]), url)?;
            Ok((info, Topology::Sentinel { name, sentinels }))
        }
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

/// Replace the password of a URL with `***` (in its user part, or in the
/// `pass=` parameter of a Unix socket's URL).
pub fn redact(url: &str) -> String {
    let url = match url.find("pass=") {
        Some(p) if url[..p].contains('?') && (url[..p].ends_with('?') || url[..p].ends_with('&')) => {
            let end = url[p..].find('&').map_or(url.len(), |e| p + e);
            format!("{}pass=***{}", &url[..p], &url[end..])
        }
        _ => url.to_string(),
    };
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let cred = &url[s + 3..at];
            match cred.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &cred[..c], &url[at..]),
                None => url,
            }
        }
        _ => url,
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
        assert_eq!(redact("unix:///run/r.sock?db=0&pass=pw&x=1"), "unix:///run/r.sock?db=0&pass=***&x=1");
        let u = Config::new("unix:///tmp/r.sock?pass=pw", "ns").unwrap();
        assert_eq!(u.info.redis_settings().password(), Some("pw"));
        assert!(!u.address().contains("pw"));
    }

    #[test]
    fn parses_clusters_and_sentinels() {
        let c = Config::new("redis+cluster://:pw@127.0.0.1:7000,127.0.0.1:7001", "ns").unwrap();
        match &c.topology {
            Topology::Cluster(seeds) => assert_eq!(seeds.len(), 2),
            _ => panic!("not a cluster"),
        }
        assert_eq!(c.info.redis_settings().password(), Some("pw"));
        assert!(!c.address().contains("pw"));
        let s = Config::new("redis+sentinel://u:pw@h1:26379,h2:26380/mymaster/2", "ns").unwrap();
        match &s.topology {
            Topology::Sentinel { name, sentinels } => {
                assert_eq!(name, "mymaster");
                assert_eq!(sentinels.len(), 2);
                assert_eq!(sentinels[1].redis_settings().password(), None);
            }
            _ => panic!("not sentinels"),
        }
        assert_eq!(s.info.redis_settings().db(), 2);
        assert_eq!(s.at("10.0.0.1", 6390).addr().to_string(), "10.0.0.1:6390");
        assert!(Config::new("redis+sentinel://h1:26379", "ns").unwrap_err().to_string().contains("master"));
        assert!(Config::new("redis+cluster://h1:7000/3", "ns").unwrap_err().to_string().contains("database 0"));
        assert!(Config::new("redis+cluster://", "ns").is_err());
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
