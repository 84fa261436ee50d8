//! One synchronous Redis connection with timeouts, lazy reconnection and
//! fork safety.
//!
//! * Every connect and read is bounded, so a dead server surfaces as
//!   `Error::Connection` instead of hanging a thread (or the process at exit).
//! * After a broken connection the next call reconnects; `retry` adds
//!   backoff for callers that should ride out a server restart.
//! * A connection inherited through `fork()` (mclapply in a task) belongs to
//!   the parent: the child forgets it without closing and opens its own.
//! * On a Redis Cluster it talks to the master of the namespace's slot (all
//!   of a namespace's keys share one hash tag), with Sentinel to the master
//!   the sentinels name; each connect asks again, and a command refused
//!   because the data is elsewhere (MOVED, ASK, READONLY or NOREPLICAS after
//!   a failover, TRYAGAIN, CLUSTERDOWN, LOADING) was not run, so it is sent
//!   again on a new connection until it is accepted (`REDIRECT_PATIENCE`).

use crate::config::{Config, Topology};
use crate::error::{Error, Result};
use std::time::{Duration, Instant};

/// A connection unused this long is checked (PING) before it carries a
/// command: a server that restarted, or a master a failover demoted, has
/// closed it, and a command sent on it could not tell whether it ran.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How long a command refused by a node that no longer holds the
/// namespace's data is tried again (a failover, a slot being moved).
const REDIRECT_PATIENCE: Duration = Duration::from_secs(30);

/// True for a refusal that says the command did not run here and the data
/// is (or will shortly be) served elsewhere or later: for a transaction,
/// discarded because of such refusals; for a pipeline, every command of
/// which was refused so (all of a namespace's keys are in one slot, so a
/// node serves all of them or none; not ASK, which a slot being moved
/// answers key by key).
fn refused_elsewhere(e: &redis::RedisError) -> bool {
    const CODES: [&str; 9] =
        ["MOVED", "ASK", "READONLY", "NOREPLICAS", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "LOADING", "UNBLOCKED"];
    let transaction = e.code() == Some("EXECABORT");
    match e.clone().into_server_errors() {
        Some(errs) if errs.len() == 1 && !transaction => CODES.contains(&errs[0].1.code()),
        Some(errs) if !errs.is_empty() => {
            errs.iter().all(|(_, s)| CODES.contains(&s.code()) && (transaction || s.code() != "ASK"))
        }
        _ => false,
    }
}

/// Whether an error (of one command, or of a pipeline whose commands
/// failed in different ways) includes `NOSCRIPT`: the server lacks a
/// script, which only a caller that holds its source can load.
pub fn lacks_script(e: &redis::RedisError) -> bool {
    e.clone().into_server_errors().is_some_and(|errs| errs.iter().any(|(_, s)| s.code() == "NOSCRIPT"))
}

/// A Redis connection owned by one thread.
pub struct Connection {
    cfg: Config,
    conn: Option<redis::Connection>,
    pid: u32,
    /// The server's id for the current connection (`CLIENT ID`), once asked.
    client_id: Option<i64>,
    /// When a command on the connection last got its answer.
    used: Instant,
}

impl Connection {
    /// Connect now, so that a wrong address fails at once.
    pub fn open(cfg: &Config) -> Result<Connection> {
        let mut c =
            Connection { cfg: cfg.clone(), conn: None, pid: std::process::id(), client_id: None, used: Instant::now() };
        c.get()?;
        Ok(c)
    }

    /// Change where large values go (`offload_path`).
    pub fn set_offload(&mut self, offload: Option<crate::config::Offload>) {
        self.cfg.offload = offload;
    }

    /// The settings this connection was made from.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// A connection to the server that holds the namespace.
    fn connect(&self) -> Result<redis::Connection> {
        match &self.cfg.topology {
            Topology::Single => self.connect_to(&self.cfg.info),
            Topology::Cluster(seeds) => self.cluster_master(seeds),
            Topology::Sentinel { name, sentinels } => self.sentinel_master(name, sentinels),
        }
    }

    /// The master of the namespace's slot, as the first seed that answers
    /// sees the cluster.
    fn cluster_master(&self, seeds: &[redis::ConnectionInfo]) -> Result<redis::Connection> {
        let key = crate::keys::Keys::new(&self.cfg.namespace).version();
        let mut why = String::from("no node answered");
        for seed in seeds {
            let found = self.connect_to(seed).and_then(|mut c| {
                let slot: i64 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(&key).query(&mut c)?;
                let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c)?;
                Ok(slots.iter().find_map(|range| slot_master(range, slot)))
            });
            match found {
                Ok(Some((host, port))) => {
                    let host = if host.is_empty() { seed_host(seed) } else { host };
                    return self.connect_to(&self.cfg.at(&host, port));
                }
                Ok(None) => why = format!("{} serves no master for the namespace's slot (is the cluster up?)", seed.addr()),
                Err(e) => why = e.to_string(),
            }
        }
        Err(Error::Connection(format!("cannot reach the master of namespace '{}' in {}: {why}", self.cfg.namespace, self.cfg.address())))
    }

    /// The master the first sentinel that knows it names, checked to be a
    /// master still.
    fn sentinel_master(&self, name: &str, sentinels: &[redis::ConnectionInfo]) -> Result<redis::Connection> {
        let mut why = String::from("no sentinel answered");
        for s in sentinels {
            let found = self.connect_to(s).and_then(|mut c| {
                let addr: Option<(String, u16)> =
                    redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(name).query(&mut c)?;
                Ok(addr)
            });
            let (host, port) = match found {
                Ok(Some(a)) => a,
                Ok(None) => {
                    why = format!("the sentinel at {} knows no master '{name}'", s.addr());
                    continue;
                }
                Err(e) => {
                    why = e.to_string();
                    continue;
                }
            };
            let mut c = match self.connect_to(&self.cfg.at(&host, port)) {
                Ok(c) => c,
                Err(e) => {
                    why = e.to_string();
                    continue;
                }
            };
            let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c).map_err(Error::from)?;
            if role.first().is_some_and(|r| redis::from_redis_value_ref::<String>(r).is_ok_and(|r| r == "master")) {
                return Ok(c);
            }
            why = format!("{host}:{port}, named by the sentinel at {}, is not a master (a failover under way)", s.addr());
        }
        Err(Error::Connection(format!("cannot reach {}: {why}", self.cfg.address())))
    }

    fn connect_to(&self, info: &redis::ConnectionInfo) -> Result<redis::Connection> {
        let fail = |e: redis::RedisError| {
            let what = if e.kind() == redis::ErrorKind::AuthenticationFailed
                || e.to_string().contains("WRONGPASS")
                || e.to_string().contains("NOAUTH")
            {
                "the server refused the credentials; check the user and password in REDIS_URL"
                    .to_string()
            } else {
                format!("is redis-server running there? ({e})")
            };
            Error::Connection(format!("cannot connect to Redis at {}: {what}", info.addr()))
        };
        let client = redis::Client::open(info.clone()).map_err(fail)?;
        let conn = client.get_connection_with_timeout(self.cfg.connect_timeout).map_err(fail)?;
        conn.set_read_timeout(Some(self.cfg.io_timeout)).map_err(fail)?;
        conn.set_write_timeout(Some(self.cfg.io_timeout)).map_err(fail)?;
        Ok(conn)
    }

    fn get(&mut self) -> Result<&mut redis::Connection> {
        let pid = std::process::id();
        if pid != self.pid {
            // inherited through fork(): the socket is the parent's; closing
            // it could disturb the parent's protocol state
            if let Some(c) = self.conn.take() {
                std::mem::forget(c);
            }
            self.pid = pid;
        }
        if self.used.elapsed() >= IDLE_CHECK {
            if let Some(c) = self.conn.as_mut() {
                match redis::cmd("PING").query::<()>(c) {
                    Ok(()) => self.used = Instant::now(),
                    Err(_) => self.conn = None,
                }
            }
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
            self.client_id = None;
            self.used = Instant::now();
        }
        Ok(self.conn.as_mut().expect("connection was just set"))
    }

    /// Run commands on the connection. A broken connection is dropped, so
    /// the next call reconnects. Commands refused because the namespace's
    /// data is served elsewhere (see `refused_elsewhere`) are sent again on
    /// a new connection, which finds where.
    pub fn run<T>(&mut self, mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>) -> Result<T> {
        let _quiet = SignalsDeferred::new();
        let mut deadline = None;
        let mut pause = Duration::from_millis(20);
        loop {
            let conn = self.get()?;
            match f(conn) {
                Ok(v) => {
                    self.used = Instant::now();
                    return Ok(v);
                }
                Err(e) if refused_elsewhere(&e) => {
                    self.conn = None;
                    let until = *deadline.get_or_insert_with(|| Instant::now() + REDIRECT_PATIENCE);
                    if Instant::now() + pause >= until {
                        return Err(Error::Connection(format!(
                            "the Redis server kept refusing the command for {} s: {e}",
                            REDIRECT_PATIENCE.as_secs()
                        )));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => {
                    let err = Error::from(e);
                    if err.is_connection() {
                        self.conn = None;
                    }
                    return Err(err);
                }
            }
        }
    }

    /// The server's id for this connection, which another connection can
    /// pass to `CLIENT UNBLOCK`; asked once per connection. 0 when the
    /// server refuses to tell (a user not allowed `CLIENT ID`).
    pub fn client_id(&mut self) -> Result<i64> {
        let _ = self.get()?;
        if let Some(id) = self.client_id {
            return Ok(id);
        }
        let id = match self.run(|c| redis::cmd("CLIENT").arg("ID").query::<i64>(c)) {
            Ok(id) => id,
            Err(e) if e.is_connection() => return Err(e),
            Err(_) => 0,
        };
        self.client_id = Some(id);
        Ok(id)
    }

    /// Send a pipeline; an empty one is not sent (Redis rejects it) and
    /// yields `T::default()`.
    pub fn pipe<T: redis::FromRedisValue + Default>(&mut self, p: &redis::Pipeline) -> Result<T> {
        if p.is_empty() {
            return Ok(T::default());
        }
        self.run(|c| p.query(c))
    }

    /// Run a blocking command that may wait up to `wait` on the server: the
    /// read timeout is stretched to cover it, then restored.
    pub fn run_blocking<T>(
        &mut self,
        wait: Duration,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let io = self.cfg.io_timeout;
        self.run(|c| {
            c.set_read_timeout(Some(wait + io))?;
            let r = f(c);
            c.set_read_timeout(Some(io))?;
            r
        })
    }

    /// Like `run`, but rides out connection failures for up to `patience`
    /// with exponential backoff (50 ms doubling to 1 s). Use only for
    /// commands that are safe to send twice.
    pub fn retry<T>(
        &mut self,
        patience: Duration,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + patience;
        let mut pause = Duration::from_millis(50);
        loop {
            match self.run(&mut f) {
                Err(e) if e.is_connection() && Instant::now() + pause < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                r => return r,
            }
        }
    }
}

/// Defers asynchronous signals (SIGCHLD from child processes, SIGINT from
/// Ctrl+C or the worker's own side thread) while a command is on the wire.
/// A socket read with a timeout is never restarted after a signal handler
/// ran: it fails with EINTR, and the reply of a blocking pop that the server
/// already sent would be lost with the connection. Deferred signals are
/// delivered when the mask is restored; interrupt checks then see them.
struct SignalsDeferred {
    old: libc::sigset_t,
}

impl SignalsDeferred {
    fn new() -> SignalsDeferred {
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            // never defer synchronous faults
            for s in [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL, libc::SIGABRT] {
                libc::sigdelset(&mut all, s);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
            SignalsDeferred { old }
        }
    }
}

impl Drop for SignalsDeferred {
    fn drop(&mut self) {
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}

/// Block asynchronous signals for the rest of the calling thread's life:
/// for background threads, so that process-directed signals reach the R
/// thread.
pub fn block_signals_in_this_thread() {
    std::mem::forget(SignalsDeferred::new());
}

/// `(host, port)` of the master of a `CLUSTER SLOTS` range that holds
/// `slot`: `[start, end, [host, port, id, ...], replicas...]`.
fn slot_master(range: &redis::Value, slot: i64) -> Option<(String, u16)> {
    let redis::Value::Array(r) = range else { return None };
    let start: i64 = redis::from_redis_value_ref(r.first()?).ok()?;
    let end: i64 = redis::from_redis_value_ref(r.get(1)?).ok()?;
    if slot < start || slot > end {
        return None;
    }
    let redis::Value::Array(m) = r.get(2)? else { return None };
    let host: String = redis::from_redis_value_ref(m.first()?).ok()?;
    let port: u16 = redis::from_redis_value_ref(m.get(1)?).ok()?;
    Some((host, port))
}

/// The host a seed was reached at (for nodes that announce no address).
fn seed_host(seed: &redis::ConnectionInfo) -> String {
    match seed.addr() {
        redis::ConnectionAddr::Tcp(h, _) => h.clone(),
        redis::ConnectionAddr::TcpTls { host, .. } => host.clone(),
        _ => "127.0.0.1".to_string(),
    }
}
