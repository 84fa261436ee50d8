//! The task API and queues.

use super::controller::{ctl, lost_robj, with_ctl};
use super::{err, interrupted, raws, seconds, strs};
use crate::controller::Controller;
use crate::error::Error;
use crate::monitor;
use crate::queue::{self, WaitOptions};
use crate::task::{new_id, TaskSpec};
use extendr_api::prelude::*;
use std::time::{Duration, Instant};

/// Submit serialized payloads to a queue in one round trip; returns ids.
/// Tasks with dependencies wait DEFERRED until those complete.
#[extendr]
fn rs_task_submit(x: Robj, queue: &str, payloads: List, timeout: f64, max_attempts: i32, depends_on: Strings) -> Robj {
    let timeout = seconds(timeout).map(|d| d.as_secs_f64());
    let depends_on = strs(&depends_on);
    let payloads = raws(&payloads);
    with_ctl(&x, |c| {
        crate::config::validate_name("queue", queue)?;
        let tasks: Vec<TaskSpec> = payloads?
            .into_iter()
            .map(|payload| TaskSpec {
                id: new_id(),
                queue: queue.to_string(),
                payload,
                timeout,
                max_attempts: max_attempts.max(1) as u32,
                job: None,
                notify: Some(c.cid.clone()),
                depends_on: depends_on.clone(),
            })
            .collect();
        queue::submit(&mut c.conn, &c.keys, &tasks, true)?;
        Ok(tasks.iter().map(|t| t.id.as_str()).collect::<Strings>())
    })
}

/// Status of each id.
#[extendr]
fn rs_task_status(x: Robj, ids: Strings) -> Robj {
    with_ctl(&x, |c| queue::statuses(&mut c.conn, &c.keys, &strs(&ids)).map(|s| s.into_iter().collect::<Strings>()))
}

/// list(status, result) with results as raw vectors (NULL where absent).
#[extendr]
fn rs_task_results(x: Robj, ids: Strings) -> Robj {
    with_ctl(&x, |c| queue::results(&mut c.conn, &c.keys, &strs(&ids)).map(|v| {
        let status: Strings = v.iter().map(|(s, _)| s.as_str()).collect();
        let result = List::from_values(v.iter().map(|(_, r)| match r {
            Some(b) => Raw::from_bytes(b).into(),
            None => Robj::from(()),
        }));
        list!(status = status, result = result)
    }))
}

/// Block until the tasks end, in slices, checking for Ctrl+C between
/// slices and running the reaper every `reap_every` seconds. Returns final
/// statuses and the workers found lost while waiting.
#[extendr]
fn rs_task_wait(x: Robj, ids: Strings, timeout: f64, reap_every: f64, progress: bool) -> Robj {
    let mut c = ctl!(x);
    let c: &mut Controller = c.as_mut();
    let ids = strs(&ids);
    let keys = c.keys.clone();
    let reap_every = Duration::from_secs_f64(reap_every.max(0.05));
    let mut last_reap = Instant::now();
    let mut lost: Vec<monitor::LostWorker> = Vec::new();
    let mut since = match monitor::events_tail(&mut c.conn, &keys) {
        Ok(s) => s,
        Err(e) => return err(&e),
    };
    let mut shown = usize::MAX;
    let result = {
        let mut check = interrupted;
        let mut show = |done: usize, total: usize| {
            if progress && done != shown {
                shown = done;
                let width = 40;
                let fill = if total == 0 { width } else { done * width / total };
                reprint!("\r[{}{}] {done}/{total}", "=".repeat(fill), " ".repeat(width - fill));
                if done == total {
                    reprint!("\n");
                }
            }
        };
        let mut idle = |conn: &mut crate::connection::Connection| -> crate::error::Result<()> {
            if last_reap.elapsed() >= reap_every {
                last_reap = Instant::now();
                monitor::reap(conn, &keys)?;
                let (found, last) = monitor::lost_since(conn, &keys, &since)?;
                lost.extend(found);
                since = last;
            }
            Ok(())
        };
        let mut opts = WaitOptions {
            slice: Duration::from_millis(200),
            timeout: seconds(timeout),
            interrupted: &mut check,
            progress: &mut show,
            idle: &mut idle,
        };
        let done = c.done.clone();
        queue::wait(&mut c.conn, &keys, &ids, &done, &mut opts)
    };
    if progress && result.is_err() && shown != usize::MAX {
        reprint!("\n");
    }
    match result {
        Ok(st) => list!(status = st.into_iter().collect::<Strings>(), lost = lost_robj(&lost)).into(),
        Err(e) => {
            let mut r = err(&e);
            if matches!(e, Error::Interrupted | Error::Timeout(_)) {
                let _ = r.set_attrib("lost", lost_robj(&lost));
            }
            r
        }
    }
}

/// Bookkeeping fields of a task, as a named character vector.
#[extendr]
fn rs_task_info(x: Robj, id: &str) -> Robj {
    with_ctl(&x, |c| queue::info(&mut c.conn, &c.keys, id).map(|f| {
        let mut v: Strings = f.iter().map(|(_, v)| v.as_str()).collect();
        let _ = v.set_names(f.iter().map(|(k, _)| k.as_str()).collect::<Vec<&str>>());
        v
    }))
}

/// Ids created through the task API.
#[extendr]
fn rs_task_list(x: Robj) -> Robj {
    with_ctl(&x, |c| queue::list(&mut c.conn, &c.keys).map(|v| v.into_iter().collect::<Strings>()))
}

/// Cancel; returns the status each task had.
#[extendr]
fn rs_task_cancel(x: Robj, ids: Strings) -> Robj {
    with_ctl(&x, |c| queue::cancel(&mut c.conn, &c.keys, &strs(&ids)).map(|v| v.into_iter().collect::<Strings>()))
}

/// Run ended tasks again: list(ok, status) with the status each had.
#[extendr]
fn rs_task_retry(x: Robj, ids: Strings) -> Robj {
    with_ctl(&x, |c| {
        let cid = c.cid.clone();
        queue::retry(&mut c.conn, &c.keys, &cid, &strs(&ids))
            .map(|(ok, st)| list!(ok = ok, status = st.into_iter().collect::<Strings>()))
    })
}

/// Delete tasks and their data.
#[extendr]
fn rs_task_delete(x: Robj, ids: Strings) -> Robj {
    with_ctl(&x, |c| queue::delete(&mut c.conn, &c.keys, &strs(&ids)).map(|_| ()))
}

extendr_module! {
    mod task;
    fn rs_task_submit;
    fn rs_task_status;
    fn rs_task_results;
    fn rs_task_wait;
    fn rs_task_info;
    fn rs_task_list;
    fn rs_task_cancel;
    fn rs_task_delete;
    fn rs_task_retry;
}
