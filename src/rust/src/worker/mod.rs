//! The worker's R-thread side: registration, beginning and ending tasks,
//! and leaving (here); the claim/complete step (`step.rs`); the values a
//! running task reads and writes (`values.rs`). The side thread lives in
//! `heartbeat.rs`.

mod step;
mod values;

pub use values::JobEnv;

use crate::config::{validate_name, Config};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::heartbeat::{Heartbeat, Reason, Shared, Timing};
use crate::keys::Keys;
use crate::protocol;
use crate::big;
use crate::registry::{self, register, Registration};
use crate::scripts::{self, invocation};
use crate::signature::Purpose;
use crate::status::{self, Outcome};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much work (by the recent tasks' duration) a worker starts at once
/// when the backlog is long: enough to make a round trip per batch cheap,
/// little enough that no other worker waits long for tasks it holds.
const BATCH_BUDGET: Duration = Duration::from_millis(5);

/// A task the worker finished, waiting to be reported with the next step.
#[derive(Clone, Debug)]
struct Finished {
    id: String,
    status: &'static str,
    result: Vec<u8>,
    began_ms: u64,
}

/// A task claimed for evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Task id.
    pub id: String,
    /// Serialized R payload.
    pub payload: Vec<u8>,
    /// How long it may run.
    pub timeout: Option<Duration>,
    /// The random number stream to install before running it, as R's
    /// `.Random.seed`.
    pub seed: Option<[i32; 7]>,
    /// Why the task may not be run (its signature does not verify, its
    /// record is unusable); the payload is then empty and the task must
    /// end ERROR with this message.
    pub refused: Option<String>,
    /// The job it reports to ('' for none).
    pub job: String,
}

/// Worker settings.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Worker id; a fresh one if None.
    pub name: Option<String>,
    /// Queues served, highest priority first.
    pub queues: Vec<String>,
    /// Heartbeat timing.
    pub timing: Timing,
    /// Most tasks claimed in one step.
    pub max_batch: usize,
    /// Extra info for the registration hash.
    pub info: Vec<(String, String)>,
}

/// A registered worker.
pub struct Worker {
    conn: Connection,
    reg: Registration,
    /// Queues served, highest priority first: the worker's own queue, then
    /// those it was started with.
    queues: Vec<String>,
    max_batch: usize,
    /// Tasks started by the last step and not yet begun by the R loop.
    batch: VecDeque<(String, Option<Duration>, String)>,
    /// The task being evaluated and the job it reports to.
    relay_to: Option<(String, String)>,
    /// Tasks finished since the last step.
    finished: Vec<Finished>,
    /// When the task being evaluated began.
    began: Option<(Instant, u64)>,
    /// Recent tasks' duration (exponentially weighted), for the batch size.
    typical: Option<Duration>,
    /// The last step was the one behind a blocking move that timed out: it
    /// looked at every queue just now, so the next step, with nothing to
    /// report, can block again at once.
    looked: bool,
    shared: Arc<Shared>,
    heartbeat: Heartbeat,
    exited: bool,
}

impl Worker {
    /// Connect, register and start the side thread.
    pub fn start(cfg: &Config, opts: WorkerOptions) -> Result<Worker> {
        if opts.queues.is_empty() {
            return Err(Error::Argument("a worker needs at least one queue".into()));
        }
        for q in &opts.queues {
            validate_name("queue", q)?;
            if status::private_owner(q).is_some() {
                return Err(Error::Argument(format!(
                    "invalid queue '{q}': names starting with '{}' are workers' own queues",
                    status::PRIVATE_MARK
                )));
            }
        }
        let id = opts.name.clone().unwrap_or_else(crate::id::new_id);
        validate_name("worker name", &id)?;
        let t = opts.timing;
        if opts.max_batch == 0 {
            return Err(Error::Argument("'max_batch' must be at least 1".into()));
        }
        protocol::check_lease(t.period, t.lease)?;
        let keys = Keys::new(&cfg.namespace);
        let mut conn = Connection::open(cfg)?;
        let alive: bool = conn.run(|c| redis::cmd("EXISTS").arg(keys.worker_alive(&id)).query(c))?;
        if alive {
            return Err(Error::Argument(format!("a live worker named '{id}' already serves this namespace; choose another name")));
        }
        let mut info = opts.info.clone();
        info.push(("queues".into(), opts.queues.join(",")));
        info.push(("heartbeat".into(), format!("{}", t.period.as_secs_f64())));
        info.push(("lease".into(), format!("{}", t.lease.as_secs_f64())));
        let reg = Registration { keys, id, info };
        register(&mut conn, &reg, t.lease)?;
        registry::event(&mut conn, &reg.keys, &reg.id, &format!("started, serving {}", opts.queues.join(",")))?;
        let shared = Arc::new(Shared::default());
        *shared.r_thread.lock() = Some(unsafe { libc::pthread_self() });
        let started = Connection::open(cfg)
            .and_then(|side| Heartbeat::spawn(side, reg.clone(), t, shared.clone()));
        let heartbeat = match started {
            Ok(h) => h,
            Err(e) => {
                // registered a moment ago: leave again rather than be reaped later
                let (wid, keys) = (reg.id.clone(), reg.keys.clone());
                let _ = conn.run(|c| {
                    invocation(scripts::exit_worker(), &keys).arg(&wid).arg(status::EXIT_NORMAL).invoke::<redis::Value>(c)
                });
                return Err(e);
            }
        };
        Ok(Worker {
            conn,
            queues: std::iter::once(status::private_queue(&reg.id)).chain(opts.queues).collect(),
            reg,
            max_batch: opts.max_batch,
            batch: VecDeque::new(),
            relay_to: None,
            finished: Vec::new(),
            began: None,
            typical: None,
            looked: false,
            shared,
            heartbeat,
            exited: false,
        })
    }

    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.reg.id
    }

    /// Keys of the namespace.
    pub fn keys(&self) -> &Keys {
        &self.reg.keys
    }

    /// True once a graceful STOP arrived.
    pub fn stop_requested(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    /// How many SIGINTs the side thread has sent, and how many of them
    /// for the task now running (0 when none is).
    pub fn signals_sent(&self) -> (u64, u64) {
        let cur = self.shared.current.lock();
        let sent = self.shared.signals.load(Ordering::SeqCst);
        (sent, if cur.id.is_some() { sent - cur.signals_at_begin } else { 0 })
    }

    /// Arm a deadline for part of the running task (one element of a
    /// BiocParallel task), or disarm it with `None`: when it passes, the
    /// side thread interrupts R as it does when a task's timeout expires.
    pub fn set_deadline(&self, d: Option<Duration>) {
        let mut cur = self.shared.current.lock();
        cur.deadline = d.and_then(|d| Instant::now().checked_add(d));
    }

    /// Bring the running task's deadline forward to `d` from now, if it
    /// is later or unset (a worker's own limit on every task).
    pub fn cap_deadline(&self, d: Duration) {
        let mut cur = self.shared.current.lock();
        if let Some(at) = Instant::now().checked_add(d) {
            if cur.deadline.map_or(true, |old| at < old) {
                cur.deadline = Some(at);
            }
        }
    }

    /// A PAUSE message arrived (and no RESUME since).
    pub fn paused(&self) -> bool {
        self.shared.paused.load(Ordering::SeqCst)
    }

    /// True if the side thread's interrupt of the running task was a
    /// timeout, which the R code has now handled: the interruption is
    /// forgotten (no grace-period exit) and the task goes on.
    pub fn take_timeout(&self) -> bool {
        let mut cur = self.shared.current.lock();
        if matches!(cur.interrupted, Some((Reason::Timeout, _))) {
            cur.interrupted = None;
            cur.deadline = None;
            return true;
        }
        false
    }

    /// If the side thread interrupted the current task, why.
    pub fn interrupt_reason(&self) -> Option<Reason> {
        self.shared.current.lock().interrupted.map(|(r, _)| r)
    }

    /// The status a task ends in when its R code produced `outcome`: an
    /// interruption ends it TIMEOUT or CANCELLED, whichever the side thread
    /// decided.
    pub fn outcome_status(&self, outcome: Outcome) -> &'static str {
        match outcome {
            Outcome::Value => status::COMPLETE,
            Outcome::Error => status::ERROR,
            Outcome::Interrupted => self.interrupt_reason().map_or(status::CANCELLED, |r| r.status()),
        }
    }

    /// The R loop begins evaluating task `id` (one the last step started):
    /// its timeout runs from now. False if it was cancelled meanwhile; the
    /// loop then skips it and ends it as interrupted.
    pub fn begin(&mut self, id: &str) -> bool {
        let (timeout, job) = match self.batch.iter().position(|(t, _, _)| t == id) {
            Some(i) => self.batch.remove(i).map_or((None, String::new()), |(_, d, j)| (d, j)),
            None => (None, String::new()),
        };
        self.relay_to = Some((id.to_string(), job));
        self.began = Some((Instant::now(), crate::id::now_ms()));
        // under the lock the side thread holds while it reads `id`, so a
        // cancel lands either in `cancelled` (seen here) or on this task
        let mut cur = self.shared.current.lock();
        if self.shared.cancelled.lock().remove(id) {
            return false;
        }
        cur.interrupted = None;
        cur.id = Some(id.to_string());
        cur.deadline = timeout.and_then(|d| Instant::now().checked_add(d));
        cur.signals_at_begin = self.shared.signals.load(Ordering::SeqCst);
        true
    }

    /// The R loop finished the task it began: what its code produced and
    /// the serialized result (or the reference to its chunks), reported,
    /// sealed, with the next step.
    pub fn end(&mut self, id: &str, outcome: Outcome, result: Vec<u8>) {
        self.relay_to = None;
        let result = if result.is_empty() { result } else { self.conn.config().seal(Purpose::Result, id, &result) };
        let status = self.outcome_status(outcome);
        let (at, began_ms) = self.began.take().unwrap_or((Instant::now(), 0));
        let took = at.elapsed();
        self.shared.count_task(took);
        self.typical = Some(self.typical.map_or(took, |t| (t * 3 + took) / 4));
        self.clear_current();
        self.finished.push(Finished { id: id.to_string(), status, result, began_ms });
    }

    /// Whether a value of `len` bytes goes in chunks or to a file.
    pub fn is_big(&self, len: usize) -> bool {
        big::is_big(self.conn.config(), len)
    }

    /// Offload values over `threshold` bytes to `path` (None: do not).
    pub fn set_offload(&mut self, offload: Option<crate::config::Offload>) {
        self.conn.set_offload(offload);
    }

    /// A writer for task `id`'s result (see `big::Writer`): inline while
    /// it fits, else chunks that name this worker.
    pub fn result_writer(&mut self, id: &str) -> big::Writer<'_> {
        let owner = format!("{id}:{}", self.reg.id);
        big::Writer::new(&mut self.conn, &self.reg.keys, &owner, big::RESULT, usize::MAX)
    }

    /// `end()` for a result over the inline limit: its chunks are written
    /// now, straight from R's serialization (no copy of it is kept), and
    /// the step reports the reference. The chunks name this worker, so a
    /// duplicate result from another worker cannot overwrite them.
    pub fn end_big(&mut self, id: &str, outcome: Outcome, result: &[u8]) -> Result<()> {
        let owner = format!("{id}:{}", self.reg.id);
        let r = big::write(&mut self.conn, &self.reg.keys, &owner, big::RESULT, &[result])?;
        self.end(id, outcome, r.encode());
        Ok(())
    }

    /// No task is running (the side thread interrupts none).
    fn clear_current(&self) {
        *self.shared.current.lock() = Default::default();
    }

    /// Leave: stop the side thread, give back unstarted claims, unregister.
    /// `how` is recorded on the worker's record (`status::EXIT_*`).
    pub fn exit(&mut self, how: &str) -> Result<()> {
        if self.exited {
            return Ok(());
        }
        self.exited = true;
        self.clear_current();
        let control = self.reg.keys.worker_control(&self.reg.id);
        let _ = self.conn.run(|c| redis::cmd("RPUSH").arg(&control).arg(status::CONTROL_WAKE).query::<()>(c));
        self.heartbeat.stop();
        let wid = self.reg.id.clone();
        let keys = self.reg.keys.clone();
        let (done, ms, n) = self.shared.take_totals();
        self.conn.run(|c| {
            invocation(scripts::exit_worker(), &keys).arg(&wid).arg(how).arg(done).arg(ms).arg(n).invoke::<redis::Value>(c)
        })?;
        Ok(())
    }
}

impl Drop for Worker {
    /// Runs when R frees the worker, including at process exit. A process
    /// that ends in the middle of a task (the task called quit()) is
    /// treated like a crash: the lease runs out and the reaper requeues the
    /// task, rather than giving it at once to the next worker, which would
    /// quit too.
    fn drop(&mut self) {
        if self.shared.current.lock().id.is_some() {
            self.shared.shutdown.store(true, Ordering::SeqCst);
        } else {
            let _ = self.exit(status::EXIT_NORMAL);
        }
    }
}
