//! The protocol's numbers: schema version, defaults, time-to-live of the
//! keys that expire, and the bounds every duration and count is checked
//! against before it reaches Redis or a worker. Lua receives the TTLs and
//! defaults through the generated preamble (`scripts`); R asks for them
//! through `bindings`. Nothing else spells them.

use crate::error::{Error, Result};
use std::time::Duration;

/// Schema version of the Redis data; controllers and workers of another
/// version refuse the namespace instead of corrupting it.
pub const SCHEMA_VERSION: &str = "3";

/// The defaults R falls back on when neither an argument nor an option
/// (`redq.<name>`) gives a value, and that the core uses itself: seconds,
/// counts or bytes. R reads them (`redq_default()`); nothing else spells
/// them.
pub const DEFAULTS: &[(&str, f64)] = &[
    // a worker's heartbeat period and lease, and how long its R code gets
    // to honour a timeout or cancel before the process ends
    ("heartbeat", 1.0),
    ("lease", 5.0),
    ("grace", 3.0),
    // most tasks a worker claims in one step when the backlog is long
    ("max_batch", 16.0),
    // a waiting controller: how often it reaps, looks for tasks the server
    // lost, and how long it waits for a server that went away
    ("reap_interval", 1.0),
    ("check_every", 30.0),
    ("reconnect_patience", 60.0),
    // BiocParallel's managers look for lost tasks more often
    ("check_interval", 5.0),
    // a foreach loop whose queue no live worker serves fails after this
    ("no_worker_timeout", 300.0),
    // values over this many bytes are stored once and shared (bulk
    // arguments, job environments); a worker caches up to this many bytes
    // of them
    ("shared_threshold", 1e6),
    ("object_cache", 2e9),
];

/// The default `name` (see `DEFAULTS`).
pub fn default(name: &str) -> f64 {
    DEFAULTS.iter().find(|(n, _)| *n == name).map_or(f64::NAN, |(_, v)| *v)
}

/// A default duration.
pub fn default_duration(name: &str) -> Duration {
    Duration::from_secs_f64(default(name))
}

/// What starts a reference to a value stored in chunks or a file
/// (`big.rs`): a NUL, which neither an R serialization nor a sealed value
/// starts with.
pub const BIG_MARK: &[u8] = b"\0redq-big:";

/// What starts a reference to a shared object (`object:<sha>`), in the
/// place of a value stored once for several owners (a job environment).
pub const OBJECT_MARK: &[u8] = b"\0redq-object:";

/// The part of a reference to a value offloaded to a file.
pub const FILE_PART: &str = "f";

/// The shortest timeout a task may have: a worker's side thread interrupts
/// a task within milliseconds of its deadline, and a shorter timeout
/// could not be told from none.
pub const MIN_TASK_TIMEOUT_S: f64 = 0.01;

/// Runs allowed before a task whose workers keep dying ends DIED.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// A job's keys (environment, task hashes) live at most this long if its
/// controller vanishes without removing them.
pub const JOB_TTL_S: u64 = 7 * 86400;

/// Completion notices expire this long after the last one was pushed.
pub const NOTIFY_TTL_MS: u64 = 86_400_000;

/// Records of workers that exited or were lost are kept this long.
pub const WORKER_TTL_S: u64 = 86400;

/// Unread control messages of a worker expire after this long.
pub const CONTROL_TTL_S: u64 = 86400;

/// Approximate length the lost-worker event stream is capped at.
pub const EVENTS_MAXLEN: u64 = 1000;

/// Values (payloads, results, job environments) over this many bytes are
/// stored in chunks (`big`).
pub const BIG_VALUE: usize = 16 << 20;

/// A result up to this many bytes travels with its task's completion
/// notice, so the waiter has it without reading the task.
pub const NOTICE_RESULT_MAX: usize = 1024;

/// Bytes per chunk of a large value.
pub const BIG_CHUNK: usize = 1 << 20;

/// Events kept in a worker's event log (the newest).
pub const WORKER_LOG_LIMIT: u64 = 1000;

/// Failed tasks listed for the dashboard (the newest).
pub const FAILURES_LIMIT: u64 = 50;

/// Longest duration accepted anywhere (about 31 years): long enough for
/// any real timeout, short enough that adding it to a clock cannot overflow.
pub const MAX_SECONDS: f64 = 1e9;

/// Most attempts a task may be given.
pub const MAX_ATTEMPTS_LIMIT: u64 = 1000;

/// The largest value a count argument may take, by argument name: what
/// makes sense on any machine (more workers per call than processes one
/// host should start, more attempts than a task can need) is refused.
pub fn count_limit(name: &str) -> u64 {
    match name {
        "max_attempts" => MAX_ATTEMPTS_LIMIT,
        "n" => 1024,
        "max_batch" => 10_000,
        "chunkSize" => 1_000_000_000,
        _ => u32::MAX as u64,
    }
}

/// Check a number of seconds. `none_ok`: `Inf` means "no limit" and
/// gives `None`; otherwise the value must be finite. Zero is allowed only
/// with `zero_ok`. NA is never a duration.
pub fn seconds(name: &str, x: f64, none_ok: bool, zero_ok: bool) -> Result<Option<Duration>> {
    let hint = if none_ok { ", or Inf for none" } else { "" };
    let bad = |why: &str| Error::Argument(format!("'{name}' {why}{hint}"));
    if x.is_nan() {
        return Err(bad("must be a number of seconds, not NA"));
    }
    if x == f64::INFINITY && none_ok {
        return Ok(None);
    }
    if x < 0.0 || (x == 0.0 && !zero_ok) {
        return Err(bad(if zero_ok { "must not be negative" } else { "must be more than 0 seconds" }));
    }
    if !(x <= MAX_SECONDS) {
        return Err(bad(&format!("is {x} seconds; it must be at most {MAX_SECONDS:e} (about 31 years)")));
    }
    Duration::try_from_secs_f64(x).map(Some).map_err(|_| bad("is not a valid number of seconds"))
}

/// Check a whole number between `min` and `max`. With `none_ok`, `Inf`
/// means "no limit" and gives `None`.
pub fn count(name: &str, x: f64, min: u64, max: u64, none_ok: bool) -> Result<Option<u64>> {
    if x == f64::INFINITY && none_ok {
        return Ok(None);
    }
    let inf = if none_ok { " (Inf for no limit)" } else { "" };
    if !x.is_finite() || x.fract() != 0.0 || x < min as f64 || x > max as f64 {
        return Err(Error::Argument(format!(
            "'{name}' must be a whole number from {min} to {max}{inf}, not {}",
            if x.is_nan() { "NA".to_string() } else { format!("{x}") }
        )));
    }
    Ok(Some(x as u64))
}

/// A count that must be given (no "unlimited").
pub fn required_count(name: &str, x: f64, min: u64, max: u64) -> Result<u64> {
    count(name, x, min, max, false).map(|c| c.unwrap_or(min))
}

/// A worker's lease must outlast several heartbeat periods, or a worker
/// that is merely slow to renew is declared lost.
pub fn check_lease(period: Duration, lease: Duration) -> Result<()> {
    if lease <= period {
        return Err(Error::Argument(format!(
            "the lease ({:.2} s) must be longer than the heartbeat period ({:.2} s); make it 3-5 periods",
            lease.as_secs_f64(),
            period.as_secs_f64()
        )));
    }
    Ok(())
}

/// Refuse a namespace written by an incompatible version of redq.
pub fn check_version(found: &str) -> Result<()> {
    if found == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(Error::Version(format!(
            "this namespace holds redq data of schema version {found}, this redq speaks version {SCHEMA_VERSION}; use another namespace or the same redq version everywhere"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_checked() {
        assert_eq!(seconds("t", 1.5, true, false).unwrap(), Some(Duration::from_millis(1500)));
        assert_eq!(seconds("t", f64::INFINITY, true, false).unwrap(), None);
        for bad in [1e19, -1.0, f64::NEG_INFINITY, 2e9, f64::NAN] {
            assert_eq!(seconds("t", bad, true, true).unwrap_err().kind(), "argument", "{bad}");
        }
        assert!(seconds("t", f64::INFINITY, false, true).is_err());
        assert!(seconds("t", f64::NAN, false, true).is_err());
        assert!(seconds("t", 0.0, true, false).is_err());
        assert_eq!(seconds("t", 0.0, false, true).unwrap(), Some(Duration::ZERO));
        // the largest accepted value can be added to a clock
        let d = seconds("t", MAX_SECONDS, false, false).unwrap().unwrap();
        assert!(std::time::Instant::now().checked_add(d).is_some());
        assert!(seconds("timeout", 1e19, true, false).unwrap_err().to_string().contains("'timeout'"));
    }

    #[test]
    fn counts_are_checked() {
        assert_eq!(count("n", 3.0, 1, 10, false).unwrap(), Some(3));
        assert_eq!(count("n", f64::INFINITY, 1, 10, true).unwrap(), None);
        for bad in [0.0, 11.0, 2.5, f64::NAN, f64::INFINITY, -1.0, 1e19] {
            assert!(count("n", bad, 1, 10, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions() {
        assert!(check_version(SCHEMA_VERSION).is_ok());
        assert_eq!(check_version("0").unwrap_err().kind(), "version");
    }
}

/// Most bytes of a task's captured output kept in its record (the end).
pub const TASK_LOG_LIMIT: usize = 64 * 1024;
