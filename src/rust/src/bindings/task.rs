//! The task API.

use super::{lost_or_null, with_ctl};
use super::{err, interrupted, number, progress_hook, raw_list, raws, strs};
use crate::controller::Controller;
use crate::engine::{self, Hooks};
use crate::error::Error;
use crate::protocol;
use crate::status;
use crate::submit::{self, Submit};
use crate::tasks;
use crate::task::TaskSpec;
use super::ended_robj;
use extendr_api::prelude::*;

/// Submit serialized payloads to a queue in one round trip; returns ids.
/// `timeout` and `max_attempts` are numbers or NULL (none, default).
/// Tasks with dependencies wait DEFERRED until those complete.
#[extendr]
fn rs_task_submit(
    x: Robj,
    queue: &str,
    payloads: List,
    timeout: Robj,
    max_attempts: Robj,
    depends_on: Strings,
    shared: Robj,
) -> Robj {
    with_ctl(&x, |c| {
        let mut tasks =
            TaskSpec::batch(queue, raws(&payloads)?, number(&timeout, "timeout")?, number(&max_attempts, "max_attempts")?)?;
        let deps = strs(&depends_on);
        // a value the payloads share (their common arguments), stored once
        let shared = match shared.as_raw() {
            Some(r) => Some(crate::big::prepare_shared(&mut c.conn, &c.keys, r.as_slice(), tasks.len(), false)?),
            None => None,
        };
        for t in &mut tasks {
            t.job = Some(c.cid.clone());
            t.depends_on = deps.clone();
            t.object = shared.as_ref().map(|o| o.sha.clone());
        }
        let how = Submit { register: true, expire: false };
        submit::submit_once(&mut c.conn, &c.keys, &tasks, how, shared.as_ref(), std::time::Duration::from_secs(30))?;
        Ok(tasks.iter().map(|t| t.id.as_str()).collect::<Strings>())
    })
}

/// Serialize a large payload straight into chunks (no serialized copy is
/// ever whole); returns the reference, which `rs_task_submit` takes as the
/// payload (and seals, with a secret).
#[extendr]
fn rs_controller_stream(x: Robj, value: Robj) -> Robj {
    with_ctl(&x, |c| {
        let owner = format!("p{}", crate::id::new_id());
        let mut w = crate::big::Writer::new(&mut c.conn, &c.keys, &owner, crate::big::PAYLOAD, 0);
        super::serialize_into(&mut w, &value);
        match w.finish()? {
            crate::big::Stored::Big(r) => Ok(Raw::from_bytes(&r.encode())),
            crate::big::Stored::Inline(v) => Ok(Raw::from_bytes(&v)),
        }
    })
}

/// The address a shared value will have: the SHA-256 of its bytes.
#[extendr]
fn rs_object_address(value: Raw) -> String {
    crate::big::address(value.as_slice())
}

/// Status of each id.
#[extendr]
fn rs_task_status(x: Robj, ids: Strings) -> Robj {
    with_ctl(&x, |c| tasks::statuses(&mut c.conn, &c.keys, &strs(&ids)).map(|s| s.into_iter().collect::<Strings>()))
}

/// list(status, exists, done, completed, result, message): results as raw
/// vectors (NULL where none), and for tasks without one, why.
#[extendr]
fn rs_task_results(x: Robj, ids: Strings) -> Robj {
    with_ctl(&x, |c| {
        let ids = strs(&ids);
        // completed tasks whose results came with the wait's notices
        if let Some(results) = c.results.get_all(&ids) {
            let v: Vec<tasks::Ended> = ids
                .into_iter()
                .zip(results)
                .map(|(id, r)| tasks::Ended::new(id, status::COMPLETE.to_string(), Ok(Some(r)), None))
                .collect();
            return Ok(ended_robj(&v));
        }
        tasks::results(&mut c.conn, &c.keys, &ids).map(|v| ended_robj(&v))
    })
}

/// list(state, worker, payload, result) of each task (state: queued,
/// running, finished or failed): raw vectors, NULL where none.
#[extendr]
fn rs_task_records(x: Robj, ids: Strings) -> Robj {
    with_ctl(&x, |c| {
        tasks::records(&mut c.conn, &c.keys, &strs(&ids)).map(|v| -> Robj {
            list!(
                state = v.iter().map(|r| status::phase(&r.status)).collect::<Strings>(),
                worker = v.iter().map(|r| r.worker.as_str()).collect::<Strings>(),
                payload = raw_list(v.iter().map(|r| r.payload.as_ref())),
                result = raw_list(v.iter().map(|r| r.result.as_ref()))
            )
            .into()
        })
    })
}

/// The progress each task last reported: a list of raw vectors (NULL
/// where none).
#[extendr]
fn rs_task_progress(x: Robj, ids: Strings) -> Robj {
    with_ctl(&x, |c| tasks::progress(&mut c.conn, &c.keys, &strs(&ids)).map(|v| raw_list(v.iter().map(|b| b.as_ref()))))
}

/// What each task printed (character; NA where nothing was kept).
#[extendr]
fn rs_task_logs(x: Robj, ids: Strings) -> Robj {
    with_ctl(&x, |c| {
        tasks::logs(&mut c.conn, &c.keys, &strs(&ids)).map(|v| {
            v.iter()
                .map(|b| match b {
                    Some(b) => Rstr::from(String::from_utf8_lossy(b).as_ref()),
                    None => Rstr::na(),
                })
                .collect::<Strings>()
        })
    })
}

/// Every status a task can have.
#[extendr]
fn rs_task_status_words() -> Robj {
    let mut v: Vec<&str> = vec![status::DEFERRED, status::PENDING, status::RUNNING];
    v.extend(status::TERMINAL.iter().copied());
    v.push(status::MISSING);
    v.into_iter().collect::<Strings>().into()
}

/// Bytes above which a value is stored apart from its record (`big`).
#[extendr]
fn rs_big_value() -> f64 {
    crate::protocol::BIG_VALUE as f64
}

/// The statuses a task ends with, in the order of `rs_task_status_words()`.
#[extendr]
fn rs_task_terminal_words() -> Robj {
    status::TERMINAL.iter().copied().collect::<Strings>().into()
}

/// The table-view state of each task: queued, running, finished or failed.
#[extendr]
fn rs_task_states(x: Robj, ids: Strings) -> Robj {
    with_ctl(&x, |c| {
        tasks::statuses(&mut c.conn, &c.keys, &strs(&ids))
            .map(|v| v.iter().map(|s| status::phase(s)).collect::<Strings>())
    })
}


/// Block until the tasks end, in slices, checking for Ctrl+C between
/// slices, running the reaper every `reap_every` seconds and riding out an
/// unreachable server for `patience` seconds; `progress` is NULL or a
/// function(done, total). Returns final statuses and the workers found
/// lost while waiting (also on an error, as attribute `lost` of the error
/// value).
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_task_wait(x: Robj, ids: Strings, timeout: Robj, reap_every: Robj, patience: Robj, progress: Robj, starve: Robj, workers: Robj) -> Robj {
    let mut c = match super::ptr::<Controller>(&x, "controller") {
        Ok(c) => c,
        Err(e) => return e,
    };
    let c = c.as_mut();
    let checked = (|| {
        let timeout = protocol::seconds("timeout", number(&timeout, "timeout")?.unwrap_or(f64::INFINITY), true, true)?;
        let (starve_warn, starve_error) = super::starve_options(&starve)?;
        let opts = crate::engine::JobOptions {
            starve_warn,
            starve_error,
            ..super::job_options(false, false, &reap_every, &Robj::from(()), &patience)?
        };
        Ok::<_, Error>((timeout, opts))
    })();
    let (timeout, opts) = match checked {
        Ok(v) => v,
        Err(e) => return err(&e),
    };
    let (mut check, mut show) = (interrupted, progress_hook(&progress));
    let mut local = super::RWorkers::from(&workers);
    let mut hooks = Hooks {
        interrupted: &mut check,
        progress: &mut show,
        workers: local.as_mut().map(|w| w as &mut dyn engine::LocalWorkers),
    };
    let cid = c.cid.clone();
    let mut w = engine::wait_all(&mut c.conn, &c.keys, &cid, &strs(&ids), opts, timeout, &mut hooks);
    c.results.keep(std::mem::take(&mut w.results));
    match w.error {
        None => list!(
            status = w.statuses.into_iter().collect::<Strings>(),
            lost = lost_or_null(&w.lost),
            notices = w.notices.iter().map(|s| s.as_str()).collect::<Strings>()
        )
        .into(),
        Some(e) => {
            let mut r = err(&e);
            let _ = r.set_attrib("lost", lost_or_null(&w.lost));
            r
        }
    }
}

/// Wait up to `timeout` seconds until `n` tasks of the namespace have
/// completed since it began (its running totals): list(reached, found).
#[extendr]
fn rs_task_wait_completed(x: Robj, n: f64, timeout: Robj, patience: Robj) -> Robj {
    let n = match protocol::count("n", n, 0, u64::MAX >> 1, false) {
        Ok(n) => n.unwrap_or(0),
        Err(e) => return err(&e),
    };
    let until = crate::engine::Until::Ended { status: status::COMPLETE.to_string(), n };
    super::wait_until_robj(&x, until, &timeout, &patience)
}

/// Bookkeeping of a task: list(fields = named character vector,
/// attempts = list(worker, started, ended, outcome)) with times in ms.
#[extendr]
fn rs_task_info(x: Robj, id: &str) -> Robj {
    with_ctl(&x, |c| {
        tasks::info(&mut c.conn, &c.keys, id).map(|info| {
            let mut fields: Strings = info.fields.iter().map(|(_, v)| v.as_str()).collect();
            let _ = fields.set_names(info.fields.iter().map(|(k, _)| k.as_str()).collect::<Vec<&str>>());
            let a = &info.attempts;
            list!(
                fields = fields,
                attempts = list!(
                    worker = a.iter().map(|x| x.worker.as_str()).collect::<Strings>(),
                    started = a.iter().map(|x| x.started.unwrap_or(f64::NAN)).collect::<Vec<f64>>(),
                    ended = a.iter().map(|x| x.ended.unwrap_or(f64::NAN)).collect::<Vec<f64>>(),
                    outcome = a.iter().map(|x| x.outcome.as_str()).collect::<Strings>()
                )
            )
        })
    })
}

/// Why a task ended without a value, in words (status, meaning, workers
/// lost while running it).
#[extendr]
fn rs_task_failure(x: Robj, id: &str) -> Robj {
    with_ctl(&x, |c| tasks::failure(&mut c.conn, &c.keys, id))
}

/// Ids created through the task API, oldest first.
#[extendr]
fn rs_task_list(x: Robj) -> Robj {
    with_ctl(&x, |c| tasks::list(&mut c.conn, &c.keys).map(|v| v.into_iter().collect::<Strings>()))
}

/// Cancel; returns the status each task had.
#[extendr]
fn rs_task_cancel(x: Robj, ids: Strings) -> Robj {
    with_ctl(&x, |c| tasks::cancel(&mut c.conn, &c.keys, &strs(&ids)).map(|v| v.into_iter().collect::<Strings>()))
}

/// Run ended tasks again (all or none); returns the status each had.
#[extendr]
fn rs_task_retry(x: Robj, ids: Strings) -> Robj {
    with_ctl(&x, |c| {
        let cid = c.cid.clone();
        tasks::retry(&mut c.conn, &c.keys, &cid, &strs(&ids)).map(|st| st.into_iter().collect::<Strings>())
    })
}

/// Delete tasks and their data.
#[extendr]
fn rs_task_delete(x: Robj, ids: Strings) -> Robj {
    with_ctl(&x, |c| {
        let ids = strs(&ids);
        c.results.forget(&ids);
        tasks::delete(&mut c.conn, &c.keys, &ids).map(|_| ())
    })
}

extendr_module! {
    mod task;
    fn rs_task_submit;
    fn rs_object_address;
    fn rs_controller_stream;
    fn rs_task_status;
    fn rs_task_results;
    fn rs_task_records;
    fn rs_task_states;
    fn rs_task_status_words;
    fn rs_task_terminal_words;
    fn rs_big_value;
    fn rs_task_progress;
    fn rs_task_logs;
    fn rs_task_wait;
    fn rs_task_wait_completed;
    fn rs_task_info;
    fn rs_task_list;
    fn rs_task_cancel;
    fn rs_task_delete;
    fn rs_task_retry;
    fn rs_task_failure;
}
