//! Controller-side operations on tasks: statuses, results (opened), table
//! records, bookkeeping, why a task failed, cancellation, deletion, retry,
//! progress and logs. Submitting is `submit`; waiting is `engine`.


use crate::big;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::scripts::{self, invocation};
use crate::signature::Purpose;
use crate::status;
use crate::task::{TaskInfo, INFO_FIELDS};

/// Status of each id; `MISSING` for ids the server does not know.
pub fn statuses(conn: &mut Connection, keys: &Keys, ids: &[String]) -> Result<Vec<String>> {
    let mut p = redis::pipe();
    for id in ids {
        p.hget(keys.task(id), "status");
    }
    let out: Vec<Option<String>> = conn.pipe(&p)?;
    Ok(out.into_iter().map(|s| s.unwrap_or_else(|| status::MISSING.to_string())).collect())
}

/// A task's end as a controller receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    /// Task id.
    pub id: String,
    /// Status (`MISSING` if the server does not know the id).
    pub status: String,
    /// Result bytes (absent when not fetched, or when none was stored:
    /// DIED, TIMEOUT, CANCELLED, IMPOSSIBLE).
    pub result: Option<Vec<u8>>,
    /// The tag the task was submitted with.
    pub tag: Option<f64>,
    /// Why its stored result was refused (its seal did not verify): the
    /// result is then absent and must not be taken for one.
    pub refused: Option<String>,
    /// Why a task that DIED did (the workers lost while running it and
    /// how they ended), when known.
    pub detail: Option<String>,
}

impl Ended {
    /// The server knows the task.
    pub fn exists(&self) -> bool {
        self.status != status::MISSING
    }
    /// The task will not change any more.
    pub fn done(&self) -> bool {
        status::is_done(&self.status)
    }
    /// It ran to the end and its result is a value (one whose seal was
    /// refused is not).
    pub fn completed(&self) -> bool {
        self.status == status::COMPLETE && self.refused.is_none()
    }
    /// Why there is no result, for the error value shown in its place.
    pub fn message(&self) -> String {
        match (&self.refused, &self.detail) {
            (Some(why), _) => format!("task {}: {why}", self.id),
            (None, Some(d)) => d.clone(),
            (None, None) => status::describe(&self.status),
        }
    }

    /// A task's end with its stored result (as `open_result` gives it).
    pub fn new(id: String, status: String, result: std::result::Result<Option<Vec<u8>>, String>, tag: Option<f64>) -> Ended {
        match result {
            Ok(result) => Ended { id, status, result, tag, refused: None, detail: None },
            Err(why) => Ended { id, status, result: None, tag, refused: Some(why), detail: None },
        }
    }
}

/// Task `id`'s stored result as R may unserialize it: its seal opened
/// (refused, with the reason, unless it verifies) and, for a reference,
/// its chunks read and checked. Failures to read are errors.
pub fn open_result(conn: &mut Connection, keys: &Keys, id: &str, stored: Option<Vec<u8>>) -> Result<std::result::Result<Option<Vec<u8>>, String>> {
    let Some(stored) = stored.filter(|s| !s.is_empty()) else { return Ok(Ok(None)) };
    match conn.config().open(Purpose::Result, id, stored) {
        Ok(v) => Ok(Ok(Some(big::resolve(conn, keys, v)?))),
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// Status and stored result bytes of each id.
pub fn results(conn: &mut Connection, keys: &Keys, ids: &[String]) -> Result<Vec<Ended>> {
    let mut p = redis::pipe();
    for id in ids {
        p.cmd("HMGET").arg(keys.task(id)).arg("status").arg("result");
    }
    let out: Vec<(Option<String>, Option<Vec<u8>>)> = conn.pipe(&p)?;
    let mut v = Vec::with_capacity(ids.len());
    for (id, (s, r)) in ids.iter().zip(out) {
        let result = open_result(conn, keys, id, r)?;
        v.push(Ended::new(id.clone(), s.unwrap_or_else(|| status::MISSING.to_string()), result, None));
    }
    explain_died(conn, keys, &mut v);
    Ok(v)
}

/// Say why each task that DIED did (`failure`): rare, so worth the round
/// trip it costs.
pub fn explain_died(conn: &mut Connection, keys: &Keys, ended: &mut [Ended]) {
    for e in ended.iter_mut().filter(|e| e.status == status::DIED && e.detail.is_none()) {
        e.detail = failure(conn, keys, &e.id).ok();
    }
}

/// What a table view of tasks needs of each: status, the worker that ran
/// (or runs) it, its payload (kept until it completes, or, for a task API
/// task that ended otherwise, until deleted) and its result, both opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub status: String,
    pub worker: String,
    pub payload: Option<Vec<u8>>,
    pub result: Option<Vec<u8>>,
}

/// Records of `ids`, in one pipeline (MISSING for unknown ids).
pub fn records(conn: &mut Connection, keys: &Keys, ids: &[String]) -> Result<Vec<Record>> {
    let mut p = redis::pipe();
    let payloads = keys.payloads();
    for id in ids {
        p.cmd("HMGET").arg(keys.task(id)).arg("status").arg("worker").arg("result");
        p.cmd("HGET").arg(&payloads).arg(id);
    }
    let out: Vec<redis::Value> = conn.pipe(&p)?;
    let mut v = Vec::with_capacity(ids.len());
    for pair in out.chunks(2) {
        let (s, w, r): (Option<String>, Option<String>, Option<Vec<u8>>) =
            redis::from_redis_value_ref(&pair[0]).unwrap_or((None, None, None));
        let payload: Option<Vec<u8>> = redis::from_redis_value_ref(&pair[1]).unwrap_or(None);
        v.push(Record {
            status: s.unwrap_or_else(|| status::MISSING.to_string()),
            worker: w.unwrap_or_default(),
            payload: payload.filter(|b| !b.is_empty()),
            result: r.filter(|b| !b.is_empty()),
        });
    }
    // a seal that does not verify is an error here: a table cannot show
    // a value it must not unserialize
    for (id, r) in ids.iter().zip(v.iter_mut()) {
        if let Some(b) = r.payload.take() {
            // a payload streamed to its chunks is sealed as its reference
            let b = big::resolve(conn, keys, b)?;
            let b = conn.config().open(Purpose::Payload, id, b)?;
            r.payload = Some(big::resolve(conn, keys, b)?);
        }
        r.result = open_result(conn, keys, id, r.result.take())?.map_err(Error::Signature)?;
    }
    Ok(v)
}

/// Bookkeeping of one task (no payload or result).
pub fn info(conn: &mut Connection, keys: &Keys, id: &str) -> Result<TaskInfo> {
    let vals: Vec<Option<String>> =
        conn.run(|c| redis::cmd("HMGET").arg(keys.task(id)).arg(&INFO_FIELDS[..]).query(c))?;
    if vals.first().map_or(true, |s| s.is_none()) {
        return Err(Error::NotFound(format!("task '{id}' does not exist (never created, deleted, or lost by the server)")));
    }
    Ok(TaskInfo::from_values(vals))
}

/// Why a task ended without a value, in words for a front end's error
/// (a future's `FutureError`): its status, what that means, and the
/// workers that were lost while running it, with their hosts.
pub fn failure(conn: &mut Connection, keys: &Keys, id: &str) -> Result<String> {
    let info = match info(conn, keys, id) {
        Ok(i) => i,
        Err(e) if e.kind() == "not_found" => return Ok(format!("redq task {id}: {}", status::describe(status::MISSING))),
        Err(e) => return Err(e),
    };
    let st = info.get("status").unwrap_or(status::MISSING).to_string();
    let lost: Vec<String> = info
        .attempts
        .iter()
        .filter(|a| a.outcome == status::WORKER_LOST && !a.worker.is_empty())
        .map(|a| a.worker.clone())
        .collect();
    let mut text = format!("redq task {id} ended {st}: {}", status::describe(&st));
    if !lost.is_empty() {
        let records = crate::registry::info(conn, keys, &lost)?;
        let named: Vec<String> = records
            .iter()
            .map(|w| match w.get("lost").filter(|r| !r.is_empty()) {
                Some(why) => format!("{} on host {} ({why})", w.id, w.get("host").unwrap_or("?")),
                None => format!("{} on host {}", w.id, w.get("host").unwrap_or("?")),
            })
            .collect();
        text.push_str(&format!("; workers lost while running it: {}", named.join(", ")));
    }
    Ok(text)
}

/// Ids created through the task API and not yet deleted, oldest first.
pub fn list(conn: &mut Connection, keys: &Keys) -> Result<Vec<String>> {
    conn.run(|c| redis::cmd("LRANGE").arg(keys.tasks()).arg(0).arg(-1).query(c))
}

fn with_ids(conn: &mut Connection, keys: &Keys, script: &redis::Script, ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let mut inv = invocation(script, keys);
    for id in ids {
        inv.arg(id);
    }
    conn.run(|c| inv.invoke(c))
}

/// Cancel tasks (see `lua/cancel.lua`); returns the status each had.
pub fn cancel(conn: &mut Connection, keys: &Keys, ids: &[String]) -> Result<Vec<String>> {
    with_ids(conn, keys, scripts::cancel(), ids)
}

/// Delete tasks: cancel what has not ended and remove their data (see
/// `lua/delete.lua`); returns the status each task had.
pub fn delete(conn: &mut Connection, keys: &Keys, ids: &[String]) -> Result<Vec<String>> {
    let out = with_ids(conn, keys, scripts::delete(), ids)?;
    let _ = big::sweep_offload(conn, keys);
    Ok(out)
}

/// Run ended tasks again (see `lua/retry.lua`), reporting to job `job`
/// (the retrying controller's id). All or nothing: when one task cannot be
/// retried, nothing is, and the error says which and why. Returns the
/// status each task had.
pub fn retry(conn: &mut Connection, keys: &Keys, job: &str, ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let mut inv = invocation(scripts::retry(), keys);
    inv.arg(job);
    for id in ids {
        inv.arg(id);
    }
    let reply: Vec<redis::Value> = conn.run(|c| inv.invoke(c))?;
    let ok = matches!(reply.first(), Some(redis::Value::Int(1)));
    let before: Vec<String> = reply.iter().skip(1).map(|v| redis::from_redis_value_ref(v).unwrap_or_default()).collect();
    if ok {
        return Ok(before);
    }
    let bad: Vec<String> = ids
        .iter()
        .zip(&before)
        .filter(|(_, s)| !status::RETRYABLE.contains(&s.as_str()))
        .map(|(id, s)| format!("{id} ({s})"))
        .collect();
    let why = if bad.is_empty() {
        "their payloads are gone".to_string()
    } else {
        format!("not: {}", bad.join(", "))
    };
    Err(Error::Argument(format!(
        "only tasks that ended without completing ({}) can be retried; {why}. Nothing was retried",
        status::RETRYABLE.join(", ")
    )))
}

/// The progress each task's code last reported (`task_progress_update()`).
pub fn progress(conn: &mut Connection, keys: &Keys, ids: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
    let got = field(conn, keys, ids, "progress")?;
    ids.iter().zip(got).map(|(id, v)| v.map(|v| conn.config().open(Purpose::Progress, id, v)).transpose()).collect()
}

/// What each task printed, if its worker kept it (`task_log()`).
pub fn logs(conn: &mut Connection, keys: &Keys, ids: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
    field(conn, keys, ids, "log")
}

fn field(conn: &mut Connection, keys: &Keys, ids: &[String], name: &str) -> Result<Vec<Option<Vec<u8>>>> {
    let mut p = redis::pipe();
    for id in ids {
        p.hget(keys.task(id), name);
    }
    conn.pipe(&p)
}
