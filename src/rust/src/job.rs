//! foreach jobs: one environment uploaded once, many tasks that report to
//! the job's own completion list, results collected in batches, and every
//! key removed when the loop ends.

use crate::connection::Connection;
use crate::error::Result;
use crate::keys::Keys;
use crate::queue;
use crate::signature;
use crate::status;
use std::time::Duration;

/// A job's keys live at most this long if its controller vanishes.
pub const JOB_TTL_S: u64 = 7 * 86400;

/// Upload the job environment and list the job (`about` describes it for
/// `jobs()`: queue, user, host, pid, start time).
pub fn put_env(conn: &mut Connection, keys: &Keys, job: &str, env: &[u8], about: &str) -> Result<()> {
    let env = signature::seal(conn.config().secret.as_deref(), env);
    conn.run(|c| {
        redis::pipe()
            .cmd("SET")
            .arg(keys.job_env(job))
            .arg(&env)
            .arg("EX")
            .arg(JOB_TTL_S)
            .ignore()
            .hset(keys.jobs(), job, about)
            .ignore()
            .query::<()>(c)
    })
}

/// Running jobs: (job id, description). Entries of jobs whose environment
/// expired (their controller died without cleaning up) are dropped here.
pub fn list(conn: &mut Connection, keys: &Keys) -> Result<Vec<(String, String)>> {
    let mut v: Vec<(String, String)> = conn.run(|c| redis::cmd("HGETALL").arg(keys.jobs()).query(c))?;
    let mut p = redis::pipe();
    for (job, _) in &v {
        p.exists(keys.job_env(job));
    }
    let alive: Vec<bool> = conn.pipe(&p)?;
    let dead: Vec<String> = v.iter().zip(&alive).filter(|(_, a)| !**a).map(|((j, _), _)| j.clone()).collect();
    if !dead.is_empty() {
        conn.run(|c| redis::cmd("HDEL").arg(keys.jobs()).arg(&dead).query::<()>(c))?;
    }
    v.retain(|(j, _)| !dead.contains(j));
    v.sort();
    Ok(v)
}

/// Cancel a job from any session: its queued tasks (ids `<job>.<n>` in
/// `queue`) and the ones workers are running. The job's own controller then
/// sees them end CANCELLED. Returns how many were cancelled.
pub fn cancel(conn: &mut Connection, keys: &Keys, job: &str, queue: &str) -> Result<usize> {
    let prefix = format!("{job}.");
    let queued: Vec<String> = conn.run(|c| redis::cmd("LRANGE").arg(keys.queue(queue)).arg(0).arg(-1).query(c))?;
    let workers: Vec<String> = conn.run(|c| redis::cmd("SMEMBERS").arg(keys.workers()).query(c))?;
    let mut p = redis::pipe();
    for w in &workers {
        p.hget(keys.worker(w), "task");
    }
    let running: Vec<Option<String>> = conn.pipe(&p)?;
    let ids: Vec<String> = queued
        .into_iter()
        .chain(running.into_iter().flatten())
        .filter(|id| id.starts_with(&prefix))
        .collect();
    let before = queue::cancel(conn, keys, &ids)?;
    conn.run(|c| redis::cmd("HDEL").arg(keys.jobs()).arg(job).query::<()>(c))?;
    Ok(before.iter().filter(|s| *s == status::PENDING || *s == status::RUNNING).count())
}

/// One ended task as the controller receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    /// Task id.
    pub id: String,
    /// Final status.
    pub status: String,
    /// Result bytes (absent for DIED, TIMEOUT, CANCELLED).
    pub result: Option<Vec<u8>>,
}

/// Wait up to `wait` for completion notices, then fetch every result that
/// has arrived and delete those tasks, in two more round trips.
pub fn collect(conn: &mut Connection, keys: &Keys, job: &str, wait: Duration) -> Result<Vec<Ended>> {
    let done = keys.job_done(job);
    let first: Option<(String, String)> = conn.run_blocking(wait, |c| {
        redis::cmd("BLPOP").arg(&done).arg(wait.as_secs_f64().max(0.01)).query(c)
    })?;
    let Some((_, first)) = first else { return Ok(vec![]) };
    let more: Option<Vec<String>> = conn.run(|c| redis::cmd("LPOP").arg(&done).arg(100_000).query(c))?;
    let mut ids = vec![first];
    ids.extend(more.unwrap_or_default());
    let got = queue::results(conn, keys, &ids)?;
    let mut p = redis::pipe();
    let mut out = Vec::with_capacity(ids.len());
    for (id, (st, result)) in ids.into_iter().zip(got) {
        if status::TERMINAL.contains(&st.as_str()) {
            p.del(keys.task(&id)).ignore();
            out.push(Ended { id, status: st, result });
        }
    }
    conn.pipe::<()>(&p)?;
    Ok(out)
}

/// Which of `ids` the server no longer knows, and whether the job's
/// environment is still there: after a restart without persistence or a
/// FLUSHALL the controller resubmits from what it holds.
pub fn missing(conn: &mut Connection, keys: &Keys, job: &str, ids: &[String]) -> Result<(bool, Vec<usize>)> {
    let mut p = redis::pipe();
    p.exists(keys.job_env(job));
    for id in ids {
        p.exists(keys.task(id));
    }
    let e: Vec<bool> = conn.pipe(&p)?;
    let env = e.first().copied().unwrap_or(false);
    Ok((env, e.iter().skip(1).enumerate().filter(|(_, x)| !**x).map(|(i, _)| i).collect()))
}

/// End a job: cancel what is still queued or running, delete everything.
pub fn remove(conn: &mut Connection, keys: &Keys, job: &str, ids: &[String]) -> Result<()> {
    for chunk in ids.chunks(5000) {
        queue::cancel(conn, keys, chunk)?;
        let mut p = redis::pipe();
        for id in chunk {
            p.del(keys.task(id)).ignore();
        }
        conn.pipe::<()>(&p)?;
    }
    conn.run(|c| {
        redis::pipe().del(keys.job_env(job)).del(keys.job_done(job)).hdel(keys.jobs(), job).query::<()>(c)
    })
}
