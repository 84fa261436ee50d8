//! A controller: any process that submits work and waits for it. It owns
//! one connection, and its id names the job its task API tasks report to.

use crate::config::Config;
use crate::connection::Connection;
use crate::error::Result;
use crate::keys::Keys;
use crate::protocol::check_version;
use crate::id::new_id;
use crate::scripts;
use crate::signature::{message_context, reply_context, Purpose};

/// Connection, namespace keys, and this controller's id.
pub struct Controller {
    /// The connection (reconnects by itself after a failure).
    pub conn: Connection,
    /// Keys of the namespace.
    pub keys: Keys,
    /// This controller's id: the job its task API tasks report to.
    pub cid: String,
    /// Results its waits received with completion notices.
    pub results: ResultCache,
}

/// Results of tasks a controller saw complete while it waited (small
/// ones, which come with the completion notice), kept so that fetching
/// them right after the wait costs no round trip. A completed task's
/// result never changes; an entry goes when the task is deleted through
/// this controller, or all at once when the cache would pass
/// `RESULT_CACHE_BYTES`.
#[derive(Default)]
pub struct ResultCache {
    map: std::collections::HashMap<String, Vec<u8>>,
    bytes: usize,
}

/// Most bytes of results a controller keeps (`ResultCache`).
pub const RESULT_CACHE_BYTES: usize = 64 << 20;

impl ResultCache {
    /// Keep results that came with completion notices.
    pub fn keep(&mut self, results: Vec<(String, Vec<u8>)>) {
        for (id, r) in results {
            if self.bytes + r.len() > RESULT_CACHE_BYTES {
                self.map.clear();
                self.bytes = 0;
            }
            self.bytes += r.len();
            if let Some(old) = self.map.insert(id, r) {
                self.bytes -= old.len();
            }
        }
    }

    /// The results of all of `ids`, or None if any is not there.
    pub fn get_all(&self, ids: &[String]) -> Option<Vec<Vec<u8>>> {
        if ids.is_empty() {
            return None;
        }
        ids.iter().map(|id| self.map.get(id).cloned()).collect()
    }

    /// Forget the results of `ids`.
    pub fn forget(&mut self, ids: &[String]) {
        for id in ids {
            if let Some(r) = self.map.remove(id) {
                self.bytes -= r.len();
            }
        }
    }
}

impl Controller {
    /// Connect and check the namespace's schema version.
    pub fn open(cfg: &Config) -> Result<Controller> {
        let keys = Keys::new(&cfg.namespace);
        let mut conn = Connection::open(cfg)?;
        let version: Option<String> = conn.run(|c| redis::cmd("GET").arg(keys.version()).query(c))?;
        if let Some(v) = version {
            check_version(&v)?;
        }
        Ok(Controller { conn, keys, cid: new_id(), results: ResultCache::default() })
    }

    /// The completion list of this controller's task API tasks.
    pub fn done(&self) -> String {
        self.keys.job_done(&self.cid)
    }

    /// Drop this controller's completion list.
    pub fn close(&mut self) -> Result<()> {
        let done = self.done();
        self.conn.run(|c| redis::cmd("DEL").arg(&done).query(c))
    }

    /// Run one command given as words (administration and tests).
    pub fn command(&mut self, args: &[String]) -> Result<redis::Value> {
        let Some((name, rest)) = args.split_first() else {
            return Err(crate::error::Error::Argument("no command given".into()));
        };
        let mut cmd = redis::cmd(name);
        for a in rest {
            cmd.arg(a);
        }
        self.conn.run(|c| cmd.query(c))
    }

    /// Store a value of the namespace (`value_set()`), sealed for its key.
    pub fn data_set(&mut self, name: &str, value: &[u8]) -> Result<()> {
        let k = self.keys.data(name);
        let v = self.conn.config().seal(Purpose::Value, &k, value);
        self.conn.run(|c| redis::cmd("SET").arg(&k).arg(&v).query(c))
    }

    /// Fetch a value of the namespace (`value_get()`), if set, opened.
    pub fn data_get(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        let k = self.keys.data(name);
        let v: Option<Vec<u8>> = self.conn.run(|c| redis::cmd("GET").arg(&k).query(c))?;
        v.map(|v| self.conn.config().open(Purpose::Value, &k, v)).transpose()
    }

    /// Send a message to workers: returns its id, under which their
    /// replies arrive (`responses`).
    pub fn message_send(&mut self, workers: &[String], command: &str, args: &[u8]) -> Result<String> {
        let mid = crate::id::new_id();
        let mk = self.keys.message(&mid);
        let ttl = crate::protocol::CONTROL_TTL_S as i64;
        let args = self.conn.config().seal(Purpose::Message, &message_context(&mid, command), args);
        let mut p = redis::pipe();
        p.cmd("HSET").arg(&mk).arg("command").arg(command.as_bytes()).arg("args").arg(&args).ignore();
        p.expire(&mk, ttl).ignore();
        for w in workers {
            let ck = self.keys.worker_control(w);
            p.rpush(&ck, format!("{} {}", crate::status::CONTROL_MESSAGE, mid)).ignore();
            p.expire(&ck, ttl).ignore();
        }
        self.conn.pipe::<()>(&p)?;
        Ok(mid)
    }

    /// Replies to message `mid` so far: (worker, reply), each opened; a
    /// reply whose seal does not verify is replaced by an `e` reply that
    /// says so.
    pub fn message_responses(&mut self, mid: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let k = self.keys.response(mid);
        let got: Vec<(String, Vec<u8>)> = self.conn.run(|c| redis::cmd("HGETALL").arg(&k).query(c))?;
        Ok(got
            .into_iter()
            .map(|(w, r)| {
                let r = self.conn.config().open(Purpose::Reply, &reply_context(mid, &w), r).unwrap_or_else(|e| {
                    let mut refused = b"e".to_vec();
                    refused.extend_from_slice(e.to_string().as_bytes());
                    refused
                });
                (w, r)
            })
            .collect())
    }

    /// doRedis' `redisSet()`: a value under the key the user names, outside
    /// any namespace.
    /// Sealed for the key, like the namespace's values.
    pub fn raw_set(&mut self, key: &str, value: &[u8]) -> Result<()> {
        let v = self.conn.config().seal(Purpose::Value, key, value);
        self.conn.run(|c| redis::cmd("SET").arg(key).arg(&v).query(c))
    }

    /// doRedis' `redisGet()`: a sealed value opened; a plain string (a
    /// counter) as it is; an unsealed R serialization refused when this
    /// controller has a secret (R would unserialize it).
    pub fn raw_get(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        let v: Option<Vec<u8>> = self.conn.run(|c| redis::cmd("GET").arg(key).query(c))?;
        match v {
            Some(v) if crate::signature::is_sealed(&v) || crate::signature::is_serialization(&v) => {
                self.conn.config().open(Purpose::Value, key, v).map(Some)
            }
            v => Ok(v),
        }
    }

    /// doRedis' `redisIncrBy()`/`redisDecrBy()`: the new value.
    pub fn raw_incr_by(&mut self, key: &str, by: i64) -> Result<i64> {
        self.conn.run(|c| redis::cmd("INCRBY").arg(key).arg(by).query(c))
    }

    /// doRedis' `redisDelete()`: how many keys were deleted.
    pub fn raw_delete(&mut self, keys: &[String]) -> Result<i64> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.conn.run(|c| redis::cmd("DEL").arg(keys).query(c))
    }

    /// Delete every key of the namespace (`redq_destroy()`, once its
    /// workers are stopped); returns how many. SCAN with the namespace's
    /// prefix: all of them live in the one slot of its hash tag.
    pub fn destroy(&mut self) -> Result<u64> {
        let pattern = format!("{}*", self.keys.prefix().replace('[', "\\[").replace('?', "\\?"));
        let mut cursor: u64 = 0;
        let mut n: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self.conn.run(|c| {
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query(c)
            })?;
            if !keys.is_empty() {
                n += keys.len() as u64;
                self.conn.run(|c| redis::cmd("UNLINK").arg(&keys).query::<()>(c))?;
            }
            cursor = next;
            if cursor == 0 {
                crate::big::remove_offload_dir(self.conn.config(), &self.keys);
                return Ok(n);
            }
        }
    }

    /// The dashboard's picture of the namespace, in one read-only script
    /// (see `lua/snapshot.lua`): {now, queues, workers, counts, failures,
    /// recent tasks}, nested as the script returns it.
    /// A failure's result is opened (its seal checked) and left out if it
    /// is refused or stored in chunks.
    pub fn snapshot(&mut self, recent: usize, failures: usize) -> Result<redis::Value> {
        let mut inv = scripts::invocation(scripts::snapshot(), &self.keys);
        inv.arg(recent).arg(failures);
        let mut v: redis::Value = self.conn.run(|c| inv.invoke(c))?;
        if let redis::Value::Array(parts) = &mut v {
            if let Some(redis::Value::Array(failed)) = parts.get_mut(4) {
                for f in failed.iter_mut() {
                    let redis::Value::Array(f) = f else { continue };
                    let id: String = f.first().and_then(|i| redis::from_redis_value_ref(i).ok()).unwrap_or_default();
                    if let Some(slot) = f.get_mut(5) {
                        let stored: Option<Vec<u8>> = redis::from_redis_value_ref(slot).unwrap_or(None);
                        *slot = match stored.map(|s| self.conn.config().open(Purpose::Result, &id, s)) {
                            Some(Ok(r)) if crate::big::BigRef::parse(&r).is_none() => redis::Value::BulkString(r),
                            _ => redis::Value::Nil,
                        };
                    }
                }
            }
        }
        Ok(v)
    }

    /// The last `n` events of each worker's log, oldest first, in one
    /// round trip.
    pub fn worker_log(&mut self, ids: &[String], n: usize) -> Result<Vec<Vec<String>>> {
        if ids.is_empty() || n == 0 {
            return Ok(vec![vec![]; ids.len()]);
        }
        let mut p = redis::pipe();
        for id in ids {
            p.lrange(self.keys.worker_log(id), -(n as isize), -1);
        }
        self.conn.run(|c| p.query(c))
    }

    /// Fetch several user values in one round trip (`None` where unset).
    pub fn data_get_many(&mut self, names: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        if names.is_empty() {
            return Ok(vec![]);
        }
        let ks: Vec<String> = names.iter().map(|n| self.keys.data(n)).collect();
        let got: Vec<Option<Vec<u8>>> = self.conn.run(|c| redis::cmd("MGET").arg(&ks).query(c))?;
        ks.iter().zip(got).map(|(k, v)| v.map(|v| self.conn.config().open(Purpose::Value, k, v)).transpose()).collect()
    }

    /// Delete a user value.
    pub fn data_delete(&mut self, name: &str) -> Result<()> {
        let k = self.keys.data(name);
        self.conn.run(|c| redis::cmd("DEL").arg(&k).query(c))
    }
}
