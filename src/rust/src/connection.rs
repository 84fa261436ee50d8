//! One synchronous Redis connection with timeouts, lazy reconnection and
//! fork safety.
//!
//! * Every connect and read is bounded, so a dead server surfaces as
//!   `Error::Connection` instead of hanging a thread (or the process at exit).
//! * After a broken connection the next call reconnects; `retry` adds
//!   backoff for callers that should ride out a server restart.
//! * A connection inherited through `fork()` (mclapply in a task) belongs to
//!   the parent: the child forgets it without closing and opens its own.

use crate::config::Config;
use crate::error::{Error, Result};
use std::time::{Duration, Instant};

/// A Redis connection owned by one thread.
pub struct Connection {
    cfg: Config,
    conn: Option<redis::Connection>,
    pid: u32,
    /// The server's id for the current connection (`CLIENT ID`), once asked.
    client_id: Option<i64>,
}

impl Connection {
    /// Connect now, so that a wrong address fails at once.
    pub fn open(cfg: &Config) -> Result<Connection> {
        let mut c = Connection { cfg: cfg.clone(), conn: None, pid: std::process::id(), client_id: None };
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

    fn connect(&self) -> Result<redis::Connection> {
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
            Error::Connection(format!("cannot connect to Redis at {}: {what}", self.cfg.address()))
        };
        let client = redis::Client::open(self.cfg.info.clone()).map_err(fail)?;
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
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
            self.client_id = None;
        }
        Ok(self.conn.as_mut().expect("connection was just set"))
    }

    /// Run commands on the connection. A broken connection is dropped, so
    /// the next call reconnects.
    pub fn run<T>(&mut self, f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>) -> Result<T> {
        let _quiet = SignalsDeferred::new();
        let conn = self.get()?;
        match f(conn) {
            Ok(v) => Ok(v),
            Err(e) => {
                let err = Error::from(e);
                if err.is_connection() {
                    self.conn = None;
                }
                Err(err)
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
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
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
