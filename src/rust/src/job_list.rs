//! The namespace's listing of running jobs (doRedis' `jobs()`), and
//! cancelling a job from any session (`removeJob()`). A job's own
//! controller drives it through `engine::Job`.

use crate::connection::Connection;
use crate::error::Result;
use crate::keys::Keys;
use crate::scripts::{self, invocation};

/// A running job as `jobs()` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobInfo {
    /// Job id.
    pub id: String,
    /// Queue its tasks go to.
    pub queue: String,
    /// User running the controller.
    pub user: String,
    /// Controller's host.
    pub host: String,
    /// Controller's process id.
    pub pid: u32,
    /// When the job started, ms since the epoch.
    pub started: f64,
}

/// The listing of a job started now by this process on `queue`.
pub fn describe(queue: &str) -> String {
    let user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_default();
    [queue, &user, &hostname(), &std::process::id().to_string(), &crate::id::now_ms().to_string()].join("\t")
}

fn parse(id: String, about: &str) -> JobInfo {
    let f: Vec<&str> = about.split('\t').collect();
    let at = |i: usize| f.get(i).copied().unwrap_or("").to_string();
    JobInfo {
        id,
        queue: at(0),
        user: at(1),
        host: at(2),
        pid: at(3).parse().unwrap_or(0),
        started: at(4).parse().unwrap_or(f64::NAN),
    }
}

/// This machine's host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) } == 0;
    if !ok {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Running jobs, sorted by id. Jobs whose environment expired (their
/// controller died without cleaning up) are dropped from the listing here.
pub fn list(conn: &mut Connection, keys: &Keys) -> Result<Vec<JobInfo>> {
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
    Ok(v.into_iter().map(|(id, about)| parse(id, &about)).collect())
}

/// Cancel a job from any session: its queued tasks and the ones workers
/// hold (see `lua/cancel_job.lua`). Its own controller then receives them
/// CANCELLED. Returns how many were cancelled.
pub fn cancel(conn: &mut Connection, keys: &Keys, job: &str) -> Result<usize> {
    conn.run(|c| invocation(scripts::cancel_job(), keys).arg(job).invoke(c))
}

#[cfg(test)]
mod tests {
    #[test]
    fn descriptions_parse_back() {
        let d = super::describe("jobs");
        let j = super::parse("j1".into(), &d);
        assert_eq!(j.queue, "jobs");
        assert_eq!(j.pid, std::process::id());
        assert_eq!(j.host, super::hostname());
        assert!(j.started > 0.0);
    }
}
