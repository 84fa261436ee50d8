//! The namespace's register of workers: a worker registers (and registers
//! again after the server lost it); controllers list and inspect workers
//! and send them control messages.

use crate::connection::Connection;
use crate::error::Result;
use crate::keys::Keys;
use crate::protocol::{check_version, CONTROL_TTL_S, SCHEMA_VERSION, WORKER_LOG_LIMIT};
use crate::status::{self, CONTROL_KILL, CONTROL_STOP};
use std::time::Duration;

/// What a worker tells the namespace about itself.
#[derive(Clone, Debug)]
pub struct Registration {
    /// Keys of the namespace.
    pub keys: Keys,
    /// Worker id (unique).
    pub id: String,
    /// Extra info fields (host, pid, queues, R version, ...).
    pub info: Vec<(String, String)>,
}

/// Register (or register again): info hash, membership, lease, schema
/// version, in one transaction.
pub fn register(conn: &mut Connection, reg: &Registration, lease: Duration) -> Result<()> {
    let k = &reg.keys;
    let mut fields = reg.info.clone();
    fields.push(("status".into(), status::WORKER_IDLE.into()));
    fields.push(("task".into(), String::new()));
    fields.push(("registered".into(), crate::id::now_ms().to_string()));
    let (version,): (String,) = conn.run(|c| {
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(k.worker(&reg.id))
            .arg(&fields)
            .ignore()
            .persist(k.worker(&reg.id))
            .ignore()
            .sadd(k.workers(), &reg.id)
            .ignore()
            .cmd("SET")
            .arg(k.worker_alive(&reg.id))
            .arg(crate::id::now_ms())
            .arg("PX")
            .arg(lease.as_millis() as u64)
            .ignore()
            .cmd("SET")
            .arg(k.version())
            .arg(SCHEMA_VERSION)
            .arg("NX")
            .ignore()
            .get(k.version())
            .query(c)
    })?;
    check_version(&version)
}

/// Add an event to a worker's log, which keeps the newest
/// `WORKER_LOG_LIMIT` (as `worker_event` in `lua/common.lua`, for the
/// events scripts record).
pub fn event(conn: &mut Connection, keys: &Keys, wid: &str, text: &str) -> Result<()> {
    let k = keys.worker_log(wid);
    let line = format!("{} {}", crate::id::now_ms(), text);
    conn.run(|c| {
        redis::pipe()
            .rpush(&k, &line)
            .ignore()
            .ltrim(&k, -(WORKER_LOG_LIMIT as isize), -1)
            .ignore()
            .persist(&k)
            .ignore()
            .query::<()>(c)
    })
}

/// Registered (live or not yet reaped) worker ids, sorted.
pub fn list(conn: &mut Connection, keys: &Keys) -> Result<Vec<String>> {
    let mut v: Vec<String> = conn.run(|c| redis::cmd("SMEMBERS").arg(keys.workers()).query(c))?;
    v.sort();
    Ok(v)
}

/// A worker's record as a controller sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerRecord {
    /// Worker id.
    pub id: String,
    /// Fields of its info hash (empty if the server does not know it).
    pub fields: Vec<(String, String)>,
    /// Whether its lease exists.
    pub alive: bool,
}

impl WorkerRecord {
    /// A field's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Its status: IDLE, BUSY, EXITED, LOST, or MISSING for unknown ids.
    pub fn status(&self) -> &str {
        self.get("status").unwrap_or(status::MISSING)
    }
}

/// Records of the given workers, in one round trip.
pub fn info(conn: &mut Connection, keys: &Keys, ids: &[String]) -> Result<Vec<WorkerRecord>> {
    let mut p = redis::pipe();
    for id in ids {
        p.hgetall(keys.worker(id));
        p.exists(keys.worker_alive(id));
    }
    let vals: Vec<redis::Value> = conn.pipe(&p)?;
    Ok(ids
        .iter()
        .zip(vals.chunks(2))
        .map(|(id, pair)| {
            let mut fields: Vec<(String, String)> = redis::from_redis_value_ref(&pair[0]).unwrap_or_default();
            fields.sort();
            WorkerRecord { id: id.clone(), fields, alive: redis::from_redis_value_ref(&pair[1]).unwrap_or(false) }
        })
        .collect())
}

/// A control message for workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Finish the current task, then exit.
    Stop,
    /// Exit at once; the current task goes back to its queue.
    Kill,
}

impl Signal {
    /// The word on the control list.
    pub fn word(self) -> &'static str {
        match self {
            Signal::Stop => CONTROL_STOP,
            Signal::Kill => CONTROL_KILL,
        }
    }
}

/// Send a control message to workers (read by their side threads at once).
pub fn signal(conn: &mut Connection, keys: &Keys, ids: &[String], sig: Signal) -> Result<()> {
    let mut p = redis::pipe();
    for id in ids {
        p.rpush(keys.worker_control(id), sig.word()).ignore();
        p.expire(keys.worker_control(id), CONTROL_TTL_S as i64).ignore();
    }
    conn.pipe::<()>(&p)
}
