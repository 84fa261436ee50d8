//! The job engine: the one loop every front end drives to submit tasks and
//! receive their results.
//!
//! A [`Job`] is a set of tasks a controller waits for, with its own
//! completion list `job:<id>:done` that the tasks' terminal transitions
//! push their ids to. A front end
//!
//! 1. opens a job (a foreach loop, a future plan, a BiocParallel manager;
//!    the task API uses the controller's own id as its job),
//! 2. optionally uploads a job environment (`put_env`), which workers
//!    fetch once per job,
//! 3. submits tasks (`submit`, pipelined; the job keeps each task's spec
//!    until its result is in) or watches tasks created elsewhere (`watch`),
//! 4. waits (`wait`) for any, the next n, all, or some given tasks, in
//!    short slices, and receives ended tasks in batches as they arrive,
//! 5. removes the job (`remove`: cancel what is left and delete every key,
//!    one script) or cancels tasks (`cancel`).
//!
//! While it waits, the engine checks for a user interrupt between slices,
//! runs the reaper every `reap_every`, collects lost-worker reports from
//! the event stream (each worker once), rides out an unreachable server for
//! up to `patience`, and every `check_every` (and after a reconnection)
//! reads the status of every outstanding task: a task the server lost
//! (restart without persistence, FLUSHALL) is submitted again from the
//! spec the job holds, after the job environment if that is gone too.

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::monitor::{self, LostWorker};
use crate::protocol::JOB_TTL_S;
use crate::queue::{self, Ended, Submit};
use crate::scripts::{self, invocation};
use crate::signature;
use crate::status;
use crate::task::{new_id, TaskSpec};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// How a job behaves while it waits.
#[derive(Clone, Copy, Debug)]
pub struct JobOptions {
    /// Fetch each ended task's result (else only its status).
    pub fetch: bool,
    /// The job owns its tasks: each is deleted once delivered, and their
    /// records expire should the controller vanish.
    pub consume: bool,
    /// Run the reaper this often while waiting.
    pub reap_every: Duration,
    /// Look for tasks the server lost this often.
    pub check_every: Duration,
    /// Longest single blocking call (interrupts are checked between).
    pub slice: Duration,
    /// How long to wait for an unreachable server before failing.
    pub patience: Duration,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            fetch: true,
            consume: true,
            reap_every: Duration::from_secs(1),
            check_every: Duration::from_secs(30),
            slice: Duration::from_millis(200),
            patience: Duration::from_secs(60),
        }
    }
}

/// What a wait is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Return as soon as at least one task ended, with every one that has.
    Any,
    /// Return once this many have ended (exactly this many, or all that
    /// are left).
    Next(usize),
    /// Return once every task has ended.
    All,
}

/// Calls into the front end while waiting.
pub struct Hooks<'a> {
    /// True if the user asked to stop (checked between slices).
    pub interrupted: &'a mut dyn FnMut() -> bool,
    /// Told (ended so far, total) whenever the count changes.
    pub progress: &'a mut dyn FnMut(usize, usize),
}

/// What a wait returns.
#[derive(Debug, Default)]
pub struct Batch {
    /// Tasks that ended, in the order they were received.
    pub ended: Vec<Ended>,
    /// The timeout passed before the wait was satisfied.
    pub timed_out: bool,
}

/// Whether the worker running a task is still alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskWorker {
    /// Task status (`MISSING` if unknown).
    pub status: String,
    /// The worker that runs (or last ran) it, '' if none.
    pub worker: String,
    /// Whether that worker's lease exists.
    pub alive: bool,
    /// That worker's status (IDLE, BUSY, EXITED, LOST) or ''.
    pub worker_status: String,
    /// Its host.
    pub host: String,
}

impl TaskWorker {
    /// The task is running on a worker that is gone (lost or exited):
    /// unless the reaper requeues it, it will not end by itself.
    pub fn gone(&self) -> bool {
        self.status == status::RUNNING && !self.worker.is_empty() && !self.alive
    }
}

/// For each id, the task's status and whether its worker lives (one round
/// trip; see `lua/task_workers.lua`).
pub fn task_workers(conn: &mut Connection, keys: &Keys, ids: &[String]) -> Result<Vec<TaskWorker>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let mut inv = invocation(scripts::task_workers(), keys);
    for id in ids {
        inv.arg(id);
    }
    let flat: Vec<redis::Value> = conn.run(|c| inv.invoke(c))?;
    let s = |v: &redis::Value| -> String { redis::from_redis_value_ref(v).unwrap_or_default() };
    Ok(flat
        .chunks(5)
        .map(|w| TaskWorker {
            status: s(&w[0]),
            worker: s(&w[1]),
            alive: redis::from_redis_value_ref::<i64>(&w[2]).unwrap_or(0) == 1,
            worker_status: s(&w[3]),
            host: s(&w[4]),
        })
        .collect())
}

/// A set of tasks one controller waits for. See the module documentation.
pub struct Job {
    id: String,
    keys: Keys,
    done: String,
    opts: JobOptions,
    /// The job environment (unsealed) and its listing, to upload again.
    env: Option<(Vec<u8>, String)>,
    /// Tasks submitted here and not yet ended: their specs, for resubmission.
    held: HashMap<String, TaskSpec>,
    /// Tasks created elsewhere that this job waits for.
    watched: HashSet<String>,
    /// Ended tasks not yet handed out (received while waiting for others).
    ready: VecDeque<Ended>,
    /// Workers found lost, not yet handed out.
    lost: Vec<LostWorker>,
    reported: HashSet<String>,
    cursor: Option<String>,
    last_reap: Instant,
    last_check: Instant,
    need_check: bool,
    total: usize,
    delivered: usize,
}

impl Job {
    /// A new job with a fresh id, or the given one (a controller's id for
    /// its task API tasks).
    pub fn new(keys: &Keys, id: Option<String>, opts: JobOptions) -> Job {
        let id = id.unwrap_or_else(new_id);
        Job {
            done: keys.job_done(&id),
            id,
            keys: keys.clone(),
            opts,
            env: None,
            held: HashMap::new(),
            watched: HashSet::new(),
            ready: VecDeque::new(),
            lost: Vec::new(),
            reported: HashSet::new(),
            cursor: None,
            last_reap: Instant::now(),
            last_check: Instant::now(),
            need_check: false,
            total: 0,
            delivered: 0,
        }
    }

    /// The job's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Tasks not yet handed out: submitted or watched and not ended, or
    /// ended and waiting in the batch buffer.
    pub fn outstanding(&self) -> usize {
        self.held.len() + self.watched.len() + self.ready.len()
    }

    /// (handed out, total) so far.
    pub fn progress(&self) -> (usize, usize) {
        (self.delivered, self.total)
    }

    /// Upload the job environment (signed when a secret is set) and list
    /// the job for `jobs()`. Kept, to upload again should the server lose it.
    pub fn put_env(&mut self, conn: &mut Connection, env: Vec<u8>, queue: &str) -> Result<()> {
        let about = crate::job::describe(queue);
        self.upload_env(conn, &env, &about)?;
        self.env = Some((env, about));
        Ok(())
    }

    fn upload_env(&mut self, conn: &mut Connection, env: &[u8], about: &str) -> Result<()> {
        let sealed = signature::seal(conn.config().secret.as_deref(), env);
        let mut p = redis::pipe();
        p.cmd("SET").arg(self.keys.job_env(&self.id)).arg(&sealed).arg("EX").arg(JOB_TTL_S).ignore();
        p.hset(self.keys.jobs(), &self.id, about).ignore();
        let want_cursor = self.cursor.is_none();
        if want_cursor {
            p.cmd("XREVRANGE").arg(self.keys.events()).arg("+").arg("-").arg("COUNT").arg(1);
        }
        let reply: Vec<redis::Value> = conn.run(|c| p.query(c))?;
        if want_cursor {
            self.cursor = Some(tail_of(reply.first()));
        }
        Ok(())
    }

    fn ensure_cursor(&mut self, conn: &mut Connection) -> Result<()> {
        if self.cursor.is_none() {
            self.cursor = Some(monitor::events_tail(conn, &self.keys)?);
        }
        Ok(())
    }

    /// Submit tasks to this job in one transaction; the job keeps their
    /// specs until their results are in.
    pub fn submit(&mut self, conn: &mut Connection, mut tasks: Vec<TaskSpec>) -> Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        self.ensure_cursor(conn)?;
        for t in &mut tasks {
            t.job = Some(self.id.clone());
            if self.held.contains_key(&t.id) || self.watched.contains(&t.id) {
                return Err(Error::Argument(format!("task id '{}' is already part of this job", t.id)));
            }
        }
        queue::submit(conn, &self.keys, &tasks, Submit { register: false, expire: self.opts.consume })?;
        self.total += tasks.len();
        for t in tasks {
            self.held.insert(t.id.clone(), t);
        }
        Ok(())
    }

    /// Wait for tasks created elsewhere (the task API, another session).
    /// Their statuses are read at the start of the next wait.
    pub fn watch(&mut self, ids: &[String]) {
        for id in ids {
            if !self.held.contains_key(id) && self.watched.insert(id.clone()) {
                self.total += 1;
            }
        }
        self.need_check = true;
    }

    /// Workers found lost since the last call, each reported once.
    pub fn take_lost(&mut self) -> Vec<LostWorker> {
        std::mem::take(&mut self.lost)
    }

    /// Wait up to `timeout` (None: for ever) for what `want` asks, among
    /// all outstanding tasks or only those in `only`. Ended tasks outside
    /// `only` are kept for later waits. Returns at once when nothing it
    /// could wait for is left.
    pub fn wait(
        &mut self,
        conn: &mut Connection,
        want: Want,
        only: Option<&[String]>,
        timeout: Option<Duration>,
        hooks: &mut Hooks<'_>,
    ) -> Result<Batch> {
        let start = Instant::now();
        let deadline = timeout.and_then(|t| start.checked_add(t));
        let only: Option<HashSet<&str>> = only.map(|ids| ids.iter().map(|s| s.as_str()).collect());
        let mut out = Batch::default();
        let mut shown = usize::MAX;
        let mut polled = false;
        loop {
            self.take_ready(&mut out.ended, only.as_ref(), want);
            let left = self.waiting_for(only.as_ref());
            let satisfied = match want {
                Want::Any => !out.ended.is_empty(),
                Want::Next(n) => out.ended.len() >= n,
                Want::All => false,
            };
            let now_done = self.delivered + out.ended.len();
            if now_done != shown {
                shown = now_done;
                (hooks.progress)(now_done, self.total);
            }
            if satisfied || left == 0 {
                break;
            }
            // a wait with no time left still looks once, without blocking
            let left_time = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if polled && left_time == Some(Duration::ZERO) {
                out.timed_out = true;
                break;
            }
            if (hooks.interrupted)() {
                self.give_back(out.ended);
                return Err(Error::Interrupted);
            }
            let slice = left_time.map_or(self.opts.slice, |t| t.min(self.opts.slice));
            polled = true;
            match self.step(conn, slice) {
                Ok(()) => {}
                Err(e) if e.is_connection() => {
                    if let Err(e) = self.ride_out(conn, e, hooks) {
                        self.give_back(out.ended);
                        return Err(e);
                    }
                    self.need_check = true;
                }
                Err(e) => {
                    self.give_back(out.ended);
                    return Err(e);
                }
            }
        }
        self.delivered += out.ended.len();
        Ok(out)
    }

    /// Why a wait for every task timed out: how many are still pending,
    /// running or otherwise unfinished.
    pub fn timeout_error(&mut self, conn: &mut Connection, waited: Option<Duration>) -> Error {
        let ids: Vec<String> = self.held.keys().chain(self.watched.iter()).cloned().collect();
        let total = self.total;
        let after = waited.map_or(String::new(), |w| format!(" after {:.1} s", w.as_secs_f64()));
        let counts = match queue::statuses(conn, &self.keys, &ids) {
            Ok(st) => {
                let n = |s: &str| st.iter().filter(|x| *x == s).count();
                let (pending, running) = (n(status::PENDING), n(status::RUNNING));
                let other = ids.len() - pending - running;
                let mut parts = vec![format!("{pending} pending (queued, not started)"), format!("{running} running")];
                if other > 0 {
                    parts.push(format!("{other} waiting for dependencies or ending now"));
                }
                format!(": {}", parts.join(", "))
            }
            Err(_) => String::new(),
        };
        Error::Timeout(format!("{} of {total} tasks had not ended{after}{counts}", ids.len()))
    }

    /// Cancel tasks of this job (all outstanding ones, or those given):
    /// queued ones end at once, running ones are interrupted by their
    /// workers; all are then received CANCELLED. Returns how many were
    /// still queued or running.
    pub fn cancel(&mut self, conn: &mut Connection, ids: Option<&[String]>) -> Result<usize> {
        let ids: Vec<String> = match ids {
            Some(ids) => ids.to_vec(),
            None => self.held.keys().chain(self.watched.iter()).cloned().collect(),
        };
        let before = queue::cancel(conn, &self.keys, &ids)?;
        Ok(before.iter().filter(|s| !status::is_done(s)).count())
    }

    /// End the job: cancel what is still queued or running and delete
    /// every key it has (task records and payloads, environment,
    /// completion list, listing) in one script.
    pub fn remove(&mut self, conn: &mut Connection) -> Result<()> {
        let mut ids: Vec<String> = self.held.keys().cloned().collect();
        if !self.opts.consume {
            ids.extend(self.ready.iter().map(|e| e.id.clone()));
        }
        let mut inv = invocation(scripts::remove_job(), &self.keys);
        inv.arg(&self.id);
        for id in &ids {
            inv.arg(id);
        }
        conn.run(|c| inv.invoke::<redis::Value>(c))?;
        self.held.clear();
        self.watched.clear();
        self.ready.clear();
        self.env = None;
        Ok(())
    }

    // -- the loop's parts ---------------------------------------------------

    fn is_ours(&self, id: &str) -> bool {
        self.held.contains_key(id) || self.watched.contains(id)
    }

    fn waiting_for(&self, only: Option<&HashSet<&str>>) -> usize {
        match only {
            None => self.held.len() + self.watched.len(),
            Some(o) => o.iter().filter(|id| self.is_ours(id)).count(),
        }
    }

    fn take_ready(&mut self, out: &mut Vec<Ended>, only: Option<&HashSet<&str>>, want: Want) {
        let limit = match want {
            Want::Next(n) => n,
            _ => usize::MAX,
        };
        let mut keep = VecDeque::with_capacity(self.ready.len());
        while let Some(e) = self.ready.pop_front() {
            if out.len() < limit && only.map_or(true, |o| o.contains(e.id.as_str())) {
                out.push(e);
            } else {
                keep.push_back(e);
            }
        }
        self.ready = keep;
    }

    fn give_back(&mut self, ended: Vec<Ended>) {
        for e in ended.into_iter().rev() {
            self.ready.push_front(e);
        }
    }

    /// One slice: block for completion notices; collect what ended, or,
    /// when the slice passed quietly, do the periodic work.
    fn step(&mut self, conn: &mut Connection, slice: Duration) -> Result<()> {
        if self.need_check {
            // the caller looks at what this found before blocking
            return self.check(conn);
        }
        let notices = self.poll(conn, slice)?;
        if notices.is_empty() {
            self.idle(conn)
        } else {
            let ours: Vec<(String, String)> = notices
                .iter()
                .filter_map(|n| n.split_once(' '))
                .filter(|(id, _)| self.is_ours(id))
                .map(|(id, st)| (id.to_string(), st.to_string()))
                .collect();
            self.ended(conn, ours)
        }
    }

    /// Block up to `slice` for the first notice ("<id> <status>"), then
    /// take every other notice already there, without blocking. A zero
    /// slice only takes.
    fn poll(&mut self, conn: &mut Connection, slice: Duration) -> Result<Vec<String>> {
        if slice.is_zero() {
            let got: Option<Vec<String>> = conn.run(|c| redis::cmd("LPOP").arg(&self.done).arg(100_000).query(c))?;
            return Ok(got.unwrap_or_default());
        }
        // Redis blocking timeouts have ~100 ms resolution; never block 0 (= for ever)
        let secs = slice.as_secs_f64().max(0.01);
        let first: Option<(String, String)> =
            conn.run_blocking(slice, |c| redis::cmd("BLPOP").arg(&self.done).arg(secs).query(c))?;
        let Some((_, first)) = first else { return Ok(vec![]) };
        let mut ids = vec![first];
        if self.held.len() + self.watched.len() > 1 {
            let more: Option<Vec<String>> = conn.run(|c| redis::cmd("LPOP").arg(&self.done).arg(100_000).query(c))?;
            ids.extend(more.unwrap_or_default());
        }
        Ok(ids)
    }

    /// Tasks known to have ended, with the status they ended with. A job
    /// that wants only statuses has all it needs; others collect.
    fn ended(&mut self, conn: &mut Connection, ended: Vec<(String, String)>) -> Result<()> {
        if self.opts.fetch || self.opts.consume {
            return self.collect(conn, ended.into_iter().map(|(id, _)| id).collect());
        }
        for (id, st) in ended {
            if self.is_ours(&id) && status::is_done(&st) {
                self.deliver(id, st, None);
            }
        }
        Ok(())
    }

    fn deliver(&mut self, id: String, status: String, result: Option<Vec<u8>>) {
        let tag = self.held.remove(&id).and_then(|t| t.tag);
        self.watched.remove(&id);
        self.ready.push_back(Ended { id, status, result, tag });
    }

    /// Read (and, for a job that owns its tasks, delete) tasks that ended,
    /// in one script; queue the ended ones for handing out. A task held
    /// here that the server no longer knows is submitted again.
    fn collect(&mut self, conn: &mut Connection, ids: Vec<String>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut seen = HashSet::with_capacity(ids.len());
        let ids: Vec<String> = ids.into_iter().filter(|id| seen.insert(id.clone())).collect();
        let mut inv = invocation(scripts::collect(), &self.keys);
        inv.arg(if self.opts.fetch { "1" } else { "0" }).arg(if self.opts.consume { "1" } else { "0" });
        for id in &ids {
            inv.arg(id);
        }
        let flat: Vec<redis::Value> = conn.run(|c| inv.invoke(c))?;
        let mut lost = Vec::new();
        for (id, pair) in ids.into_iter().zip(flat.chunks(2)) {
            let st: String = redis::from_redis_value_ref(&pair[0]).unwrap_or_default();
            let result: Vec<u8> = redis::from_redis_value_ref(&pair[1]).unwrap_or_default();
            if st == status::MISSING && self.held.contains_key(&id) {
                lost.push(id);
            } else if status::is_done(&st) {
                self.deliver(id, st, if result.is_empty() { None } else { Some(result) });
            }
            // anything else is a stale notice (the task was retried): ignore
        }
        self.resubmit(conn, lost)
    }

    /// A quiet slice: run the reaper when due, and look at statuses when a
    /// check is due or some watched tasks report to nobody we listen to.
    fn idle(&mut self, conn: &mut Connection) -> Result<()> {
        if self.last_reap.elapsed() >= self.opts.reap_every {
            self.last_reap = Instant::now();
            self.ensure_cursor(conn)?;
            monitor::reap(conn, &self.keys)?;
            let since = self.cursor.clone().unwrap_or_else(|| "0-0".into());
            let (found, last) = monitor::lost_since(conn, &self.keys, &since)?;
            self.cursor = Some(last);
            for w in found {
                if self.reported.insert(w.id.clone()) {
                    self.lost.push(w);
                }
            }
        }
        if !self.watched.is_empty() || self.last_check.elapsed() >= self.opts.check_every {
            self.check(conn)?;
        }
        Ok(())
    }

    /// Read the status of every outstanding task (and whether the job
    /// environment still exists) in one round trip. Ended tasks whose
    /// notice we did not receive are collected; held tasks the server lost
    /// are submitted again, after the environment if that is gone too.
    fn check(&mut self, conn: &mut Connection) -> Result<()> {
        let ids: Vec<String> = self.held.keys().chain(self.watched.iter()).cloned().collect();
        let mut p = redis::pipe();
        let want_cursor = self.cursor.is_none();
        if want_cursor {
            p.cmd("XREVRANGE").arg(self.keys.events()).arg("+").arg("-").arg("COUNT").arg(1);
        }
        if self.env.is_some() {
            p.exists(self.keys.job_env(&self.id));
        }
        for id in &ids {
            p.hget(self.keys.task(id), "status");
        }
        let reply: Vec<redis::Value> = conn.pipe(&p)?;
        let mut it = reply.iter();
        if want_cursor {
            self.cursor = Some(tail_of(it.next()));
        }
        if self.env.is_some() {
            let exists = it.next().is_some_and(|v| redis::from_redis_value_ref::<bool>(v).unwrap_or(false));
            if !exists {
                let (env, about) = self.env.clone().unwrap_or_default();
                self.upload_env(conn, &env, &about)?;
            }
        }
        let mut ended = Vec::new();
        let mut lost = Vec::new();
        for (id, v) in ids.into_iter().zip(it) {
            let st: Option<String> = redis::from_redis_value_ref(v).unwrap_or(None);
            match st {
                None if self.held.contains_key(&id) => lost.push(id),
                None => ended.push((id, status::MISSING.to_string())),
                Some(s) if status::is_done(&s) => ended.push((id, s)),
                Some(_) => {}
            }
        }
        self.need_check = false;
        self.last_check = Instant::now();
        self.resubmit(conn, lost)?;
        self.ended(conn, ended)
    }

    /// Submit again, under the same ids, tasks the server lost.
    fn resubmit(&mut self, conn: &mut Connection, ids: Vec<String>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let specs: Vec<TaskSpec> = ids.iter().filter_map(|id| self.held.get(id).cloned()).collect();
        queue::submit(conn, &self.keys, &specs, Submit { register: false, expire: self.opts.consume })
    }

    /// Wait for an unreachable server to come back (backoff from 50 ms to
    /// 1 s, interrupts checked in between), for up to `patience`.
    fn ride_out(&mut self, conn: &mut Connection, first: Error, hooks: &mut Hooks<'_>) -> Result<()> {
        let deadline = Instant::now() + self.opts.patience;
        let mut pause = Duration::from_millis(50);
        let mut last = first;
        loop {
            if Instant::now() >= deadline {
                return Err(Error::Connection(format!(
                    "{last}; gave up after waiting {:.0} s for the server to come back",
                    self.opts.patience.as_secs_f64()
                )));
            }
            if (hooks.interrupted)() {
                return Err(Error::Interrupted);
            }
            std::thread::sleep(pause.min(self.opts.slice));
            pause = (pause * 2).min(Duration::from_secs(1));
            match conn.run(|c| redis::cmd("PING").query::<String>(c)) {
                Ok(_) => return Ok(()),
                Err(e) if e.is_connection() => last = e,
                Err(e) => return Err(e),
            }
        }
    }
}

/// The id of the newest event in an XREVRANGE reply ("0-0" when none).
fn tail_of(v: Option<&redis::Value>) -> String {
    v.and_then(|v| redis::from_redis_value_ref::<Vec<(String, Vec<(String, String)>)>>(v).ok())
        .and_then(|v| v.into_iter().next())
        .map_or_else(|| "0-0".to_string(), |(id, _)| id)
}

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
    let (ended, error) = match j.wait(conn, Want::All, None, timeout, hooks) {
        Ok(batch) if batch.timed_out => (batch.ended, Some(j.timeout_error(conn, Some(start.elapsed())))),
        Ok(batch) => (batch.ended, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    // borrowed, not copied: a wait may cover a million ids
    let by_id: HashMap<&str, &str> = ended.iter().map(|e| (e.id.as_str(), e.status.as_str())).collect();
    Watched {
        statuses: ids.iter().map(|id| by_id.get(id.as_str()).map_or_else(String::new, |s| s.to_string())).collect(),
        lost: j.take_lost(),
        error,
    }
}
