//! The job engine (`engine::Job`), for the R front ends, and the
//! namespace's job listing.

use super::{lost_or_null, with_ctl};
use super::ended_robj;
use super::{err, interrupted, number, numbers, progress_hook, raws, starve_options, strs, RWorkers};
use crate::controller::Controller;
use crate::engine::{self, Hooks, Job, JobOptions, Want};
use crate::error::{Error, Result};
use crate::protocol;
use crate::rng::Stream;
use crate::task::TaskSpec;
use super::job_options;
use extendr_api::prelude::*;

/// Run `f` on the controller behind `x` and the job behind `j`.
fn with_job<T: Into<Robj>>(x: &Robj, j: &Robj, f: impl FnOnce(&mut Controller, &mut Job) -> Result<T>) -> Robj {
    let mut job = match super::ptr::<Job>(j, "job") {
        Ok(p) => p,
        Err(e) => return e,
    };
    with_ctl(x, |c| f(c, job.as_mut()))
}



/// Open a job. `fetch`: results come with each ended task; `consume`: the
/// job deletes its tasks once received; `relay`: waits also hand back the
/// messages running tasks relay; `register`: its tasks are listed in the
/// namespace's task list; `starve`: c(warn, error), seconds after which a
/// wait whose tasks no live worker serves tells its caller, and fails.
/// Intervals in seconds.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_job_open(x: Robj, fetch: bool, consume: bool, relay: bool, register: bool, reap_every: Robj, check_every: Robj, patience: Robj, starve: Robj) -> Robj {
    with_ctl(&x, |c| {
        let (starve_warn, starve_error) = starve_options(&starve)?;
        let opts = JobOptions {
            relay,
            register,
            starve_warn,
            starve_error,
            ..job_options(fetch, consume, &reap_every, &check_every, &patience)?
        };
        Ok(ExternalPtr::new(Job::new(&c.keys, None, opts)))
    })
}

/// The job's id.
#[extendr]
fn rs_job_id(j: Robj) -> Robj {
    match super::ptr::<Job>(&j, "job") {
        Ok(job) => job.id().into(),
        Err(e) => e,
    }
}

/// Upload the job's environment (workers fetch it once per job) and list
/// the job on `queue`.
#[extendr]
fn rs_job_env(x: Robj, j: Robj, env: Raw, queue: &str, shared: bool) -> Robj {
    with_job(&x, &j, |c, job| job.put_env(&mut c.conn, env.as_slice().to_vec(), queue, shared))
}

/// Submit payloads to the job: `timeout`, `max_attempts` (numbers or
/// NULL), `tags` (one number per payload, returned with its result) and
/// `seed` (NULL, or a `.Random.seed` of L'Ecuyer-CMRG: task i gets the
/// stream `tags[i] - 1` streams after it). Returns the new ids.
#[extendr]
fn rs_job_submit(x: Robj, j: Robj, queue: &str, payloads: List, timeout: Robj, max_attempts: Robj, tags: Robj, seed: Robj) -> Robj {
    with_job(&x, &j, |c, job| {
        let mut tasks =
            TaskSpec::batch(queue, raws(&payloads)?, number(&timeout, "timeout")?, number(&max_attempts, "max_attempts")?)?;
        let base = match seed.as_integer_slice() {
            Some(s) => Some(Stream::from_r(s)?),
            None if seed.is_null() => None,
            None => return Err(Error::Argument("'seed' must be an integer .Random.seed".into())),
        };
        crate::task::tag(&mut tasks, &numbers(&tags, "tags")?, base)?;
        let ids: Strings = tasks.iter().map(|t| t.id.as_str()).collect();
        job.submit(&mut c.conn, tasks)?;
        Ok(ids)
    })
}

/// Wait up to `timeout` seconds (NULL or Inf: for ever) for `n` tasks
/// (0: all; NA: any) among `ids` (NULL: all of the job's). Returns the
/// ended tasks (see `ended_robj`), plus `timed_out`, `relayed` (messages
/// of running tasks, for a job that relays), `outstanding` (tasks not yet
/// handed out) and `lost` (workers found lost meanwhile). On an error the
/// lost workers travel as attribute `lost`.
#[extendr]
fn rs_job_wait(x: Robj, j: Robj, n: Robj, ids: Nullable<Strings>, timeout: Robj, progress: Robj, workers: Robj) -> Robj {
    let mut job = match super::ptr::<Job>(&j, "job") {
        Ok(p) => p,
        Err(e) => return e,
    };
    let job = job.as_mut();
    let mut c = match super::ptr::<Controller>(&x, "controller") {
        Ok(p) => p,
        Err(e) => return e,
    };
    let c = c.as_mut();
    let checked = (|| {
        let want = match number(&n, "n")? {
            Some(v) if v.is_nan() => Want::Any,
            Some(v) if v == 0.0 => Want::All,
            Some(v) => Want::Next(protocol::required_count("n", v, 1, u32::MAX as u64)? as usize),
            None => Want::Any,
        };
        let timeout = protocol::seconds("timeout", number(&timeout, "timeout")?.unwrap_or(f64::INFINITY), true, true)?;
        Ok::<_, Error>((want, timeout))
    })();
    let (want, timeout) = match checked {
        Ok(v) => v,
        Err(e) => return err(&e),
    };
    let only = match ids {
        Nullable::NotNull(s) => Some(strs(&s)),
        Nullable::Null => None,
    };
    let (mut check, mut show) = (interrupted, progress_hook(&progress));
    let mut local = RWorkers::from(&workers);
    let mut hooks = Hooks {
        interrupted: &mut check,
        progress: &mut show,
        workers: local.as_mut().map(|w| w as &mut dyn engine::LocalWorkers),
    };
    match job.wait(&mut c.conn, want, only.as_deref(), timeout, &mut hooks) {
        Ok(batch) => {
            let mut r = ended_robj(&batch.ended);
            if let Some(l) = r.as_list() {
                let mut pairs: Vec<(String, Robj)> = l.iter().map(|(k, v)| (k.to_string(), v)).collect();
                pairs.push(("timed_out".into(), batch.timed_out.into()));
                pairs.push(("relayed".into(), relayed_robj(&batch.relayed)));
                pairs.push(("notices".into(), batch.notices.iter().map(|s| s.as_str()).collect::<Strings>().into()));
                pairs.push(("outstanding".into(), (job.outstanding() as f64).into()));
                pairs.push(("lost".into(), lost_or_null(&job.take_lost())));
                r = List::from_pairs(pairs).into();
            }
            r
        }
        Err(e) => {
            let mut r = err(&e);
            let _ = r.set_attrib("lost", lost_or_null(&job.take_lost()));
            r
        }
    }
}

/// Messages relayed by running tasks: NULL for none, else list(id,
/// message = list of raw vectors).
fn relayed_robj(relayed: &[(String, Vec<u8>)]) -> Robj {
    if relayed.is_empty() {
        return Robj::from(());
    }
    list!(
        id = relayed.iter().map(|(id, _)| id.as_str()).collect::<Strings>(),
        message = List::from_values(relayed.iter().map(|(_, m)| Raw::from_bytes(m)))
    )
    .into()
}

/// Cancel the job's outstanding tasks, or those in `ids`; returns how
/// many were still queued or running.
#[extendr]
fn rs_job_cancel(x: Robj, j: Robj, ids: Nullable<Strings>) -> Robj {
    with_job(&x, &j, |c, job| {
        let ids = match ids {
            Nullable::NotNull(s) => Some(strs(&s)),
            Nullable::Null => None,
        };
        job.cancel(&mut c.conn, ids.as_deref()).map(|n| n as f64)
    })
}

/// Remove the job: cancel what is left, delete every key (one script).
#[extendr]
fn rs_job_remove(x: Robj, j: Robj) -> Robj {
    with_job(&x, &j, |c, job| job.remove(&mut c.conn))
}


/// Running jobs: list(id, queue, user, host, pid, started (ms)).
#[extendr]
fn rs_job_list(x: Robj) -> Robj {
    with_ctl(&x, |c| {
        crate::job_list::list(&mut c.conn, &c.keys).map(|v| {
            list!(
                id = v.iter().map(|j| j.id.as_str()).collect::<Strings>(),
                queue = v.iter().map(|j| j.queue.as_str()).collect::<Strings>(),
                user = v.iter().map(|j| j.user.as_str()).collect::<Strings>(),
                host = v.iter().map(|j| j.host.as_str()).collect::<Strings>(),
                pid = v.iter().map(|j| j.pid as f64).collect::<Vec<f64>>(),
                started = v.iter().map(|j| j.started).collect::<Vec<f64>>()
            )
        })
    })
}

/// Cancel a job from any session; returns how many tasks were cancelled.
#[extendr]
fn rs_job_cancel_remote(x: Robj, job_id: &str) -> Robj {
    with_ctl(&x, |c| crate::job_list::cancel(&mut c.conn, &c.keys, job_id).map(|n| n as f64))
}

extendr_module! {
    mod job;
    fn rs_job_open;
    fn rs_job_id;
    fn rs_job_env;
    fn rs_job_submit;
    fn rs_job_wait;
    fn rs_job_cancel;
    fn rs_job_remove;
    fn rs_job_list;
    fn rs_job_cancel_remote;
}
