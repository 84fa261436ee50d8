//! The worker's side thread. With its own connection it
//!
//! * renews the lease `worker:<wid>:alive` every period, whatever the R
//!   thread is doing (a long computation, a C call that never returns);
//! * registers the worker again if the registration vanished (lease ran
//!   out, server restarted or was flushed);
//! * blocks on the control list between beats, so STOP, KILL and CANCEL
//!   act at once;
//! * enforces the current task's timeout: it interrupts the R thread with
//!   SIGINT and, if R does not respond within the grace period (stuck in C
//!   code), records the task's end itself and ends the process;
//! * runs the reaper every few beats, so recovery needs no controller.
//!
//! It never calls R.

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::monitor;
use crate::protocol;
use crate::registry::{self, register, Registration};
use crate::scripts::{self, invocation};
use crate::signature::{message_context, reply_context, Purpose};
use crate::status;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why the side thread interrupted the current task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// It ran past its timeout.
    Timeout,
    /// A controller cancelled it.
    Cancel,
}

impl Reason {
    /// The task status this interruption ends in.
    pub fn status(self) -> &'static str {
        match self {
            Reason::Timeout => status::TIMEOUT,
            Reason::Cancel => status::CANCELLED,
        }
    }
}

/// The task the R thread is evaluating, as the side thread sees it.
#[derive(Default, Debug)]
pub struct Current {
    /// Task id.
    pub id: Option<String>,
    /// When its timeout expires.
    pub deadline: Option<Instant>,
    /// Set once the side thread has sent SIGINT for this task.
    pub interrupted: Option<(Reason, Instant)>,
    /// `Shared::signals` when it began: the SIGINTs counted beyond it
    /// were sent for this task (they are sent with this lock held).
    pub signals_at_begin: u64,
}

/// State shared by the R thread and the side thread.
#[derive(Default, Debug)]
pub struct Shared {
    /// The running task.
    pub current: Mutex<Current>,
    /// A graceful STOP arrived: finish the current task, then exit.
    pub stop: AtomicBool,
    /// Tells the side thread to end.
    pub shutdown: AtomicBool,
    /// SIGINTs the side thread has sent, so the R loop can tell its own
    /// interrupts (which may land just after a task ended) from a user's.
    pub signals: AtomicU64,
    /// The R thread, the target of the side thread's SIGINTs.
    pub r_thread: Mutex<Option<libc::pthread_t>>,
    /// The last error the side thread met (time stamped), kept for
    /// `worker_info()` and written to the worker's record at the next beat.
    pub last_error: Mutex<Option<String>>,
    /// What failed (and was logged) since the last beat that got through.
    pub logged: Mutex<Vec<&'static str>>,
    /// Tasks cancelled before the R loop began them (they may arrive
    /// before the step that claimed them has returned): it skips them.
    pub cancelled: Mutex<std::collections::HashSet<String>>,
    /// The server's id for the R thread's connection (0: not known yet),
    /// so that the side thread can end its blocking wait for work.
    pub r_client: AtomicI64,
    /// Work arrived on the worker's own queue since the R thread last
    /// looked at its queues.
    pub woken: AtomicBool,
    /// Messages the R thread answers between tasks: (id, command, args).
    pub messages: Mutex<Vec<(String, String, Vec<u8>)>>,
    /// PAUSE arrived (and no RESUME since): take no task.
    pub paused: AtomicBool,
    /// Tasks this worker ran.
    pub done: AtomicU64,
    /// Milliseconds spent on tasks, and how many tasks, not yet added to
    /// the namespace's running totals: the beat adds them, off the task
    /// path.
    pub unreported_ms: AtomicU64,
    pub unreported_n: AtomicU64,
}

impl Shared {
    /// A task took `took`: counted now, reported with the next beat.
    pub fn count_task(&self, took: Duration) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.unreported_ms.fetch_add(took.as_millis() as u64, Ordering::Relaxed);
        self.unreported_n.fetch_add(1, Ordering::Relaxed);
    }

    /// (tasks done, unreported ms, unreported tasks), taking the latter two.
    pub fn take_totals(&self) -> (u64, u64, u64) {
        (self.done.load(Ordering::Relaxed), self.unreported_ms.swap(0, Ordering::Relaxed),
         self.unreported_n.swap(0, Ordering::Relaxed))
    }

    /// Totals taken for a write that did not get through: report them later.
    pub fn give_back(&self, ms: u64, n: u64) {
        self.unreported_ms.fetch_add(ms, Ordering::Relaxed);
        self.unreported_n.fetch_add(n, Ordering::Relaxed);
    }
}

/// Timing of the side thread.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Lease renewal period.
    pub period: Duration,
    /// Lease length; a worker silent for this long is lost.
    pub lease: Duration,
    /// How long R gets to honour an interrupt before the process ends.
    pub grace: Duration,
    /// Run the reaper every this many beats.
    pub reap_every: u32,
    /// The process that started this worker and that it must not outlive
    /// (a session's own workers): once it is no longer the parent, the
    /// worker leaves as if killed, within a beat.
    pub parent: Option<u32>,
}

/// Handle on the running side thread.
pub struct Heartbeat {
    handle: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Heartbeat {
    /// Start the thread. `conn` must be a connection of its own. A worker
    /// whose side thread cannot start must not serve: nobody would renew
    /// its lease, and it would be declared lost in the middle of a task.
    pub fn spawn(conn: Connection, reg: Registration, timing: Timing, shared: Arc<Shared>) -> Result<Heartbeat> {
        let s = shared.clone();
        let handle = std::thread::Builder::new()
            .name("redq-heartbeat".into())
            .spawn(move || run(conn, reg, timing, s))
            .map_err(|e| Error::Worker(format!("cannot start the worker's heartbeat thread: {e}")))?;
        Ok(Heartbeat { handle: Some(handle), shared })
    }

    /// Stop the thread and wait for it (it wakes within one slice, or at
    /// once when a WAKE message is pushed on the control list).
    pub fn stop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Interrupt the R thread: R's SIGINT handler only sets a flag that R acts
/// on at its next check, and a tryCatch(interrupt = ) in the worker loop
/// turns it into the task's end. Thread-directed, so it cannot land on this
/// thread instead.
fn interrupt_r_thread(shared: &Shared) {
    shared.signals.fetch_add(1, Ordering::SeqCst);
    unsafe {
        match *shared.r_thread.lock() {
            Some(t) => libc::pthread_kill(t, libc::SIGINT),
            None => libc::kill(libc::getpid(), libc::SIGINT),
        };
    }
}

fn end_process(conn: &mut Connection, keys: &Keys, wid: &str, how: &str) -> ! {
    let _ = conn.run(|c| invocation(scripts::exit_worker(), keys).arg(wid).arg(how).invoke::<redis::Value>(c));
    unsafe { libc::_exit(if how == status::EXIT_KILLED { 0 } else { 1 }) }
}

/// Keep an error of the side thread: on the worker's stderr (its log),
/// once per kind of failure until a beat gets through again (a server down
/// for an hour is logged once, not every beat), and on its record at the
/// next beat that reaches the server.
fn note_error(shared: &Shared, wid: &str, what: &'static str, e: &Error) {
    let text = format!("{what}: {e}");
    let mut logged = shared.logged.lock();
    if !logged.contains(&what) {
        logged.push(what);
        eprintln!("redq worker {wid}: heartbeat thread: {text}");
    }
    *shared.last_error.lock() = Some(format!("{} {text}", crate::id::now_ms()));
}

fn run(mut conn: Connection, reg: Registration, t: Timing, shared: Arc<Shared>) {
    crate::connection::block_signals_in_this_thread();
    let keys = reg.keys.clone();
    let control = keys.worker_control(&reg.id);
    let lease_ms = t.lease.as_millis() as u64;
    let mut next_beat = Instant::now() + t.period;
    let mut beats: u32 = 0;
    // when the lease could first not be renewed, and why: logged as one
    // event once the server answers again
    let mut down_since: Option<(u64, String)> = None;
    while !shared.shutdown.load(Ordering::SeqCst) {
        let now = Instant::now();
        let mut until = next_beat;
        {
            let cur = shared.current.lock();
            match (cur.deadline, cur.interrupted) {
                (Some(d), None) => until = until.min(d),
                (_, Some((_, at))) => until = until.min(at + t.grace),
                _ => {}
            }
        }
        // Redis blocking timeouts have ~100 ms resolution; never block 0 (= for ever)
        let wait = until.saturating_duration_since(now).max(Duration::from_millis(20));
        let msg: Option<(String, String)> = conn
            .run_blocking(wait, |c| redis::cmd("BLPOP").arg(&control).arg(wait.as_secs_f64()).query(c))
            .unwrap_or_else(|e| {
                note_error(&shared, &reg.id, "reading control messages", &e);
                std::thread::sleep(wait.min(Duration::from_millis(200)));
                None
            });
        if let Some((_, m)) = msg {
            handle_control(&mut conn, &keys, &reg.id, &m, &shared);
        }
        let now = Instant::now();
        if now >= next_beat {
            next_beat = now + t.period;
            if t.parent.is_some_and(|p| p != std::os::unix::process::parent_id()) {
                eprintln!("redq worker {}: the session that started it has ended; leaving", reg.id);
                end_process(&mut conn, &keys, &reg.id, status::EXIT_KILLED);
            }
            beats = beats.wrapping_add(1);
            let pending = shared.last_error.lock().take().unwrap_or_default();
            let (done, ms, n) = shared.take_totals();
            let alive: Result<i64> = conn.run(|c| {
                invocation(scripts::beat(), &keys).arg(&reg.id).arg(lease_ms).arg(&pending).arg(done).arg(ms).arg(n).invoke(c)
            });
            if !matches!(alive, Ok(1)) {
                shared.give_back(ms, n);
            }
            if !matches!(alive, Ok(1)) && !pending.is_empty() {
                // not recorded: keep it for the next beat that gets through
                shared.last_error.lock().get_or_insert(pending);
            }
            if alive.is_ok() {
                shared.logged.lock().clear();
            }
            match alive {
                Ok(0) => {
                    if let Err(e) = register(&mut conn, &reg, t.lease) {
                        note_error(&shared, &reg.id, "registering again", &e);
                    } else {
                        let _ = registry::event(&mut conn, &keys, &reg.id, "registered again: the server had lost its record");
                    }
                }
                Ok(_) => {}
                Err(ref e) => {
                    if down_since.is_none() {
                        down_since = Some((crate::id::now_ms(), e.to_string()));
                    }
                    note_error(&shared, &reg.id, "renewing the lease", e);
                }
            }
            if let (Ok(_), Some((since, why))) = (&alive, &down_since) {
                let text = format!("reconnected; the connection was lost at {since} ms: {why}");
                if registry::event(&mut conn, &keys, &reg.id, &text).is_ok() {
                    down_since = None;
                }
            }
            if t.reap_every > 0 && beats % t.reap_every == 0 {
                if let Err(e) = monitor::reap(&mut conn, &keys, t.period * t.reap_every) {
                    note_error(&shared, &reg.id, "looking for lost workers", &e);
                }
            }
        }
        enforce_deadline(&mut conn, &keys, &reg.id, &shared, t.grace);
    }
}

fn handle_control(conn: &mut Connection, keys: &Keys, wid: &str, msg: &str, shared: &Shared) {
    match msg.split_once(' ').map_or((msg, ""), |(a, b)| (a, b)) {
        (status::CONTROL_STOP, _) => {
            // an idle worker leaves now, not when its wait for work ends
            shared.stop.store(true, Ordering::SeqCst);
            wake_r_thread(conn, shared);
        }
        (status::CONTROL_KILL, _) => end_process(conn, keys, wid, status::EXIT_KILLED),
        (status::CONTROL_CANCEL, id) => {
            let mut cur = shared.current.lock();
            if cur.id.as_deref() == Some(id) {
                if cur.interrupted.is_none() {
                    cur.interrupted = Some((Reason::Cancel, Instant::now()));
                    interrupt_r_thread(shared);
                }
            } else {
                // not begun yet (later in the current batch): skip it
                shared.cancelled.lock().insert(id.to_string());
            }
        }
        (status::CONTROL_WAKE, _) => wake_r_thread(conn, shared),
        (status::CONTROL_MESSAGE, mid) => handle_message(conn, keys, wid, mid, shared),
        _ => {} // a message from a newer version: ignore
    }
}

/// A reply to message `mid`: `s` and a string, `e` and why the message
/// was refused, or `r` and an R serialization (from the R thread), sealed for the message and this
/// worker (see `message_context`).
pub fn respond(conn: &mut Connection, keys: &Keys, wid: &str, mid: &str, reply: &[u8]) -> Result<()> {
    let k = keys.response(mid);
    let reply = conn.config().seal(Purpose::Reply, &reply_context(mid, wid), reply);
    let reply = &reply[..];
    conn.run(|c| {
        redis::pipe()
            .hset(&k, wid, reply)
            .ignore()
            .expire(&k, protocol::CONTROL_TTL_S as i64)
            .ignore()
            .query::<()>(c)
    })
}

fn reply_str(s: &str) -> Vec<u8> {
    let mut v = b"s".to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

/// A message: PING, ECHO, PAUSE and RESUME are answered here at once,
/// even while a task runs; the others (EVAL, REFRESH, INFO, TIMEOUT_SET,
/// TIMEOUT_GET, ...) wait for the R thread, woken if it waits for work.
///
/// With a secret, a message whose seal does not verify (sent by someone
/// without the secret, or altered) is not acted on: its reply says why.
fn handle_message(conn: &mut Connection, keys: &Keys, wid: &str, mid: &str, shared: &Shared) {
    let got: Result<(Option<String>, Option<Vec<u8>>)> =
        conn.run(|c| redis::cmd("HMGET").arg(keys.message(mid)).arg("command").arg("args").query(c));
    let Ok((Some(command), args)) = got else { return };
    let args = match conn.config().open(Purpose::Message, &message_context(mid, &command), args.unwrap_or_default()) {
        Ok(a) => a,
        Err(e) => {
            note_error(shared, wid, "checking a message", &e);
            let mut refused = b"e".to_vec();
            refused.extend_from_slice(e.to_string().as_bytes());
            let _ = respond(conn, keys, wid, mid, &refused);
            return;
        }
    };
    let reply = match command.as_str() {
        "PING" => Some(reply_str("PONG")),
        "ECHO" => Some(reply_str(&String::from_utf8_lossy(&args))),
        "PAUSE" => {
            // end a wait for work, so that the R thread looks again (and
            // takes nothing) before the sender hears back
            shared.paused.store(true, Ordering::SeqCst);
            wake_r_thread(conn, shared);
            Some(reply_str("OK"))
        }
        "RESUME" => {
            shared.paused.store(false, Ordering::SeqCst);
            wake_r_thread(conn, shared);
            Some(reply_str("OK"))
        }
        _ => None,
    };
    match reply {
        Some(r) => {
            if let Err(e) = respond(conn, keys, wid, mid, &r) {
                note_error(shared, wid, "answering a message", &e);
            }
        }
        None => {
            shared.messages.lock().push((mid.to_string(), command, args));
            wake_r_thread(conn, shared);
        }
    }
}

/// Work arrived on the worker's own queue while the R thread may be
/// blocked waiting on its first shared queue: end that wait
/// (`CLIENT UNBLOCK`), so it looks at all its queues again. The R thread
/// clears `woken` whenever it does; until then it may be just about to
/// block, so try again for a few milliseconds. A busy R thread looks at
/// its own queue first with its next step anyway.
fn wake_r_thread(conn: &mut Connection, shared: &Shared) {
    shared.woken.store(true, Ordering::SeqCst);
    for _ in 0..20 {
        let client = shared.r_client.load(Ordering::SeqCst);
        if client == 0
            || !shared.woken.load(Ordering::SeqCst)
            || shared.shutdown.load(Ordering::SeqCst)
            || shared.current.lock().id.is_some()
        {
            return;
        }
        let unblocked: i64 =
            conn.run(|c| redis::cmd("CLIENT").arg("UNBLOCK").arg(client).query(c)).unwrap_or(0);
        if unblocked == 1 {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn enforce_deadline(conn: &mut Connection, keys: &Keys, wid: &str, shared: &Shared, grace: Duration) {
    let mut cur = shared.current.lock();
    let now = Instant::now();
    match (cur.id.clone(), cur.deadline, cur.interrupted) {
        (Some(_), Some(d), None) if now >= d => {
            cur.interrupted = Some((Reason::Timeout, now));
            interrupt_r_thread(shared);
        }
        (Some(id), _, Some((reason, at))) if now >= at + grace => {
            // R ignored the interrupt (stuck in compiled code): record the
            // task's end here, then leave; the process cannot be trusted
            // to serve again.
            let _ = conn.run(|c| {
                invocation(scripts::complete(), keys)
                    .arg(wid)
                    .arg(&id)
                    .arg(reason.status())
                    .arg(&b""[..])
                    .invoke::<redis::Value>(c)
            });
            end_process(conn, keys, wid, status::EXIT_STUCK);
        }
        _ => {}
    }
}
