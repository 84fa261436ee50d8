//! Status words of tasks and workers, and how workers end: the only place
//! they are spelled. The Lua preamble gets them generated from here
//! (`scripts`); R receives them as data.

/// Waiting for the tasks it depends on.
pub const DEFERRED: &str = "DEFERRED";
/// Queued, waiting for a worker.
pub const PENDING: &str = "PENDING";
/// Claimed and being evaluated by a worker.
pub const RUNNING: &str = "RUNNING";
/// Finished with a value.
pub const COMPLETE: &str = "COMPLETE";
/// The R code signalled an error; the condition is the result.
pub const ERROR: &str = "ERROR";
/// Cancelled by a controller.
pub const CANCELLED: &str = "CANCELLED";
/// Ran longer than its timeout.
pub const TIMEOUT: &str = "TIMEOUT";
/// Its worker was lost `max_attempts` times.
pub const DIED: &str = "DIED";
/// A task it depends on ended without completing.
pub const IMPOSSIBLE: &str = "IMPOSSIBLE";
/// The server does not know the id (never created, deleted, or data lost).
pub const MISSING: &str = "MISSING";

/// Statuses after which nothing changes a task (but `task_retry()`).
pub const TERMINAL: [&str; 6] = [COMPLETE, ERROR, CANCELLED, TIMEOUT, DIED, IMPOSSIBLE];

/// Statuses a task can be run again from (`task_retry()`).
pub const RETRYABLE: [&str; 5] = [ERROR, TIMEOUT, CANCELLED, DIED, IMPOSSIBLE];

/// A task's state in a table view (rush's four): waiting to run
/// ("queued"), running, completed ("finished"), or ended any other way
/// ("failed").
pub fn phase(status: &str) -> &'static str {
    match status {
        PENDING | DEFERRED => "queued",
        RUNNING => "running",
        COMPLETE => "finished",
        _ => "failed",
    }
}

/// A worker's state in a table view (rush's four): running (alive),
/// killed (stopped with KILL), lost (its lease ran out), or terminated
/// (left any other way).
pub fn worker_phase(status: &str, how: &str, alive: bool) -> &'static str {
    match status {
        WORKER_LOST => "lost",
        WORKER_EXITED if how == EXIT_KILLED => "killed",
        WORKER_EXITED | MISSING => "terminated",
        _ if alive => "running",
        _ => "lost",
    }
}

/// True for statuses that end a task (MISSING counts: waiting cannot help).
pub fn is_done(status: &str) -> bool {
    status == MISSING || TERMINAL.contains(&status)
}

/// Why a task that ended without a stored result has none, for the error
/// value a front end shows in its place.
pub fn describe(status: &str) -> String {
    match status {
        IMPOSSIBLE => "a task it depends on did not complete, so it never ran".into(),
        TIMEOUT => "the task ran longer than its timeout and was stopped".into(),
        CANCELLED => "the task was cancelled".into(),
        DIED => "every worker that ran the task died (it used up max_attempts)".into(),
        MISSING => "the task does not exist: never created, deleted, or lost by the server".into(),
        other => format!("the task ended {other}"),
    }
}

/// Worker statuses.
pub const WORKER_IDLE: &str = "IDLE";
/// Evaluating a task.
pub const WORKER_BUSY: &str = "BUSY";
/// Exited (see `how` for the way it ended).
pub const WORKER_EXITED: &str = "EXITED";
/// Lease expired; its tasks were given back to their queues.
pub const WORKER_LOST: &str = "LOST";

/// How a worker ended (`how` in its record), and the outcome recorded for
/// the task it held: left when asked or when out of work.
pub const EXIT_NORMAL: &str = "EXITED";
/// Ended at once by a KILL control message.
pub const EXIT_KILLED: &str = "KILLED";
/// Ended by its side thread because R ignored an interrupt.
pub const EXIT_STUCK: &str = "STUCK";
/// Lost its connection in the middle of a step; its claims went back.
pub const EXIT_RECONNECTED: &str = "RECONNECTED";

/// The line a task's history gets when `task_retry()` queues it again.
pub const OUTCOME_RETRY: &str = "RETRY";

/// Control words a worker's side thread reads from its control list:
/// finish the current task, then exit.
pub const CONTROL_STOP: &str = "STOP";
/// Exit at once.
pub const CONTROL_KILL: &str = "KILL";
/// `CANCEL <id>`: interrupt that task if it is the current one.
pub const CONTROL_CANCEL: &str = "CANCEL";
/// Wake the worker: its side thread is leaving, or a task was queued on
/// the worker's own queue while it waited on another.
pub const CONTROL_WAKE: &str = "WAKE";
/// `MSG <id>`: a message for the worker (`worker_message_send()`), kept
/// under `message(id)`; the reply goes to `response(id)`.
pub const CONTROL_MESSAGE: &str = "MSG";

/// The `moved` argument of a worker's step sent right behind its blocking
/// move, which cannot know what the move will take: start the id the move
/// put at the head of the worker's running list, if any.
pub const MOVED_HEAD: &str = "*";

/// Why the reaper declares a worker lost (see `lua/reap.lua`); a session
/// that saw a worker's process end says how instead.
pub const LEASE_RAN_OUT: &str = "lost its lease";

/// A queue named `@<worker id>` is that worker's own: it serves it before
/// its other queues, and what waits there when it leaves ends `DIED`, as
/// no other worker may run it (calls addressed to one node of a cluster).
pub const PRIVATE_MARK: &str = "@";

/// The name of worker `wid`'s own queue.
pub fn private_queue(wid: &str) -> String {
    format!("{PRIVATE_MARK}{wid}")
}

/// The worker whose own queue `queue` is, if it is one.
pub fn private_owner(queue: &str) -> Option<&str> {
    queue.strip_prefix(PRIVATE_MARK).filter(|w| !w.is_empty())
}

/// What the R code of a task produced, as the worker loop reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A value.
    Value,
    /// An error condition (or a payload the worker refused to run).
    Error,
    /// Interrupted by the side thread (timeout or cancel).
    Interrupted,
}

impl Outcome {
    /// From the code the R loop passes: 0 value, 1 error, 2 interrupted.
    pub fn from_code(code: i32) -> Option<Outcome> {
        match code {
            0 => Some(Outcome::Value),
            1 => Some(Outcome::Error),
            2 => Some(Outcome::Interrupted),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_states() {
        use super::*;
        assert_eq!(phase(PENDING), "queued");
        assert_eq!(phase(DEFERRED), "queued");
        assert_eq!(phase(RUNNING), "running");
        assert_eq!(phase(COMPLETE), "finished");
        for s in [ERROR, TIMEOUT, CANCELLED, DIED, IMPOSSIBLE, MISSING] {
            assert_eq!(phase(s), "failed");
        }
        assert_eq!(worker_phase(WORKER_IDLE, "", true), "running");
        assert_eq!(worker_phase(WORKER_BUSY, "", false), "lost");
        assert_eq!(worker_phase(WORKER_LOST, "", false), "lost");
        assert_eq!(worker_phase(WORKER_EXITED, EXIT_KILLED, false), "killed");
        assert_eq!(worker_phase(WORKER_EXITED, EXIT_NORMAL, false), "terminated");
    }

    #[test]
    fn done_statuses() {
        assert!(super::is_done(super::COMPLETE));
        assert!(super::is_done(super::MISSING));
        assert!(!super::is_done(super::RUNNING));
        assert!(!super::is_done(super::PENDING));
        assert!(super::RETRYABLE.iter().all(|s| super::TERMINAL.contains(s)));
        assert!(super::describe(super::DIED).contains("max_attempts"));
    }
}
