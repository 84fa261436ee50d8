//! Workers: the process side (`rs_worker_start`, `rs_worker_step`, ...) and
//! the controller side (`rs_worker_list`, `rs_worker_info`, `rs_worker_signal`).

use super::with_ctl;
use super::{err, number, out, strs};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::heartbeat::Timing;
use crate::protocol;
use crate::registry::{self, Signal};
use crate::status::{self, Outcome};
use crate::worker::{Worker, WorkerOptions};
use super::offload;
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

/// Register a worker and start its side thread. Durations in seconds
/// (NULL for the defaults); `info` is a named character vector; `parent`
/// the process id the worker must not outlive, or NULL.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_worker_start(
    url: &str,
    namespace: &str,
    queues: Strings,
    name: Nullable<String>,
    heartbeat: Robj,
    lease: Robj,
    grace: Robj,
    max_batch: Robj,
    info: Strings,
    secret: Nullable<String>,
    parent: Robj,
) -> Robj {
    let info_names: Vec<String> = info.names().map(|n| n.map(|s| s.to_string()).collect()).unwrap_or_default();
    let info: Vec<(String, String)> = info_names.into_iter().zip(strs(&info)).collect();
    let opts = (|| {
        Ok::<_, Error>(WorkerOptions {
            name: match name {
                Nullable::NotNull(n) => Some(n),
                Nullable::Null => None,
            },
            queues: strs(&queues),
            timing: Timing {
                period: super::secs(&heartbeat, "heartbeat", protocol::default("heartbeat"))?,
                lease: super::secs(&lease, "lease", protocol::default("lease"))?,
                grace: super::secs(&grace, "redq.grace", protocol::default("grace"))?,
                reap_every: 2,
                parent: match number(&parent, "parent")? {
                    Some(p) if p >= 1.0 && p <= u32::MAX as f64 => Some(p as u32),
                    Some(p) => return Err(Error::Argument(format!("'parent' must be a process id, not {p}"))),
                    None => None,
                },
            },
            max_batch: protocol::required_count("max_batch", number(&max_batch, "max_batch")?.unwrap_or(protocol::default("max_batch")), 1, protocol::count_limit("max_batch"))?
                as usize,
            info,
        })
    })();
    out(opts.and_then(|o| Config::new(url, namespace).and_then(|c| Worker::start(&c.with_secret(super::secret::given(&secret)), o))).map(ExternalPtr::new))
}

/// The worker's id.
#[extendr]
fn rs_worker_id(x: Robj) -> Robj {
    let w = wkr!(x);
    w.id().into()
}

/// The name of worker `wid`'s own queue, where calls addressed to it
/// alone wait.
#[extendr]
fn rs_private_queue(wid: &str) -> String {
    crate::status::private_queue(wid)
}

/// Report the tasks finished since the last step and start up to `limit`
/// more (0: none; the worker sizes its batches by its recent tasks),
/// waiting up to `wait` seconds for work. Returns list(id, payload, seed,
/// refused: NA, or why the task may not run) with one element per task
/// started (none when no work came).
#[extendr]
fn rs_worker_step(x: Robj, limit: f64, wait: f64) -> Robj {
    let mut w = wkr!(x);
    let wait = Duration::try_from_secs_f64(wait.max(0.0)).unwrap_or(Duration::ZERO);
    let limit = if limit.is_finite() && limit > 0.0 { limit.min(1e6) as usize } else if limit > 0.0 { usize::MAX } else { 0 };
    match w.as_mut().step(limit, wait) {
        Ok((_, tasks)) => list!(
            id = tasks.iter().map(|t| t.id.as_str()).collect::<Strings>(),
            payload = List::from_values(tasks.iter().map(|t| Raw::from_bytes(&t.payload))),
            seed = List::from_values(tasks.iter().map(|t| t.seed.map_or(Robj::from(()), |s| s.to_vec().into()))),
            refused = tasks.iter().map(|t| t.refused.as_deref().map_or(Rstr::na(), Rstr::from)).collect::<Strings>()
        )
        .into(),
        Err(e) => err(&e),
    }
}

/// The R loop begins task `id`: its timeout runs from now. FALSE if it was
/// cancelled meanwhile (skip it and end it as interrupted).
#[extendr]
fn rs_worker_begin(x: Robj, id: &str) -> Robj {
    let mut w = wkr!(x);
    w.as_mut().begin(id).into()
}

/// The R loop ended task `id`: `outcome` says what its code produced (0 a
/// value, 1 an error, 2 it was interrupted) and `result` is the serialized
/// result, reported with the next step.
#[extendr]
fn rs_worker_end(x: Robj, id: &str, outcome: i32, result: Raw) -> Robj {
    let mut w = wkr!(x);
    match Outcome::from_code(outcome) {
        Some(o) if w.as_ref().is_big(result.len()) => out(w.as_mut().end_big(id, o, result.as_slice())),
        Some(o) => {
            w.as_mut().end(id, o, result.as_slice().to_vec());
            Robj::from(())
        }
        None => err(&Error::Argument(format!("unknown task outcome code {outcome}"))),
    }
}

/// The R loop ended task `id` with `value`, serialized here straight into
/// its record or its chunks, so that no serialized copy of a large value
/// is ever held whole (R's own serialize() would hold two while growing
/// its buffer, then copy it).
#[extendr]
fn rs_worker_end_value(x: Robj, id: &str, outcome: i32, value: Robj) -> Robj {
    let mut w = wkr!(x);
    let Some(o) = Outcome::from_code(outcome) else {
        return err(&Error::Argument(format!("unknown task outcome code {outcome}")));
    };
    let stored = {
        let mut writer = w.as_mut().result_writer(id);
        // on failure the writer holds the error, and finish() returns it
        super::serialize_into(&mut writer, &value);
        writer.finish()
    };
    match stored {
        Ok(crate::big::Stored::Inline(v)) => {
            w.as_mut().end(id, o, v);
            Robj::from(())
        }
        Ok(crate::big::Stored::Big(r)) => {
            w.as_mut().end(id, o, r.encode());
            Robj::from(())
        }
        Err(e) => err(&e),
    }
}

/// Relay a message (a serialized condition) from the running task to whoever
/// waits for it.
#[extendr]
fn rs_worker_relay(x: Robj, message: Raw) -> Robj {
    let mut w = wkr!(x);
    out(w.as_mut().relay(message.as_slice()))
}

/// SIGINTs the side thread has sent so far, and how many of them it sent
/// for the task now running (0 when none is).
#[extendr]
fn rs_worker_signals(x: Robj) -> Robj {
    let w = wkr!(x);
    let (sent, for_task) = w.signals_sent();
    r!([sent as f64, for_task as f64])
}

/// True once a graceful STOP arrived.
#[extendr]
fn rs_worker_stop_requested(x: Robj) -> Robj {
    let w = wkr!(x);
    w.stop_requested().into()
}

/// Arm a deadline `seconds` from now for part of the running task
/// (`Inf`/NULL: none).
#[extendr]
fn rs_worker_deadline(x: Robj, seconds: Robj) -> Robj {
    let w = wkr!(x);
    let d = number(&seconds, "timeout").and_then(|v| protocol::seconds("timeout", v.unwrap_or(f64::INFINITY), true, false));
    match d {
        Ok(d) => {
            w.set_deadline(d);
            Robj::from(())
        }
        Err(e) => err(&e),
    }
}

/// Limit the running task to `seconds` from now (if its own timeout is
/// later or unset).
#[extendr]
fn rs_worker_cap_deadline(x: Robj, seconds: Robj) -> Robj {
    let w = wkr!(x);
    match number(&seconds, "timelimit").and_then(|v| protocol::seconds("timelimit", v.unwrap_or(f64::INFINITY), true, false)) {
        Ok(Some(d)) => {
            w.cap_deadline(d);
            Robj::from(())
        }
        Ok(None) => Robj::from(()),
        Err(e) => err(&e),
    }
}

/// Record the running task's progress; FALSE when no task runs.
#[extendr]
fn rs_worker_progress(x: Robj, value: Raw) -> Robj {
    let mut w = wkr!(x);
    out(w.as_mut().progress(value.as_slice()))
}

/// Record what the running task printed; FALSE when no task runs.
#[extendr]
fn rs_worker_log(x: Robj, text: Raw) -> Robj {
    let mut w = wkr!(x);
    out(w.as_mut().log(text.as_slice()))
}

/// Offload values over `threshold` bytes to the directory `path` (NULL:
/// do not).
#[extendr]
fn rs_worker_offload(x: Robj, path: Nullable<String>, threshold: f64) -> Robj {
    let mut w = wkr!(x);
    w.as_mut().set_offload(offload(path, threshold));
    Robj::from(())
}


/// A shared object's serialization (a raw vector).
#[extendr]
fn rs_worker_object(x: Robj, sha: &str) -> Robj {
    let mut w = wkr!(x);
    match w.as_mut().object(sha) {
        Ok(v) => Raw::from_bytes(&v).into(),
        Err(e) => err(&e),
    }
}

/// Add an event to this worker's log.
#[extendr]
fn rs_worker_event(x: Robj, text: &str) -> Robj {
    let mut w = wkr!(x);
    out(w.as_mut().event(text))
}

/// Messages waiting for this R thread: list(id, command, args), or NULL.
#[extendr]
fn rs_worker_messages(x: Robj) -> Robj {
    let w = wkr!(x);
    let m = w.take_messages();
    if m.is_empty() {
        return Robj::from(()); // the common case: nothing to build
    }
    list!(
        id = m.iter().map(|(i, _, _)| i.as_str()).collect::<Strings>(),
        command = m.iter().map(|(_, c, _)| c.as_str()).collect::<Strings>(),
        args = super::raw_list(m.iter().map(|(_, _, a)| Some(a)))
    )
    .into()
}

/// Reply to a message (an R serialization).
#[extendr]
fn rs_worker_respond(x: Robj, mid: &str, reply: Raw) -> Robj {
    let mut w = wkr!(x);
    out(w.as_mut().respond(mid, reply.as_slice()))
}

/// A PAUSE message holds this worker.
#[extendr]
fn rs_worker_paused(x: Robj) -> Robj {
    let w = wkr!(x);
    w.paused().into()
}

/// True if the running task's interrupt was a timeout, now handled.
#[extendr]
fn rs_worker_take_timeout(x: Robj) -> Robj {
    let w = wkr!(x);
    w.take_timeout().into()
}

/// A value of the namespace (NULL if unset), on the worker's connection.
#[extendr]
fn rs_worker_data_get(x: Robj, name: &str) -> Robj {
    let mut w = wkr!(x);
    out(w.as_mut().data_get(name).map(super::raw_or_null))
}

/// A job's environment (NULL if gone), or the address of the shared
/// object it is stored as.
#[extendr]
fn rs_worker_job_env(x: Robj, job: &str) -> Robj {
    let mut w = wkr!(x);
    out(w.as_mut().job_env(job).map(|e| match e {
        Some(crate::worker::JobEnv::Value(v)) => super::raw_or_null(Some(v)),
        Some(crate::worker::JobEnv::Object(sha)) => sha.into(),
        None => ().into(),
    }))
}

/// Leave the namespace.
#[extendr]
fn rs_worker_exit(x: Robj) -> Robj {
    let mut w = wkr!(x);
    out(w.as_mut().exit(status::EXIT_NORMAL))
}

/// Wait up to `timeout` seconds for `n` live workers (serving `queue`, if
/// given): list(reached, found).
#[extendr]
fn rs_worker_wait(x: Robj, n: f64, queue: Nullable<String>, timeout: Robj, patience: Robj) -> Robj {
    let queue = match queue {
        Nullable::NotNull(q) => Some(q),
        Nullable::Null => None,
    };
    let n = match protocol::count("n", n, 0, u32::MAX as u64, false) {
        Ok(n) => n.unwrap_or(0) as usize,
        Err(e) => return err(&e),
    };
    super::wait_until_robj(&x, crate::engine::Until::Workers { n, queue }, &timeout, &patience)
}

/// Registered worker ids.
#[extendr]
fn rs_worker_list(x: Robj) -> Robj {
    with_ctl(&x, |c| registry::list(&mut c.conn, &c.keys).map(|v| v.into_iter().collect::<Strings>()))
}

/// Each worker's record: a list of lists of its fields (strings), with
/// `status` (MISSING for unknown ids) and `alive` (logical).
#[extendr]
fn rs_worker_info(x: Robj, ids: Strings) -> Robj {
    with_ctl(&x, |c| {
        registry::info(&mut c.conn, &c.keys, &strs(&ids)).map(|v| {
            List::from_values(v.iter().map(|w| {
                let mut pairs: Vec<(&str, Robj)> =
                    w.fields.iter().filter(|(k, _)| k != "status").map(|(k, v)| (k.as_str(), Robj::from(v.as_str()))).collect();
                pairs.push(("status", w.status().into()));
                pairs.push(("alive", w.alive.into()));
                pairs.push(("state", status::worker_phase(w.status(), w.get("how").unwrap_or(""), w.alive).into()));
                Robj::from(List::from_pairs(pairs))
            }))
        })
    })
}

/// Tell workers to stop after their current task, or (`kill`) at once.
#[extendr]
fn rs_worker_signal(x: Robj, ids: Strings, kill: bool) -> Robj {
    with_ctl(&x, |c| registry::signal(&mut c.conn, &c.keys, &strs(&ids), if kill { Signal::Kill } else { Signal::Stop }))
}

extendr_module! {
    mod worker;
    fn rs_worker_start;
    fn rs_worker_id;
    fn rs_private_queue;
    fn rs_worker_step;
    fn rs_worker_begin;
    fn rs_worker_end;
    fn rs_worker_end_value;
    fn rs_worker_relay;
    fn rs_worker_stop_requested;
    fn rs_worker_signals;
    fn rs_worker_deadline;
    fn rs_worker_take_timeout;
    fn rs_worker_cap_deadline;
    fn rs_worker_messages;
    fn rs_worker_progress;
    fn rs_worker_log;
    fn rs_worker_event;
    fn rs_worker_object;
    fn rs_worker_offload;
    fn rs_worker_respond;
    fn rs_worker_paused;
    fn rs_worker_job_env;
    fn rs_worker_data_get;
    fn rs_worker_exit;
    fn rs_worker_list;
    fn rs_worker_wait;
    fn rs_worker_info;
    fn rs_worker_signal;
}
