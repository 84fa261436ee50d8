//! Controller-side task operations: bulk submission, status, results,
//! cancellation, and waiting for completion without polling.

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::scripts::{self, invocation};
use crate::signature;
use crate::status;
use crate::task::{TaskSpec, DEFAULT_MAX_ATTEMPTS, INFO_FIELDS};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Submit tasks in one atomic pipeline (MULTI/EXEC): either every task is
/// queued or none is. `register` adds the ids to the namespace's task list
/// (task API); foreach jobs skip it and clean up by job.
pub fn submit(conn: &mut Connection, keys: &Keys, tasks: &[TaskSpec], register: bool) -> Result<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    let now = scripts::now_ms();
    let mut p = redis::pipe();
    p.atomic();
    let mut by_queue: HashMap<&str, Vec<&str>> = HashMap::new();
    let secret = conn.config().secret.clone();
    let payloads = p.cmd("HSET").arg(keys.payloads());
    for t in tasks {
        payloads.arg(&t.id).arg(signature::seal(secret.as_deref(), &t.payload));
    }
    payloads.ignore();
    for t in tasks {
        p.cmd("HSET").arg(keys.task(&t.id)).arg(t.fields(now)).ignore();
        if t.job.is_some() {
            // collected (and deleted) by the loop; expires if its controller died
            p.expire(keys.task(&t.id), crate::job::JOB_TTL_S as i64).ignore();
        }
        if t.depends_on.is_empty() {
            by_queue.entry(t.queue.as_str()).or_default().push(t.id.as_str());
        } else {
            // queued by the script once (if ever) its dependencies complete
            let mut deps = t.depends_on.clone();
            deps.sort();
            deps.dedup();
            p.cmd("EVAL")
                .arg(scripts::LINK_DEPS)
                .arg(1)
                .arg(keys.version())
                .arg(keys.prefix())
                .arg(now)
                .arg(&t.id)
                .arg(deps)
                .ignore();
        }
    }
    for (q, ids) in &by_queue {
        p.lpush(keys.queue(q), ids).ignore();
    }
    let queues: std::collections::BTreeSet<&str> = tasks.iter().map(|t| t.queue.as_str()).collect();
    p.sadd(keys.queues(), queues).ignore();
    if register {
        let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        p.rpush(keys.tasks(), ids).ignore();
    }
    conn.run(|c| p.query::<()>(c))
}

/// Status of each id; `MISSING` for ids the server does not know.
pub fn statuses(conn: &mut Connection, keys: &Keys, ids: &[String]) -> Result<Vec<String>> {
    let mut p = redis::pipe();
    for id in ids {
        p.hget(keys.task(id), "status");
    }
    let out: Vec<Option<String>> = conn.pipe(&p)?;
    Ok(out.into_iter().map(|s| s.unwrap_or_else(|| status::MISSING.to_string())).collect())
}

/// Status and stored result bytes of each id.
pub fn results(conn: &mut Connection, keys: &Keys, ids: &[String]) -> Result<Vec<(String, Option<Vec<u8>>)>> {
    let mut p = redis::pipe();
    for id in ids {
        p.cmd("HMGET").arg(keys.task(id)).arg("status").arg("result");
    }
    let out: Vec<(Option<String>, Option<Vec<u8>>)> = conn.pipe(&p)?;
    Ok(out
        .into_iter()
        .map(|(s, r)| (s.unwrap_or_else(|| status::MISSING.to_string()), r))
        .collect())
}

/// Bookkeeping fields of one task (no payload or result).
pub fn info(conn: &mut Connection, keys: &Keys, id: &str) -> Result<Vec<(String, String)>> {
    let vals: Vec<Option<String>> =
        conn.run(|c| redis::cmd("HMGET").arg(keys.task(id)).arg(&INFO_FIELDS[..]).query(c))?;
    if vals.first().map_or(true, |s| s.is_none()) {
        return Err(Error::NotFound(format!("task '{id}' does not exist (never created, deleted, or lost by the server)")));
    }
    let mut out: Vec<(String, String)> =
        INFO_FIELDS.iter().zip(vals).filter_map(|(k, v)| v.map(|v| (k.to_string(), v))).collect();
    if !out.iter().any(|(k, _)| k == "max_attempts") {
        out.push(("max_attempts".into(), DEFAULT_MAX_ATTEMPTS.to_string()));
    }
    Ok(out)
}

/// Ids created through the task API and not yet deleted, oldest first.
pub fn list(conn: &mut Connection, keys: &Keys) -> Result<Vec<String>> {
    conn.run(|c| redis::cmd("LRANGE").arg(keys.tasks()).arg(0).arg(-1).query(c))
}

/// Cancel tasks (see `lua/cancel.lua`); returns the status each had.
pub fn cancel(conn: &mut Connection, keys: &Keys, ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let mut inv = invocation(scripts::cancel(), keys);
    for id in ids {
        inv.arg(id);
    }
    conn.run(|c| inv.invoke(c))
}

/// Delete tasks: cancel what has not ended and remove their data (see
/// `lua/delete.lua`); returns the status each task had.
pub fn delete(conn: &mut Connection, keys: &Keys, ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let mut inv = invocation(scripts::delete(), keys);
    for id in ids {
        inv.arg(id);
    }
    conn.run(|c| inv.invoke(c))
}

/// Run ended tasks again (see `lua/retry.lua`). All or nothing: returns
/// whether they were requeued, and the status each had.
pub fn retry(conn: &mut Connection, keys: &Keys, cid: &str, ids: &[String]) -> Result<(bool, Vec<String>)> {
    if ids.is_empty() {
        return Ok((true, vec![]));
    }
    let mut inv = invocation(scripts::retry(), keys);
    inv.arg(cid);
    for id in ids {
        inv.arg(id);
    }
    let reply: Vec<redis::Value> = conn.run(|c| inv.invoke(c))?;
    let ok = matches!(reply.first(), Some(redis::Value::Int(1)));
    let statuses = reply.iter().skip(1).map(|v| redis::from_redis_value_ref(v).unwrap_or_default()).collect();
    Ok((ok, statuses))
}

/// Number of PENDING tasks in a queue.
pub fn queue_length(conn: &mut Connection, keys: &Keys, queue: &str) -> Result<usize> {
    conn.run(|c| redis::cmd("LLEN").arg(keys.queue(queue)).query(c))
}

/// Names of queues that ever received a task.
pub fn queue_list(conn: &mut Connection, keys: &Keys) -> Result<Vec<String>> {
    let mut v: Vec<String> = conn.run(|c| redis::cmd("SMEMBERS").arg(keys.queues()).query(c))?;
    v.sort();
    Ok(v)
}

/// Drop a queue: its PENDING tasks end CANCELLED, then the list goes.
pub fn queue_remove(conn: &mut Connection, keys: &Keys, queue: &str) -> Result<usize> {
    let ids: Vec<String> = conn.run(|c| redis::cmd("LRANGE").arg(keys.queue(queue)).arg(0).arg(-1).query(c))?;
    cancel(conn, keys, &ids)?;
    conn.run(|c| redis::pipe().del(keys.queue(queue)).srem(keys.queues(), queue).query::<()>(c))?;
    Ok(ids.len())
}

/// How a wait is driven from the caller: slice length, deadline, a hook
/// that reports a user interrupt, and a hook run once per quiet slice (the
/// controller runs the reaper there).
pub struct WaitOptions<'a> {
    /// Longest single blocking call.
    pub slice: Duration,
    /// Give up after this long (None: wait for ever).
    pub timeout: Option<Duration>,
    /// Returns true if the user asked to stop.
    pub interrupted: &'a mut dyn FnMut() -> bool,
    /// Called after every slice with (ended, total).
    pub progress: &'a mut dyn FnMut(usize, usize),
    /// Called when a slice passes with no notice.
    pub idle: &'a mut dyn FnMut(&mut Connection) -> Result<()>,
}

/// Wait until every id has ended. Completion notices arrive on `notify`
/// (the list named in the tasks' `notify` field); the statuses of ids not
/// yet seen ended are re-read after each quiet slice, which covers tasks
/// created by other controllers. Returns final statuses.
pub fn wait(
    conn: &mut Connection,
    keys: &Keys,
    ids: &[String],
    notify: &str,
    opts: &mut WaitOptions<'_>,
) -> Result<Vec<String>> {
    let start = Instant::now();
    let mut st = statuses(conn, keys, ids)?;
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        index.insert(id.as_str(), i);
    }
    let mut left = st.iter().filter(|s| !status::is_done(s)).count();
    loop {
        (opts.progress)(ids.len() - left, ids.len());
        if left == 0 {
            return Ok(st);
        }
        let slice = match opts.timeout {
            Some(t) => {
                let spent = start.elapsed();
                if spent >= t {
                    return Err(Error::Timeout(format!(
                        "{left} of {} tasks still running after {:.1} s; wait again, or cancel them with task_cancel()",
                        ids.len(),
                        t.as_secs_f64()
                    )));
                }
                opts.slice.min(t - spent)
            }
            None => opts.slice,
        };
        if (opts.interrupted)() {
            return Err(Error::Interrupted);
        }
        let got: Option<(String, String)> = conn.run_blocking(slice, |c| {
            redis::cmd("BLPOP").arg(notify).arg(slice.as_secs_f64().max(0.01)).query(c)
        })?;
        let recheck: Vec<usize> = match got {
            Some((_, first)) => {
                let more: Option<Vec<String>> =
                    conn.run(|c| redis::cmd("LPOP").arg(notify).arg(10_000).query(c))?;
                let mut ended = vec![first];
                ended.extend(more.unwrap_or_default());
                ended.iter().filter_map(|id| index.get(id.as_str()).copied()).collect()
            }
            None => {
                (opts.idle)(conn)?;
                (0..ids.len()).filter(|&i| !status::is_done(&st[i])).collect()
            }
        };
        if recheck.is_empty() {
            continue;
        }
        let sub: Vec<String> = recheck.iter().map(|&i| ids[i].clone()).collect();
        for (i, s) in recheck.into_iter().zip(statuses(conn, keys, &sub)?) {
            if !status::is_done(&st[i]) && status::is_done(&s) {
                left -= 1;
            }
            st[i] = s;
        }
    }
}
