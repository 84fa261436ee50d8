//! Workers: the process side (`rs_worker_start`, `rs_worker_step`, ...) and
//! the controller side (`rs_worker_list`, `rs_worker_info`, `rs_worker_signal`).

use super::controller::with_ctl;
use super::{err, out, strs};
use crate::config::Config;
use crate::heartbeat::Timing;
use crate::worker::{Worker, WorkerOptions};
use extendr_api::prelude::*;
use std::time::Duration;

macro_rules! wkr {
    ($x:expr) => {
        match $crate::bindings::ptr::<Worker>(&$x, "worker") {
            Ok(p) => p,
            Err(e) => return e,
        }
    };
}

/// Register a worker and start its side thread.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_worker_start(
    url: &str,
    namespace: &str,
    queues: Strings,
    name: Nullable<String>,
    heartbeat: f64,
    lease: f64,
    grace: f64,
    max_batch: i32,
    info: Strings,
) -> Robj {
    let info_names: Vec<String> = info.names().map(|n| n.map(|s| s.to_string()).collect()).unwrap_or_default();
    let info: Vec<(String, String)> =
        info_names.into_iter().zip(strs(&info)).collect();
    let secs = |s: f64| Duration::from_secs_f64(if s.is_finite() && s > 0.0 { s } else { 1.0 });
    let opts = WorkerOptions {
        name: match name {
            Nullable::NotNull(n) => Some(n),
            Nullable::Null => None,
        },
        queues: strs(&queues),
        timing: Timing {
            period: secs(heartbeat),
            lease: secs(lease),
            grace: secs(grace),
            reap_every: 2,
        },
        max_batch: max_batch.max(1) as usize,
        info,
    };
    out(Config::new(url, namespace).and_then(|c| Worker::start(&c, opts)).map(ExternalPtr::new))
}

/// The worker's id.
#[extendr]
fn rs_worker_id(x: Robj) -> Robj {
    let w = wkr!(x);
    w.id().into()
}

/// Record the previous task's end and (if `claim`) start the next, waiting
/// up to `wait` seconds. Returns list(accepted, id, payload, job, timeout), with
/// a NULL id when no task came.
#[extendr]
fn rs_worker_step(x: Robj, done_id: &str, done_status: &str, done_result: Raw, claim: bool, wait: f64) -> Robj {
    let mut w = wkr!(x);
    let done = if done_id.is_empty() { None } else { Some((done_id, done_status, done_result.as_slice())) };
    match w.as_mut().step(done, claim, Duration::from_secs_f64(wait.max(0.0))) {
        Ok((accepted, Some(t))) => list!(
            accepted = accepted,
            id = t.id,
            payload = Raw::from_bytes(&t.payload),
            job = t.job,
            timeout = t.timeout.unwrap_or(f64::NAN),
            refused = t.refused
        )
        .into(),
        Ok((accepted, None)) => list!(accepted = accepted, id = ()).into(),
        Err(e) => err(&e),
    }
}

/// Why the side thread interrupted the current task: "TIMEOUT",
/// "CANCELLED", or "" when it did not.
#[extendr]
fn rs_worker_interrupt_reason(x: Robj) -> Robj {
    let w = wkr!(x);
    w.interrupt_reason().map_or("", |r| r.status()).into()
}

/// SIGINTs the side thread has sent so far.
#[extendr]
fn rs_worker_signals(x: Robj) -> Robj {
    let w = wkr!(x);
    (w.signals_sent() as f64).into()
}

/// True once a graceful STOP arrived.
#[extendr]
fn rs_worker_stop_requested(x: Robj) -> Robj {
    let w = wkr!(x);
    w.stop_requested().into()
}

/// A foreach job's environment (NULL if gone).
#[extendr]
fn rs_worker_job_env(x: Robj, job: &str) -> Robj {
    let mut w = wkr!(x);
    out(w.as_mut().job_env(job).map(|v| match v {
        Some(b) => Raw::from_bytes(&b).into(),
        None => Robj::from(()),
    }))
}

/// Leave the namespace.
#[extendr]
fn rs_worker_exit(x: Robj, how: &str) -> Robj {
    let mut w = wkr!(x);
    out(w.as_mut().exit(how))
}

/// Registered worker ids.
#[extendr]
fn rs_worker_list(x: Robj) -> Robj {
    with_ctl(&x, |c| {
        let k = c.keys.workers();
        c.conn.run(|r| redis::cmd("SMEMBERS").arg(&k).query::<Vec<String>>(r)).map(|mut v| {
            v.sort();
            v.into_iter().collect::<Strings>()
        })
    })
}

/// Info hash and liveness of each worker: a list of named character vectors.
#[extendr]
fn rs_worker_info(x: Robj, ids: Strings) -> Robj {
    with_ctl(&x, |c| {
        let mut p = redis::pipe();
        for id in ids.iter() {
            p.hgetall(c.keys.worker(&id));
            p.exists(c.keys.worker_alive(&id));
        }
        let r: crate::error::Result<Vec<redis::Value>> = c.conn.pipe(&p);
        r.map(|vals| {
            List::from_values(vals.chunks(2).map(|pair| {
                let fields: Vec<(String, String)> = redis::from_redis_value_ref(&pair[0]).unwrap_or_default();
                let alive: bool = redis::from_redis_value_ref(&pair[1]).unwrap_or(false);
                let mut names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
                let mut vals: Vec<&str> = fields.iter().map(|(_, v)| v.as_str()).collect();
                names.push("alive");
                vals.push(if alive { "TRUE" } else { "FALSE" });
                let mut s: Strings = vals.into_iter().collect();
                let _ = s.set_names(names);
                Robj::from(s)
            }))
        })
    })
}

/// Send a control message (STOP, KILL) to workers.
#[extendr]
fn rs_worker_signal(x: Robj, ids: Strings, message: &str) -> Robj {
    with_ctl(&x, |c| {
        let mut p = redis::pipe();
        for id in ids.iter() {
            p.rpush(c.keys.worker_control(&id), message).ignore();
            p.expire(c.keys.worker_control(&id), 86400).ignore();
        }
        c.conn.pipe::<()>(&p)
    })
}

extendr_module! {
    mod worker;
    fn rs_worker_start;
    fn rs_worker_id;
    fn rs_worker_step;
    fn rs_worker_interrupt_reason;
    fn rs_worker_stop_requested;
    fn rs_worker_signals;
    fn rs_worker_job_env;
    fn rs_worker_exit;
    fn rs_worker_list;
    fn rs_worker_info;
    fn rs_worker_signal;
}
