//! Waits for a condition that no notice announces: enough live workers
//! (a front end that starts workers, rush's `wait_for_workers()`), or more
//! tasks of a namespace ended (rush's `wait_for_new_tasks()`, whose tasks
//! may be created by workers while it waits). The condition is read in
//! growing slices (10 ms, doubling up to 200 ms, as a wait's slices), with
//! the user's interrupt checked in between; a server that is away is
//! ridden out for `patience`, as other waits do.

use super::Hooks;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::keys::Keys;
use std::time::{Duration, Instant};

/// What a wait looks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Until {
    /// At least `n` live workers, serving `queue` if given.
    Workers { n: usize, queue: Option<String> },
    /// At least `n` tasks of the namespace ended with status `status`
    /// since it began (its running totals, `counts`).
    Ended { status: String, n: u64 },
}

impl Until {
    /// Whether it holds now, and what was found (workers, or tasks).
    fn look(&self, conn: &mut Connection, keys: &Keys) -> Result<(bool, u64)> {
        match self {
            Until::Workers { n, queue: Some(q) } => {
                let found = crate::monitor::serving(conn, keys, std::slice::from_ref(q))?;
                let live = found.first().map_or(0, |(_, serving)| *serving);
                Ok((live as usize >= *n, live))
            }
            Until::Workers { n, queue: None } => {
                let ids = crate::registry::list(conn, keys)?;
                let live = crate::registry::info(conn, keys, &ids)?.iter().filter(|w| w.alive).count();
                Ok((live >= *n, live as u64))
            }
            Until::Ended { status, n } => {
                let k = keys.counts();
                let ended: Option<u64> = conn.run(|c| redis::cmd("HGET").arg(&k).arg(status).query(c))?;
                let ended = ended.unwrap_or(0);
                Ok((ended >= *n, ended))
            }
        }
    }
}

/// Wait up to `timeout` (None: for ever) for `until`; returns whether it
/// holds and what was found last.
pub fn wait_until(
    conn: &mut Connection,
    keys: &Keys,
    until: &Until,
    timeout: Option<Duration>,
    patience: Duration,
    hooks: &mut Hooks<'_>,
) -> Result<(bool, u64)> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut pause = Duration::from_millis(10);
    let mut away_since: Option<Instant> = None;
    loop {
        match until.look(conn, keys) {
            Ok((true, found)) => return Ok((true, found)),
            Ok((false, found)) => {
                away_since = None;
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok((false, found));
                }
            }
            Err(e) if e.is_connection() => {
                let since = *away_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= patience || deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(Error::Connection(format!(
                        "{e}; gave up after waiting {:.0} s for the server to come back",
                        since.elapsed().as_secs_f64()
                    )));
                }
            }
            Err(e) => return Err(e),
        }
        if (hooks.interrupted)() {
            return Err(Error::Interrupted);
        }
        let mut nap = pause;
        if let Some(d) = deadline {
            nap = nap.min(d.saturating_duration_since(Instant::now()));
        }
        std::thread::sleep(nap);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
