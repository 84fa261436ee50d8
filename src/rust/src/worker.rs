//! The worker's R-thread side: registration, the claim/complete step, and
//! leaving. The side thread lives in `heartbeat.rs`.

use crate::config::{validate_name, Config};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::heartbeat::{Heartbeat, Reason, Shared, Timing};
use crate::keys::Keys;
use crate::protocol;
use crate::big;
use crate::registry::{self, register, Registration};
use crate::rng::Stream;
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
        let id = opts.name.clone().unwrap_or_else(crate::task::new_id);
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

    /// Messages waiting for the R thread: (id, command, args).
    pub fn take_messages(&self) -> Vec<(String, String, Vec<u8>)> {
        std::mem::take(&mut *self.shared.messages.lock())
    }

    /// Reply to message `mid` (an R serialization).
    pub fn respond(&mut self, mid: &str, reply: &[u8]) -> Result<()> {
        // sealed by heartbeat::respond, as the side thread's replies
        let mut v = b"r".to_vec();
        v.extend_from_slice(reply);
        crate::heartbeat::respond(&mut self.conn, &self.reg.keys, &self.reg.id, mid, &v)
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
        self.began = Some((Instant::now(), scripts::now_ms()));
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

    /// Record the running task's progress (a serialized R value) in its
    /// record, where any session reads it (`task_progress()`). False when
    /// no task is running.
    pub fn progress(&mut self, value: &[u8]) -> Result<bool> {
        let Some((id, _)) = self.relay_to.clone() else { return Ok(false) };
        let sealed = self.conn.config().seal(Purpose::Progress, &id, value);
        self.record("progress", &sealed)
    }

    /// Record what the running task printed (stdout, messages, warnings),
    /// at most `TASK_LOG_LIMIT` bytes (the end is kept), for `task_log()`.
    pub fn log(&mut self, text: &[u8]) -> Result<bool> {
        let text = if text.len() > protocol::TASK_LOG_LIMIT { &text[text.len() - protocol::TASK_LOG_LIMIT..] } else { text };
        self.record("log", text)
    }

    /// Add an event to this worker's log (`worker_log_tail()`).
    pub fn event(&mut self, text: &str) -> Result<()> {
        registry::event(&mut self.conn, &self.reg.keys, &self.reg.id, text)
    }

    fn record(&mut self, field: &'static str, value: &[u8]) -> Result<bool> {
        let Some((id, _)) = self.relay_to.clone() else { return Ok(false) };
        let k = self.reg.keys.task(&id);
        self.conn.run(|c| redis::cmd("HSET").arg(&k).arg(field).arg(value).query::<()>(c))?;
        Ok(true)
    }

    /// Send a message from the running task to whoever waits for it (a
    /// serialized condition: progress, a message): it goes to the task's
    /// job's completion list as "<id> @<bytes>", where the waiting engine
    /// hands it to the front end at once. Nothing happens for a task that
    /// reports to no job.
    pub fn relay(&mut self, message: &[u8]) -> Result<()> {
        let Some((id, job)) = self.relay_to.clone() else { return Ok(()) };
        if job.is_empty() {
            return Ok(());
        }
        let message = self.conn.config().seal(Purpose::Relay, &id, message);
        let mut item = Vec::with_capacity(id.len() + 2 + message.len());
        item.extend_from_slice(id.as_bytes());
        item.extend_from_slice(b" @");
        item.extend_from_slice(&message);
        let list = self.reg.keys.job_done(&job);
        self.conn.run(|c| {
            let n: i64 = redis::cmd("RPUSH").arg(&list).arg(&item).query(c)?;
            if n == 1 {
                redis::cmd("PEXPIRE").arg(&list).arg(protocol::NOTIFY_TTL_MS).query::<()>(c)?;
            }
            Ok(())
        })
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

    /// How many tasks to start at once: a few milliseconds of work at the
    /// recent tasks' pace, at most `max_batch`; one until there is a pace.
    fn batch_size(&self) -> usize {
        match self.typical {
            Some(t) if !t.is_zero() => ((BATCH_BUDGET.as_nanos() / t.as_nanos().max(1)) as usize).clamp(1, self.max_batch),
            Some(_) => self.max_batch,
            None => 1,
        }
    }

    /// Report the finished tasks and start up to `limit` more (0: start
    /// none), blocking up to `wait` for work when none is queued. One round
    /// trip when work is queued, however many tasks it reports and starts.
    /// Returns whether each report was accepted (first result wins) and
    /// the tasks started, for the R loop to `begin` and `end` in order.
    pub fn step(&mut self, limit: usize, wait: Duration) -> Result<(Vec<bool>, Vec<Task>)> {
        self.clear_current();
        // a paused worker (PAUSE message) reports what it finished and
        // takes nothing
        let want = if self.paused() { 0 } else { limit.min(self.batch_size()) };
        let patience = Duration::from_secs(3600);
        let deadline = Instant::now() + patience;
        let mut accepted = Vec::new();
        let mut moved: Option<String> = None;
        let mut looked = std::mem::take(&mut self.looked) && self.finished.is_empty();
        loop {
            let stepped = if std::mem::take(&mut looked) { Ok((vec![], vec![])) } else { self.step_once(moved.as_deref(), want) };
            match stepped {
                Ok((acc, tasks)) => {
                    accepted.extend(acc);
                    self.finished.clear();
                    if !tasks.is_empty() {
                        return Ok((accepted, self.started(tasks)));
                    }
                    if want == 0 || self.stop_requested() || self.paused() || wait.is_zero() {
                        return Ok((accepted, vec![]));
                    }
                    // nothing queued: block on the first shared queue (work
                    // on the worker's own queue ends the wait: see
                    // heartbeat::wake_r_thread); the moved id is this
                    // worker's from now on (it sits in its running list)
                    let client = self.conn.client_id()?;
                    self.shared.r_client.store(client, Ordering::SeqCst);
                    if self.shared.woken.swap(false, Ordering::SeqCst) {
                        moved = None;
                        continue;
                    }
                    // the step that starts what the move takes goes right
                    // behind it, so that waking up costs no round trip
                    let mut p = redis::pipe();
                    p.cmd("BLMOVE")
                        .arg(self.reg.keys.queue(&self.queues[1]))
                        .arg(self.reg.keys.worker_running(&self.reg.id))
                        .arg("RIGHT")
                        .arg("LEFT")
                        .arg(wait.as_secs_f64());
                    let mut step = scripts::command("EVALSHA", scripts::step().get_hash(), &self.reg.keys, scripts::now_ms());
                    step.arg(&self.reg.id).arg(0).arg(status::MOVED_HEAD).arg(want);
                    for q in &self.queues {
                        step.arg(q);
                    }
                    p.add_command(step);
                    let sent = self.conn.run_blocking(wait, |c| match p.query::<(Option<String>, Vec<redis::Value>)>(c) {
                        // the server lacked the script (it restarted, or is a
                        // replica just promoted), whether or not the move was
                        // refused too: the step is sent again on its own,
                        // which loads it (and is refused in turn if the
                        // server still refuses writes)
                        Err(e) if crate::connection::lacks_script(&e) => Ok(None),
                        other => other.map(Some),
                    });
                    match sent {
                        Ok(None) => moved = Some(status::MOVED_HEAD.to_string()),
                        Ok(Some((took, reply))) => {
                            let (_, tasks) = self.parse_step(reply);
                            if !tasks.is_empty() {
                                return Ok((accepted, self.started(tasks)));
                            }
                            if took.is_none() {
                                self.idle();
                                self.looked = true;
                                return Ok((accepted, vec![]));
                            }
                            // it took a task that ended meanwhile: look again
                            moved = None;
                        }
                        Err(e) if e.is_connection() => {
                            // BLMOVE may have moved an id into our running list
                            // before the connection broke: give it back
                            self.backoff(e, deadline)?;
                            self.release_claims()?;
                            return Ok((accepted, vec![]));
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) if e.is_connection() => {
                    // The step may or may not have run. Whatever it did is
                    // recorded in Redis (results are first-writer-wins, claims
                    // sit in our running list): once the server answers again,
                    // give the claims back and report the finished tasks again.
                    self.backoff(e, deadline)?;
                    self.release_claims()?;
                    moved = None;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn backoff(&mut self, e: Error, deadline: Instant) -> Result<()> {
        if Instant::now() >= deadline {
            return Err(e);
        }
        self.conn.retry(deadline.saturating_duration_since(Instant::now()), |c| redis::cmd("PING").query::<String>(c))?;
        Ok(())
    }

    /// A wait for work passed with none: once per idle spell, hand the
    /// memory freed by the last tasks back to the system, so that an idle
    /// worker's footprint does not stay at its busiest.
    fn idle(&mut self) {
        if self.typical.take().is_some() {
            self.finished.shrink_to_fit();
            #[cfg(target_os = "linux")]
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }

    fn release_claims(&mut self) -> Result<()> {
        self.batch.clear();
        let (wid, keys) = (self.reg.id.clone(), self.reg.keys.clone());
        self.conn
            .run(|c| invocation(scripts::release(), &keys).arg(&wid).arg(status::EXIT_RECONNECTED).invoke::<redis::Value>(c))?;
        Ok(())
    }

    fn step_once(&mut self, moved: Option<&str>, want: usize) -> Result<(Vec<bool>, Vec<Task>)> {
        let mut inv = invocation(scripts::step(), &self.reg.keys);
        inv.arg(&self.reg.id).arg(self.finished.len());
        for f in &self.finished {
            inv.arg(&f.id).arg(f.status).arg(&f.result[..]).arg(if f.began_ms > 0 { f.began_ms.to_string() } else { String::new() });
        }
        inv.arg(moved.unwrap_or("")).arg(if moved.is_some() { want.max(1) } else { want });
        if want > 0 || moved.is_some() {
            for q in &self.queues {
                inv.arg(q);
            }
        }
        let reply: Vec<redis::Value> = self.conn.run(|c| inv.invoke(c))?;
        Ok(self.parse_step(reply))
    }

    /// A new batch: what the R loop will begin and end in order.
    fn started(&mut self, tasks: Vec<Task>) -> Vec<Task> {
        // a cancel may have come before the step's reply: keep those of
        // this batch, forget the rest
        self.shared.cancelled.lock().retain(|id| tasks.iter().any(|t| &t.id == id));
        self.batch = tasks.iter().map(|t| (t.id.clone(), t.timeout, t.job.clone())).collect();
        tasks
    }

    /// The step script's reply: whether each finished task's report was
    /// accepted, and the tasks started.
    fn parse_step(&mut self, reply: Vec<redis::Value>) -> (Vec<bool>, Vec<Task>) {
        let s = |v: &redis::Value| -> String { redis::from_redis_value_ref(v).unwrap_or_default() };
        let n: usize = reply.first().and_then(|v| redis::from_redis_value_ref(v).ok()).unwrap_or(0);
        let accepted = reply.iter().skip(1).take(n).map(|v| matches!(v, redis::Value::Int(1))).collect();
        let mut tasks = Vec::new();
        for c in reply[(1 + n).min(reply.len())..].chunks(5).filter(|c| c.len() == 5) {
            let raw: Vec<u8> = redis::from_redis_value_ref(&c[1]).unwrap_or_default();
            let mut t = self.task_from(s(&c[0]), raw, &s(&c[2]), &s(&c[3]));
            t.job = s(&c[4]);
            tasks.push(t);
        }
        (accepted, tasks)
    }

    /// A claimed task as the R loop receives it. Whatever is wrong with its
    /// record (a signature that does not verify, a timeout or seed this
    /// worker cannot use) refuses the task, which then ends ERROR, rather
    /// than ending the worker.
    fn task_from(&mut self, id: String, raw: Vec<u8>, timeout: &str, seed: &str) -> Task {
        let mut task = Task { id, payload: Vec::new(), timeout: None, seed: None, refused: None, job: String::new() };
        let refuse = |mut t: Task, why: String| {
            t.refused = Some(why);
            t
        };
        if !timeout.is_empty() {
            let checked = timeout
                .parse::<f64>()
                .map_err(|_| Error::Argument(format!("the task's timeout '{timeout}' is not a number")))
                .and_then(|x| protocol::seconds("timeout", x, true, false));
            match checked {
                Ok(d) => task.timeout = d,
                Err(e) => return refuse(task, format!("refused to run the task: {e}")),
            }
        }
        if !seed.is_empty() {
            match Stream::decode(seed) {
                Some(s) => task.seed = Some(s.to_r()),
                None => return refuse(task, format!("refused to run the task: its seed '{seed}' is not a random number stream")),
            }
        }
        // a payload over the inline limit is stored in chunks
        let raw = match big::resolve(&mut self.conn, &self.reg.keys, raw) {
            Ok(raw) => raw,
            Err(e) => return refuse(task, format!("could not read the task's payload: {e}")),
        };
        let opened = match self.conn.config().open(Purpose::Payload, &task.id, raw) {
            Ok(p) => p,
            Err(e) => return refuse(task, e.to_string()),
        };
        // a payload streamed to its chunks is sealed as its reference: the
        // seal vouches for the reference, the reference's hash for the chunks
        match big::resolve(&mut self.conn, &self.reg.keys, opened) {
            Ok(p) => task.payload = p,
            Err(e) => return refuse(task, format!("could not read the task's payload: {e}")),
        }
        task
    }

    /// No task is running (the side thread interrupts none).
    fn clear_current(&self) {
        *self.shared.current.lock() = Default::default();
    }

    /// Fetch a job's environment (checked like task payloads): the value,
    /// or the address of the shared object it is stored as (which the
    /// worker fetches with `object`, once for every job that shares it).
    pub fn job_env(&mut self, job: &str) -> Result<Option<JobEnv>> {
        let key = self.reg.keys.job_env(job);
        let env: Option<Vec<u8>> = self.conn.retry(Duration::from_secs(60), |c| redis::cmd("GET").arg(&key).query(c))?;
        let env = match env {
            Some(e) => big::resolve(&mut self.conn, &self.reg.keys, e)?,
            None => return Ok(None),
        };
        let env = self.conn.config().open(Purpose::Env, job, env)?;
        Ok(Some(match big::parse_object_ref(&env) {
            Some(sha) => JobEnv::Object(sha.to_string()),
            None => JobEnv::Value(env),
        }))
    }

    /// A shared object (a bulk submission's common arguments), checked.
    pub fn object(&mut self, sha: &str) -> Result<Vec<u8>> {
        big::read_shared(&mut self.conn, &self.reg.keys, sha)
    }

    /// A value of the namespace (`value_get()`), read on the worker's own
    /// connection.
    pub fn data_get(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        let key = self.reg.keys.data(name);
        let v: Option<Vec<u8>> = self.conn.run(|c| redis::cmd("GET").arg(&key).query(c))?;
        v.map(|v| self.conn.config().open(Purpose::Value, &key, v)).transpose()
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

/// A job's environment as a worker fetches it.
pub enum JobEnv {
    /// The serialized environment.
    Value(Vec<u8>),
    /// The address of the shared object that holds it.
    Object(String),
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
