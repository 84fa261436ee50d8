//! The claim/complete step: report what ended and claim the next batch in
//! one round trip, blocking for work when none is queued.

use crate::error::{Error, Result};
use crate::protocol;
use crate::big;
use crate::rng::Stream;
use crate::scripts::{self, invocation};
use crate::signature::Purpose;
use crate::status;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use super::{Task, Worker, BATCH_BUDGET};

impl Worker {
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
                    let mut step = scripts::command("EVALSHA", scripts::step().get_hash(), &self.reg.keys, crate::id::now_ms());
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
}
