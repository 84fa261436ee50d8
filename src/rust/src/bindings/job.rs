//! foreach jobs.

use super::controller::with_ctl;
use super::{raws, seconds, strs};
use crate::job;
use crate::queue;
use crate::task::TaskSpec;
use extendr_api::prelude::*;
use std::time::Duration;

/// Upload a job's environment and list the job.
#[extendr]
fn rs_job_put_env(x: Robj, job_id: &str, env: Raw, about: &str) -> Robj {
    with_ctl(&x, |c| job::put_env(&mut c.conn, &c.keys, job_id, env.as_slice(), about))
}

/// Running jobs: list(id, about).
#[extendr]
fn rs_job_list(x: Robj) -> Robj {
    with_ctl(&x, |c| job::list(&mut c.conn, &c.keys).map(|v| {
        list!(
            id = v.iter().map(|(k, _)| k.as_str()).collect::<Strings>(),
            about = v.iter().map(|(_, a)| a.as_str()).collect::<Strings>()
        )
    }))
}

/// Cancel a job's tasks from any session; returns how many.
#[extendr]
fn rs_job_cancel(x: Robj, job_id: &str, queue: &str) -> Robj {
    with_ctl(&x, |c| job::cancel(&mut c.conn, &c.keys, job_id, queue).map(|n| n as f64))
}

/// Submit a job's tasks (ids chosen by the caller) in one round trip.
#[extendr]
fn rs_job_submit(x: Robj, job_id: &str, queue: &str, ids: Strings, payloads: List, timeout: f64, max_attempts: i32) -> Robj {
    let timeout = seconds(timeout).map(|d| d.as_secs_f64());
    let payloads = raws(&payloads);
    with_ctl(&x, |c| {
        let tasks: Vec<TaskSpec> = ids
            .iter()
            .zip(payloads?)
            .map(|(id, payload)| TaskSpec {
                id: id.to_string(),
                queue: queue.to_string(),
                payload,
                timeout,
                max_attempts: max_attempts.max(1) as u32,
                job: Some(job_id.to_string()),
                notify: None,
                depends_on: Vec::new(),
            })
            .collect();
        queue::submit(&mut c.conn, &c.keys, &tasks, false)
    })
}

/// Wait up to `wait` seconds for results: list(id, status, result).
#[extendr]
fn rs_job_collect(x: Robj, job_id: &str, wait: f64) -> Robj {
    with_ctl(&x, |c| job::collect(&mut c.conn, &c.keys, job_id, Duration::from_secs_f64(wait.max(0.01))).map(|v| {
        list!(
            id = v.iter().map(|e| e.id.as_str()).collect::<Strings>(),
            status = v.iter().map(|e| e.status.as_str()).collect::<Strings>(),
            result = List::from_values(v.iter().map(|e| match &e.result {
                Some(b) => Raw::from_bytes(b).into(),
                None => Robj::from(()),
            }))
        )
    }))
}

/// list(env = whether the environment exists, missing = 1-based positions
/// of `ids` the server no longer knows).
#[extendr]
fn rs_job_missing(x: Robj, job_id: &str, ids: Strings) -> Robj {
    with_ctl(&x, |c| {
        let ids = strs(&ids);
        job::missing(&mut c.conn, &c.keys, job_id, &ids).map(|(env, miss)| {
            list!(env = env, missing = miss.into_iter().map(|i| (i + 1) as i32).collect::<Vec<i32>>())
        })
    })
}

/// Cancel a job's unfinished tasks and delete all its keys.
#[extendr]
fn rs_job_remove(x: Robj, job_id: &str, ids: Strings) -> Robj {
    with_ctl(&x, |c| {
        let ids = strs(&ids);
        job::remove(&mut c.conn, &c.keys, job_id, &ids)
    })
}

extendr_module! {
    mod job;
    fn rs_job_put_env;
    fn rs_job_list;
    fn rs_job_cancel;
    fn rs_job_submit;
    fn rs_job_collect;
    fn rs_job_missing;
    fn rs_job_remove;
}
