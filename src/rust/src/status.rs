//! Status words of tasks and workers: the only place they are spelled (Lua
//! mirrors them in `lua/keys.lua`; a test checks the two agree).

/// Waiting for the tasks it depends on.
pub const DEFERRED: &str = "DEFERRED";
/// Task statuses, see the lifecycle in ARCHITECTURE.md.
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

/// Statuses after which nothing changes a task.
pub const TERMINAL: [&str; 6] = [COMPLETE, ERROR, CANCELLED, TIMEOUT, DIED, IMPOSSIBLE];

/// True for statuses that end a task (MISSING counts: waiting cannot help).
pub fn is_done(status: &str) -> bool {
    status == MISSING || TERMINAL.contains(&status)
}

/// Worker statuses.
pub const WORKER_IDLE: &str = "IDLE";
/// Evaluating a task.
pub const WORKER_BUSY: &str = "BUSY";
/// Exited cleanly.
pub const WORKER_EXITED: &str = "EXITED";
/// Lease expired; its tasks were given back to their queues.
pub const WORKER_LOST: &str = "LOST";

#[cfg(test)]
mod tests {
    #[test]
    fn done_statuses() {
        assert!(super::is_done("COMPLETE"));
        assert!(super::is_done("MISSING"));
        assert!(!super::is_done("RUNNING"));
        assert!(!super::is_done("PENDING"));
    }
}
