//! The worker's R-thread side: registration, the claim/complete step, and
//! leaving. The side thread lives in `heartbeat.rs`.

use crate::config::{validate_name, Config};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::heartbeat::{Heartbeat, Reason, Shared, Timing};
use crate::keys::Keys;
use crate::protocol;
use crate::registry::{register, Registration};
use crate::rng::Stream;
use crate::scripts::{self, invocation};
use crate::signature;
use crate::status::{self, Outcome};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    queues: Vec<String>,
    max_batch: usize,
    claimed: VecDeque<String>,
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
            reg,
            queues: opts.queues,
            max_batch: opts.max_batch,
            claimed: VecDeque::new(),
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

    /// How many SIGINTs the side thread has sent.
    pub fn signals_sent(&self) -> u64 {
        self.shared.signals.load(Ordering::SeqCst)
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

    /// Record the previous task's end (if any: id, what its R code
    /// produced, serialized result) and, if `claim`, start the next task,
    /// blocking up to `wait` for one to arrive. One round trip when work is
    /// queued. Returns whether the result was accepted (first result wins)
    /// and the next task.
    pub fn step(&mut self, done: Option<(&str, Outcome, &[u8])>, claim: bool, wait: Duration) -> Result<(bool, Option<Task>)> {
        let status = done.map(|(_, o, _)| self.outcome_status(o));
        let done = done.zip(status).map(|((id, _, r), s)| (id, s, r));
        self.step_status(done, claim, wait)
    }

    fn step_status(&mut self, done: Option<(&str, &str, &[u8])>, claim: bool, wait: Duration) -> Result<(bool, Option<Task>)> {
        self.set_current(None);
        let patience = Duration::from_secs(3600);
        let deadline = Instant::now() + patience;
        let mut accepted = false;
        let mut done = done;
        loop {
            let next = if claim { self.claimed.pop_front() } else { None };
            match self.step_once(done, next.as_deref(), claim) {
                Ok((acc, task)) => {
                    accepted |= acc;
                    if let Some(t) = task {
                        self.set_current(Some(&t));
                        return Ok((accepted, Some(t)));
                    }
                    if !claim || self.stop_requested() || wait.is_zero() {
                        return Ok((accepted, None));
                    }
                    done = None;
                    // nothing queued: block on the first queue; the moved id
                    // is this worker's from now on (it sits in its running list)
                    let moved: Option<String> = match self.conn.run_blocking(wait, |c| {
                        redis::cmd("BLMOVE")
                            .arg(self.reg.keys.queue(&self.queues[0]))
                            .arg(self.reg.keys.worker_running(&self.reg.id))
                            .arg("RIGHT")
                            .arg("LEFT")
                            .arg(wait.as_secs_f64())
                            .query(c)
                    }) {
                        Ok(m) => m,
                        Err(e) if e.is_connection() => {
                            // BLMOVE may have moved an id into our running list
                            // before the connection broke: give it back
                            self.backoff(e, deadline)?;
                            self.release_claims()?;
                            return Ok((accepted, None));
                        }
                        Err(e) => return Err(e),
                    };
                    match moved {
                        Some(id) => self.claimed.push_front(id),
                        None => return Ok((accepted, None)),
                    }
                }
                Err(e) if e.is_connection() => {
                    // The step may or may not have run. Whatever it did is
                    // recorded in Redis (results are first-writer-wins, claims sit
                    // in our running list); give claims back once we can reach
                    // the server again, and carry on.
                    if let Some(n) = next {
                        self.claimed.push_front(n);
                    }
                    self.backoff(e, deadline)?;
                    self.release_claims()?;
                    done = None;
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

    fn release_claims(&mut self) -> Result<()> {
        self.claimed.clear();
        let (wid, keys) = (self.reg.id.clone(), self.reg.keys.clone());
        self.conn
            .run(|c| invocation(scripts::release(), &keys).arg(&wid).arg(status::EXIT_RECONNECTED).invoke::<redis::Value>(c))?;
        Ok(())
    }

    fn step_once(&mut self, done: Option<(&str, &str, &[u8])>, next: Option<&str>, claim: bool) -> Result<(bool, Option<Task>)> {
        let mut inv = invocation(scripts::step(), &self.reg.keys);
        inv.arg(&self.reg.id);
        match done {
            Some((id, st, res)) => inv.arg(id).arg(st).arg(res),
            None => inv.arg("").arg("").arg(""),
        };
        inv.arg(next.unwrap_or("")).arg(self.max_batch);
        if claim {
            for q in &self.queues {
                inv.arg(q);
            }
        }
        let reply: Vec<redis::Value> = self.conn.run(|c| inv.invoke(c))?;
        let accepted = matches!(reply.first(), Some(redis::Value::Int(1)));
        if reply.len() < 5 {
            return Ok((accepted, None));
        }
        let s = |v: &redis::Value| -> String { redis::from_redis_value_ref(v).unwrap_or_default() };
        let raw: Vec<u8> = redis::from_redis_value_ref(&reply[2]).unwrap_or_default();
        let task = self.task_from(s(&reply[1]), raw, &s(&reply[3]), &s(&reply[4]));
        for v in reply[5..].iter().rev() {
            self.claimed.push_front(s(v));
        }
        Ok((accepted, Some(task)))
    }

    /// A claimed task as the R loop receives it. Whatever is wrong with its
    /// record (a signature that does not verify, a timeout or seed this
    /// worker cannot use) refuses the task, which then ends ERROR, rather
    /// than ending the worker.
    fn task_from(&self, id: String, raw: Vec<u8>, timeout: &str, seed: &str) -> Task {
        let mut task = Task { id, payload: Vec::new(), timeout: None, seed: None, refused: None };
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
        match signature::open(self.conn.config().secret.as_deref(), raw) {
            Ok(p) => task.payload = p,
            Err(e) => return refuse(task, e.to_string()),
        }
        task
    }

    fn set_current(&self, task: Option<&Task>) {
        let mut cur = self.shared.current.lock();
        cur.interrupted = None;
        cur.id = task.map(|t| t.id.clone());
        cur.deadline = task.and_then(|t| t.timeout).and_then(|d| Instant::now().checked_add(d));
    }

    /// Fetch a foreach job's environment (checked like task payloads).
    pub fn job_env(&mut self, job: &str) -> Result<Option<Vec<u8>>> {
        let key = self.reg.keys.job_env(job);
        let env: Option<Vec<u8>> = self.conn.retry(Duration::from_secs(60), |c| redis::cmd("GET").arg(&key).query(c))?;
        let secret = self.conn.config().secret.clone();
        env.map(|e| signature::open(secret.as_deref(), e)).transpose()
    }

    /// Leave: stop the side thread, give back unstarted claims, unregister.
    /// `how` is recorded on the worker's record (`status::EXIT_*`).
    pub fn exit(&mut self, how: &str) -> Result<()> {
        if self.exited {
            return Ok(());
        }
        self.exited = true;
        self.set_current(None);
        let control = self.reg.keys.worker_control(&self.reg.id);
        let _ = self.conn.run(|c| redis::cmd("RPUSH").arg(&control).arg(status::CONTROL_WAKE).query::<()>(c));
        self.heartbeat.stop();
        let wid = self.reg.id.clone();
        let keys = self.reg.keys.clone();
        self.conn.run(|c| invocation(scripts::exit_worker(), &keys).arg(&wid).arg(how).invoke::<redis::Value>(c))?;
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
