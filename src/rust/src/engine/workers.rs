//! While a job waits: the worker processes this session started, and the
//! queues its tasks wait in.
//!
//! A worker whose process ended in the middle of a task (the task called
//! `quit()`, or crashed R) would be found only when its lease ran out. The
//! session that started it sees the process end: every reap interval the
//! wait asks it (`LocalWorkers::ended`), declares those still registered
//! lost at once with how they ended (`monitor::lose`: the running task
//! counts the attempt and, after its last one, ends DIED with that
//! reason), and has them replaced, so that a task that kills its worker
//! cannot empty the pool.
//!
//! A task in a queue that no live worker serves would wait for ever. When
//! none of the job's tasks ends for `starve_warn`, the wait looks at who
//! serves its queues (`monitor::serving`) and tells its caller, once per
//! spell; after `starve_error` it fails with `Error::NoWorkers`.

use super::{Hooks, Job};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::monitor;
use crate::status;
use std::time::Instant;

/// The worker processes a session started, as the engine sees them.
pub trait LocalWorkers {
    /// Workers whose processes ended since the last call, each with how
    /// it ended ("exited with status 1", "killed by signal 9 (SIGKILL)").
    fn ended(&mut self) -> Vec<(String, String)>;
    /// These of them were lost in their work (not gone on their own):
    /// start others in their place.
    fn replace(&mut self, ids: &[String]);
}

impl Job {
    /// Every reap interval: the session's ended worker processes, and
    /// queues nobody serves. Adds to `notices` what the caller must be told.
    pub(super) fn watch_workers(&mut self, conn: &mut Connection, hooks: &mut Hooks<'_>) -> Result<()> {
        if self.last_watch.elapsed() < self.opts.reap_every {
            return Ok(());
        }
        self.last_watch = Instant::now();
        if let Some(local) = hooks.workers.as_deref_mut() {
            let ended = local.ended();
            if !ended.is_empty() {
                let lost = monitor::lose(conn, &self.keys, &ended)?;
                local.replace(&lost);
                self.read_lost(conn)?;
            }
        }
        self.look_for_starving(conn)
    }

    fn look_for_starving(&mut self, conn: &mut Connection) -> Result<()> {
        let Some(warn) = self.opts.starve_warn else { return Ok(()) };
        if std::mem::take(&mut self.progressed) || self.held.is_empty() && self.watched.is_empty() {
            self.starved = None;
            return Ok(());
        }
        let mut queues: Vec<String> = self.held.values().map(|t| t.queue.clone()).collect();
        queues.extend(self.queues.iter().cloned());
        queues.sort();
        queues.dedup();
        // a worker's own queue empties when it leaves (what waits there
        // ends DIED), so only shared queues can starve
        queues.retain(|q| !q.starts_with(status::PRIVATE_MARK));
        let found = monitor::serving(conn, &self.keys, &queues)?;
        let starving: Vec<(String, u64)> =
            queues.into_iter().zip(found).filter(|(_, (queued, serving))| *queued > 0 && *serving == 0).map(|(q, (n, _))| (q, n)).collect();
        if starving.is_empty() {
            self.starved = None;
            return Ok(());
        }
        let (since, told) = self.starved.get_or_insert((Instant::now(), false));
        let waited = since.elapsed();
        let what = starving.iter().map(|(q, n)| format!("{n} task(s) in queue '{q}'")).collect::<Vec<_>>().join(", ");
        if let Some(limit) = self.opts.starve_error {
            if waited >= limit {
                return Err(Error::NoWorkers(format!(
                    "no live worker served the queue(s) of this wait for {:.0} s ({what} waiting): \
                     start workers (worker_spawn(), startLocalWorkers(), the redq-worker launcher) \
                     or raise option redq.no_worker_timeout",
                    waited.as_secs_f64()
                )));
            }
        }
        if !*told && waited >= warn {
            *told = true;
            self.notices.push(format!(
                "no live worker serves the queue(s) of this wait: {what} waiting; start workers \
                 (worker_spawn(), startLocalWorkers(), the redq-worker launcher) serving them"
            ));
        }
        Ok(())
    }
}
