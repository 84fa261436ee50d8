//! The task API's wait: for tasks a front end did not submit itself.

use super::{Hooks, Job, JobOptions, Want};
use crate::connection::Connection;
use crate::error::Error;
use crate::keys::Keys;
use crate::monitor::LostWorker;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Everything `task_wait()` needs: the final status of each id (in order),
/// the workers found lost meanwhile, and the error that ended the wait, if
/// any (timeout, interrupt, connection).
#[derive(Debug)]
pub struct Watched {
    /// Final status of each id ('' for ids that had not ended).
    pub statuses: Vec<String>,
    /// Workers found lost while waiting.
    pub lost: Vec<LostWorker>,
    /// Why the wait ended early.
    pub error: Option<Error>,
    /// Results that came with the completion notices (small ones of tasks
    /// that completed), by id.
    pub results: Vec<(String, Vec<u8>)>,
    /// What the caller must be told (see `Batch::notices`): the wait then
    /// returned early, and `statuses` is empty; wait again.
    pub notices: Vec<String>,
}

/// Wait for tasks created anywhere, reading only their statuses: the task
/// API's wait. Notices arrive on job `job`'s list (the waiting controller's
/// id, to which its own tasks report); tasks of other controllers are
/// followed by their statuses.
pub fn wait_all(
    conn: &mut Connection,
    keys: &Keys,
    job: &str,
    ids: &[String],
    opts: JobOptions,
    timeout: Option<Duration>,
    hooks: &mut Hooks<'_>,
) -> Watched {
    let mut j = Job::new(keys, Some(job.to_string()), JobOptions { fetch: false, consume: false, ..opts });
    j.watch(ids);
    let start = Instant::now();
    let mut notices = Vec::new();
    let (mut ended, error) = match j.wait(conn, Want::All, None, timeout, hooks) {
        Ok(batch) if !batch.notices.is_empty() => {
            notices = batch.notices;
            (Vec::new(), None)
        }
        Ok(batch) if batch.timed_out => (batch.ended, Some(j.timeout_error(conn, Some(start.elapsed())))),
        Ok(batch) => (batch.ended, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let results = ended.iter_mut().filter_map(|e| e.result.take().map(|r| (e.id.clone(), r))).collect();
    // borrowed, not copied: a wait may cover a million ids
    let by_id: HashMap<&str, &str> = ended.iter().map(|e| (e.id.as_str(), e.status.as_str())).collect();
    Watched {
        statuses: ids.iter().map(|id| by_id.get(id.as_str()).map_or_else(String::new, |s| s.to_string())).collect(),
        lost: j.take_lost(),
        error,
        results,
        notices,
    }
}
