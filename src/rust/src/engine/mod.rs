//! The job engine: the one loop every front end drives to submit tasks and
//! receive their results.
//!
//! A [`Job`] is a set of tasks a controller waits for, with its own
//! completion list `job:<id>:done`, to which the tasks' terminal
//! transitions push a notice "<task id> <status>". A front end
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
//! While it waits (`slice.rs`), the engine checks for a user interrupt
//! between slices, runs the reaper every `reap_every`, collects lost-worker
//! reports from the event stream (each worker once), rides out an
//! unreachable server for up to `patience` (or the wait's own timeout),
//! and every `check_every` (and after a reconnection) reads the status of
//! every outstanding task: a task the server lost (restart without
//! persistence, FLUSHALL) is submitted again from the spec the job holds,
//! after the job environment if that is gone too. `watch.rs` holds the
//! task API's wait and the "is this task's worker gone" query.

mod slice;
mod until;
mod watch;
mod workers;

pub use until::{wait_until, Until};
pub use watch::{wait_all, Watched};
pub use workers::LocalWorkers;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::monitor::LostWorker;
use crate::submit::{self, Submit};
use crate::tasks::{self, Ended};
use crate::scripts::{self, invocation};
use crate::status;
use crate::id::new_id;
use crate::task::TaskSpec;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// How a job behaves while it waits.
#[derive(Clone, Copy, Debug)]
pub struct JobOptions {
    /// Fetch each ended task's result (else only its status).
    pub fetch: bool,
    /// The job owns the tasks it submits: each is deleted once received,
    /// and their records expire should the controller vanish.
    pub consume: bool,
    /// Run the reaper this often while waiting.
    pub reap_every: Duration,
    /// Look for tasks the server lost this often.
    pub check_every: Duration,
    /// Longest single blocking call (interrupts are checked between).
    pub slice: Duration,
    /// How long to wait for an unreachable server before failing.
    pub patience: Duration,
    /// Hand messages the running tasks relay (progress, conditions) to the
    /// caller: a wait then also returns as soon as one arrives.
    pub relay: bool,
    /// List the job's tasks in the namespace's task list, as the task API
    /// does, so that any session finds them (`task_list()`).
    pub register: bool,
    /// Tell the caller (a notice, see `Batch::notices`) when tasks have
    /// waited this long in a queue that no live worker serves (None: do
    /// not look).
    pub starve_warn: Option<Duration>,
    /// Fail the wait (`Error::NoWorkers`) when they have waited this long.
    pub starve_error: Option<Duration>,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            fetch: true,
            consume: true,
            reap_every: crate::protocol::default_duration("reap_interval"),
            check_every: crate::protocol::default_duration("check_every"),
            slice: Duration::from_millis(200),
            patience: crate::protocol::default_duration("reconnect_patience"),
            relay: false,
            register: false,
            starve_warn: Some(crate::protocol::default_duration("lease")),
            starve_error: None,
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
    /// The worker processes this session started, watched while waiting
    /// (None: none to watch).
    pub workers: Option<&'a mut dyn LocalWorkers>,
}

/// What a wait returns.
#[derive(Debug, Default)]
pub struct Batch {
    /// Tasks that ended, in the order they were received.
    pub ended: Vec<Ended>,
    /// The timeout passed before the wait was satisfied.
    pub timed_out: bool,
    /// Messages relayed by running tasks: (task id, bytes), in order.
    pub relayed: Vec<(String, Vec<u8>)>,
    /// Things the caller must be told now (tasks no live worker will run).
    /// A wait that has such a notice returns at once with it alone (what
    /// had ended stays for the next wait), so that the caller can warn
    /// and wait again.
    pub notices: Vec<String>,
}

/// A set of tasks one controller waits for. See the module documentation.
pub struct Job {
    id: String,
    keys: Keys,
    done: String,
    opts: JobOptions,
    /// The job environment (unsealed), its listing and whether it is
    /// stored as a shared object, to upload again.
    env: Option<(Vec<u8>, String, bool)>,
    /// Tasks submitted here and not yet ended: their specs, for resubmission.
    held: HashMap<String, TaskSpec>,
    /// Tasks created elsewhere that this job waits for.
    watched: HashSet<String>,
    /// Watched tasks that report to another job's list: followed by reading
    /// their statuses (`foreign_every`).
    foreign: HashSet<String>,
    /// Ended tasks not yet handed out (received while waiting for others).
    ready: VecDeque<Ended>,
    /// Messages relayed by running tasks, not yet handed out.
    relayed: Vec<(String, Vec<u8>)>,
    /// Tasks submitted here, received and not yet deleted. A job that
    /// consumes its tasks deletes them with its next collect (so that a
    /// reply lost on the way cannot lose a result); `remove` deletes the
    /// rest.
    acked: Vec<String>,
    /// Workers found lost, not yet handed out.
    lost: Vec<LostWorker>,
    /// A task received since the last look for lost workers ran more than
    /// once.
    rerun: bool,
    reported: HashSet<String>,
    cursor: Option<String>,
    last_reap: Instant,
    last_check: Instant,
    last_foreign: Instant,
    /// Queues of the watched tasks (learned by `check`), for `starving`.
    queues: HashSet<String>,
    last_watch: Instant,
    /// A task ended since the last look at the workers.
    progressed: bool,
    /// Since when tasks wait in a queue no live worker serves, and whether
    /// the caller was told.
    starved: Option<(Instant, bool)>,
    notices: Vec<String>,
    /// A wait gave up on the server after `patience`: the removal that
    /// follows (a loop's clean-up) tries once instead of waiting again.
    server_gone: bool,
    need_check: bool,
    /// Set when the job was cancelled from another session.
    cancelled: bool,
    total: usize,
    delivered: usize,
}

impl Job {
    /// A new job with a fresh id, or the given one (a controller's id for
    /// its task API tasks).
    pub fn new(keys: &Keys, id: Option<String>, opts: JobOptions) -> Job {
        let id = id.unwrap_or_else(new_id);
        let now = Instant::now();
        Job {
            done: keys.job_done(&id),
            id,
            keys: keys.clone(),
            opts,
            env: None,
            held: HashMap::new(),
            watched: HashSet::new(),
            foreign: HashSet::new(),
            ready: VecDeque::new(),
            relayed: Vec::new(),
            acked: Vec::new(),
            lost: Vec::new(),
            rerun: false,
            reported: HashSet::new(),
            cursor: None,
            last_reap: now,
            last_check: now,
            last_foreign: now,
            queues: HashSet::new(),
            last_watch: now,
            progressed: false,
            starved: None,
            notices: Vec::new(),
            server_gone: false,
            need_check: false,
            cancelled: false,
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
    /// the job for `jobs()`; `shared`: store it as a shared object, by the
    /// hash of its content (loops exporting the same data store it once,
    /// workers fetch it once). Kept, to upload again should the server
    /// lose it; a connection lost on the way is left to the next wait's
    /// check, which uploads it if the server does not have it.
    pub fn put_env(&mut self, conn: &mut Connection, env: Vec<u8>, queue: &str, shared: bool) -> Result<()> {
        let about = crate::job_list::describe(queue);
        let sent = self.upload_env(conn, &env, &about, shared);
        self.env = Some((env, about, shared));
        self.unsure(sent)
    }

    /// The environment's upload (or a submission) was not confirmed: the
    /// next check sees to it.
    fn env_unconfirmed(&self) -> bool {
        self.need_check && self.env.is_some()
    }

    /// A write whose connection broke may or may not have run: the next
    /// wait checks what the server has (and submits or uploads what it
    /// lacks) before anything else. Other errors stand.
    fn unsure(&mut self, sent: Result<()>) -> Result<()> {
        match sent {
            Err(e) if e.is_connection() => {
                self.need_check = true;
                Ok(())
            }
            other => other,
        }
    }

    /// Submit tasks to this job in one transaction; the job keeps their
    /// specs until their results are in.
    pub fn submit(&mut self, conn: &mut Connection, mut tasks: Vec<TaskSpec>) -> Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        for t in &mut tasks {
            t.job = Some(self.id.clone());
            if self.held.contains_key(&t.id) || self.watched.contains(&t.id) {
                return Err(Error::Argument(format!("task id '{}' is already part of this job", t.id)));
            }
        }
        let how = Submit { register: self.opts.register, expire: self.opts.consume };
        if self.env_unconfirmed() {
            // the server was away: the check uploads the environment if the
            // server lacks it, before any task that needs it is queued
            let checked = self.check(conn, true);
            self.unsure(checked)?;
        }
        let sent = if self.env_unconfirmed() {
            // still unconfirmed: the tasks are kept, and the next wait's
            // check submits them after the environment
            Ok(())
        } else {
            self.ensure_cursor(conn).and_then(|_| submit::submit(conn, &self.keys, &tasks, how))
        };
        self.unsure(sent)?;
        self.total += tasks.len();
        for t in tasks {
            self.held.insert(t.id.clone(), t);
        }
        Ok(())
    }

    /// Wait for tasks created elsewhere (the task API, another session).
    /// Their statuses are read at the start of the next wait; those that
    /// report to another job are then followed by their statuses.
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
    /// could wait for is left. A job that relays returns as soon as a
    /// message from a running task arrives. A job cancelled from another
    /// session ends the wait with `Error::Cancelled`.
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
            out.relayed.append(&mut self.relayed);
            let left = self.waiting_for(only.as_ref());
            let satisfied = !out.relayed.is_empty()
                || match want {
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
            if self.cancelled {
                self.give_back(out);
                return Err(Error::Cancelled(format!(
                    "job {} was cancelled from another session (removeJob()); its remaining tasks will not run",
                    self.id
                )));
            }
            // a wait with no time left still looks once, without blocking
            let left_time = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if polled && left_time == Some(Duration::ZERO) {
                out.timed_out = true;
                break;
            }
            if (hooks.interrupted)() {
                self.give_back(out);
                return Err(Error::Interrupted);
            }
            let slice = left_time.map_or(self.opts.slice, |t| t.min(self.opts.slice));
            polled = true;
            let result = match self.step(conn, slice) {
                Err(e) if e.is_connection() => self.ride_out(conn, e, hooks, deadline),
                other => other.map(|_| true),
            };
            // a server that is away now is ridden out by the next slice
            let result = match result {
                Ok(true) => match self.watch_workers(conn, hooks) {
                    Err(e) if !e.is_connection() => Err(e),
                    _ => Ok(true),
                },
                other => other,
            };
            if !self.notices.is_empty() {
                let notices = std::mem::take(&mut self.notices);
                self.give_back(std::mem::take(&mut out));
                out.notices = notices;
                break;
            }
            match result {
                Ok(true) => {}
                // the wait's own time ran out while the server was away
                Ok(false) => {
                    out.timed_out = true;
                    break;
                }
                Err(e) => {
                    self.give_back(out);
                    return Err(e);
                }
            }
        }
        if self.rerun {
            // a worker lost while this job ran and found by another
            // session's reaper, whose task ran again and ended before this
            // job's own next look, is still reported (a look costs a round
            // trip, so only after a task ran again)
            self.rerun = false;
            let _ = self.read_lost(conn);
        }
        tasks::explain_died(conn, &self.keys, &mut out.ended);
        self.delivered += out.ended.len();
        Ok(out)
    }

    /// Why a wait for every task timed out: how many are still pending,
    /// running or otherwise unfinished.
    pub fn timeout_error(&mut self, conn: &mut Connection, waited: Option<Duration>) -> Error {
        let ids: Vec<String> = self.held.keys().chain(self.watched.iter()).cloned().collect();
        let total = self.total;
        let after = waited.map_or(String::new(), |w| format!(" after {:.1} s", w.as_secs_f64()));
        let counts = match tasks::statuses(conn, &self.keys, &ids) {
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
        let before = tasks::cancel(conn, &self.keys, &ids)?;
        Ok(before.iter().filter(|s| !status::is_done(s)).count())
    }

    /// End the job: cancel what is still queued or running and delete
    /// every key it has (records and payloads of its tasks, environment,
    /// completion list, listing) in one script. Tasks it only watched are
    /// left alone.
    pub fn remove(&mut self, conn: &mut Connection) -> Result<()> {
        let ids: Vec<String> = self.held.keys().chain(self.acked.iter()).cloned().collect();
        let mut inv = invocation(scripts::remove_job(), &self.keys);
        inv.arg(&self.id);
        for id in &ids {
            inv.arg(id);
        }
        // idempotent, so sent again over a broken connection, unless a
        // wait already waited for the server in vain
        let patience = if self.server_gone { Duration::ZERO } else { self.opts.patience };
        conn.retry(patience, |c| inv.invoke::<redis::Value>(c))?;
        let _ = crate::big::sweep_offload(conn, &self.keys);
        self.held.clear();
        self.watched.clear();
        self.foreign.clear();
        self.ready.clear();
        self.acked.clear();
        self.env = None;
        Ok(())
    }
}
