//! The boundary to R, and the only code that uses extendr. Functions are
//! named `rs_<noun>_<verb>` and called only from the R file of that noun.
//! They translate between R values and core types and nothing else.
//!
//! Errors do not cross as R errors (extendr would turn them into panics):
//! a failing call returns a `redq_rs_error` list (kind, message) that the
//! R helper `rs_check()` turns into a classed `redq_error_<kind>` condition.

use crate::controller::Controller;
use crate::engine::JobOptions;
use crate::error::{Error, Result};
use crate::{monitor, protocol, status};
use extendr_api::prelude::*;
use std::os::raw::{c_int, c_void};

pub mod arg;
pub mod controller;
pub mod error;
pub mod job;
pub mod queue;
pub mod rng;
pub mod secret;
pub mod server;
pub mod task;
pub mod worker;

/// Convert a core result for R.
pub(crate) fn out<T: Into<Robj>>(r: Result<T>) -> Robj {
    match r {
        Ok(v) => v.into(),
        Err(e) => err(&e),
    }
}

/// An optional byte string as R sees it: a raw vector, or NULL.
pub(crate) fn raw_or_null(v: Option<Vec<u8>>) -> Robj {
    match v {
        Some(b) => Raw::from_bytes(&b).into(),
        None => Robj::from(()),
    }
}

/// A core error as the `redq_rs_error` value R expects.
pub(crate) fn err(e: &Error) -> Robj {
    let mut l = list!(kind = e.kind(), message = e.to_string());
    let _ = l.set_class(["redq_rs_error"]);
    l.into()
}

/// Borrow the Rust object behind an external pointer made by this package.
pub(crate) fn ptr<T: 'static>(x: &Robj, what: &str) -> std::result::Result<ExternalPtr<T>, Robj> {
    ExternalPtr::<T>::try_from(x).map_err(|_| {
        err(&Error::Argument(format!(
            "this {what} is closed or comes from another session; create a new one"
        )))
    })
}

/// Raw vectors of an R list, as bytes.
pub(crate) fn raws(x: &List) -> Result<Vec<Vec<u8>>> {
    x.values()
        .map(|v| match Raw::try_from(v) {
            Ok(r) => Ok(r.as_slice().to_vec()),
            Err(_) => Err(Error::Argument("payloads must be raw vectors".into())),
        })
        .collect()
}

/// A character vector as owned strings.
pub(crate) fn strs(x: &Strings) -> Vec<String> {
    x.iter().map(|s| s.to_string()).collect()
}

/// One number from R: `NULL` gives None; NA gives NaN (which the checks
/// in `protocol` refuse with a message naming the argument).
pub(crate) fn number(x: &Robj, name: &str) -> Result<Option<f64>> {
    if x.is_null() {
        return Ok(None);
    }
    let bad = || Error::Argument(format!("'{name}' must be a single number"));
    if x.len() != 1 {
        return Err(bad());
    }
    if let Some(v) = x.as_real_slice() {
        return Ok(Some(v[0]));
    }
    if let Some(v) = x.as_integer_slice() {
        return Ok(Some(if v[0] == i32::MIN { f64::NAN } else { v[0] as f64 }));
    }
    if x.is_na() {
        return Ok(Some(f64::NAN));
    }
    Err(bad())
}

/// Numbers from R (a numeric vector of any length).
pub(crate) fn numbers(x: &Robj, name: &str) -> Result<Vec<f64>> {
    if x.is_null() {
        return Ok(vec![]);
    }
    if let Some(v) = x.as_real_slice() {
        return Ok(v.to_vec());
    }
    if let Some(v) = x.as_integer_slice() {
        return Ok(v.iter().map(|&i| if i == i32::MIN { f64::NAN } else { i as f64 }).collect());
    }
    Err(Error::Argument(format!("'{name}' must be numeric")))
}

/// A list of raw vectors (NULL where absent) for R.
pub(crate) fn raw_list<'a>(items: impl ExactSizeIterator<Item = Option<&'a Vec<u8>>>) -> List {
    List::from_values(items.map(|r| match r {
        Some(b) => Raw::from_bytes(b).into(),
        None => Robj::from(()),
    }))
}

extern "C" {
    fn R_ToplevelExec(fun: Option<unsafe extern "C" fn(*mut c_void)>, data: *mut c_void) -> c_int;
    fn R_CheckUserInterrupt();
}

unsafe extern "C" fn check_interrupt(_: *mut c_void) {
    R_CheckUserInterrupt();
}

/// True if the user pressed Ctrl+C. The check runs inside R_ToplevelExec,
/// so R's longjmp on an interrupt stops there instead of skipping Rust
/// destructors; the caller returns to R, which re-raises the interrupt.
pub(crate) fn interrupted() -> bool {
    unsafe { R_ToplevelExec(Some(check_interrupt), std::ptr::null_mut()) == 0 }
}

/// A progress hook calling an R function `f(done, total)`, or nothing for
/// NULL. The function runs inside R_tryEval: an error in it is printed and
/// the wait goes on. It must not call redq on the same controller.
pub(crate) fn progress_hook(f: &Robj) -> impl FnMut(usize, usize) + '_ {
    move |done: usize, total: usize| {
        if let Some(func) = f.as_function() {
            let _ = func.call(pairlist!(done as f64, total as f64));
        }
    }
}

/// Run `f` on the controller behind `x`. A closed handle, or an error of
/// `f`, comes back as the `redq_rs_error` value R expects.
pub(crate) fn with_ctl<T: Into<Robj>>(x: &Robj, f: impl FnOnce(&mut Controller) -> crate::error::Result<T>) -> Robj {
    match ptr::<Controller>(x, "controller") {
        Ok(mut p) => out(f(p.as_mut())),
        Err(e) => e,
    }
}

/// Workers found lost while waiting: NULL for none (the common case, which
/// then allocates nothing in R), else as `lost_robj`.
pub(crate) fn lost_or_null(lost: &[monitor::LostWorker]) -> Robj {
    if lost.is_empty() {
        Robj::from(())
    } else {
        lost_robj(lost)
    }
}

pub(crate) fn offload(path: Nullable<String>, threshold: f64) -> Option<crate::config::Offload> {
    match path {
        Nullable::NotNull(p) => Some(crate::config::Offload { path: p.into(), threshold: threshold.max(0.0) as usize }),
        Nullable::Null => None,
    }
}

/// Ended tasks as list(id, status, exists, done, completed, result,
/// message, tag).
pub(crate) fn ended_robj(v: &[crate::tasks::Ended]) -> Robj {
    list!(
        id = v.iter().map(|e| e.id.as_str()).collect::<Strings>(),
        status = v.iter().map(|e| e.status.as_str()).collect::<Strings>(),
        exists = v.iter().map(|e| e.exists()).collect::<Logicals>(),
        done = v.iter().map(|e| e.done()).collect::<Logicals>(),
        completed = v.iter().map(|e| e.completed()).collect::<Logicals>(),
        died = v.iter().map(|e| e.status == status::DIED).collect::<Logicals>(),
        result = raw_list(v.iter().map(|e| e.result.as_ref())),
        message = v.iter().map(|e| if e.result.is_some() { String::new() } else { e.message() }).collect::<Strings>(),
        refused = v.iter().map(|e| e.refused.is_some()).collect::<Logicals>(),
        tag = v.iter().map(|e| e.tag.unwrap_or(f64::NAN)).collect::<Vec<f64>>()
    )
    .into()
}

/// A job's options from R values: intervals in seconds (NULL: defaults).
pub(crate) fn job_options(fetch: bool, consume: bool, reap_every: &Robj, check_every: &Robj, patience: &Robj) -> Result<JobOptions> {
    Ok(JobOptions {
        fetch,
        consume,
        relay: false,
        reap_every: secs(reap_every, "redq.reap_interval", protocol::default("reap_interval"))?,
        check_every: secs(check_every, "ftinterval", protocol::default("check_every"))?,
        patience: secs(patience, "redq.reconnect_patience", protocol::default("reconnect_patience"))?,
        ..JobOptions::default()
    })
}

/// Lost workers as list(id, host, requeued, died, message).
pub(crate) fn lost_robj(lost: &[monitor::LostWorker]) -> Robj {
    list!(
        id = lost.iter().map(|w| w.id.as_str()).collect::<Strings>(),
        host = lost.iter().map(|w| w.host.as_str()).collect::<Strings>(),
        requeued = lost.iter().map(|w| w.requeued as f64).collect::<Vec<f64>>(),
        died = lost.iter().map(|w| w.died as f64).collect::<Vec<f64>>(),
        message = lost.iter().map(|w| w.describe()).collect::<Strings>()
    )
    .into()
}

pub(crate) fn secs(x: &Robj, name: &str, default: f64) -> Result<std::time::Duration> {
    let v = number(x, name)?.unwrap_or(default);
    Ok(protocol::seconds(name, v, false, false)?.unwrap_or_default())
}

/// Wait for `until` on the controller behind `x` (see `engine::until`):
/// list(reached, found), or an error value (interrupt, connection).
pub(crate) fn wait_until_robj(x: &Robj, until: crate::engine::Until, timeout: &Robj, patience: &Robj) -> Robj {
    with_ctl(x, |c| {
        let timeout = protocol::seconds("timeout", number(timeout, "timeout")?.unwrap_or(f64::INFINITY), true, true)?;
        let patience = secs(patience, "redq.reconnect_patience", protocol::default("reconnect_patience"))?;
        let (mut check, mut quiet) = (interrupted, |_: usize, _: usize| {});
        let mut hooks = crate::engine::Hooks { interrupted: &mut check, progress: &mut quiet, workers: None };
        let (reached, found) = crate::engine::wait_until(&mut c.conn, &c.keys, &until, timeout, patience, &mut hooks)?;
        Ok(list!(reached = reached, found = found as f64))
    })
}

/// The worker processes a session started, as R keeps them (R/worker.R):
/// `x` is NULL, or list(ended = function() list(id, why), replace =
/// function(ids)). The functions run inside R_tryEval, like the progress
/// hook, and must not call redq on the waiting controller.
pub(crate) struct RWorkers<'a>(&'a Robj);

impl<'a> RWorkers<'a> {
    pub(crate) fn from(x: &'a Robj) -> Option<RWorkers<'a>> {
        x.as_list().is_some().then_some(RWorkers(x))
    }

    fn function(&self, name: &str) -> Option<Function> {
        self.0.as_list()?.iter().find(|(k, _)| *k == name).and_then(|(_, v)| v.as_function())
    }
}

impl crate::engine::LocalWorkers for RWorkers<'_> {
    fn ended(&mut self) -> Vec<(String, String)> {
        let Some(f) = self.function("ended") else { return vec![] };
        let Ok(r) = f.call(pairlist!()) else { return vec![] };
        let field = |name: &str| -> Vec<String> {
            r.as_list()
                .and_then(|l| l.iter().find(|(k, _)| *k == name).map(|(_, v)| v))
                .and_then(|v| v.as_str_vector().map(|s| s.iter().map(|x| x.to_string()).collect()))
                .unwrap_or_default()
        };
        field("id").into_iter().zip(field("why")).collect()
    }

    fn replace(&mut self, ids: &[String]) {
        if let (Some(f), false) = (self.function("replace"), ids.is_empty()) {
            let _ = f.call(pairlist!(ids.iter().map(|s| s.as_str()).collect::<Strings>()));
        }
    }
}

/// When a wait tells its caller that no live worker serves its queues,
/// and when it fails: c(warn, error) in seconds (NA or Inf: never).
pub(crate) fn starve_options(x: &Robj) -> Result<(Option<std::time::Duration>, Option<std::time::Duration>)> {
    let v = numbers(x, "starve")?;
    let at = |i: usize| -> Result<Option<std::time::Duration>> {
        match v.get(i) {
            Some(s) if s.is_finite() => crate::protocol::seconds("starve", *s, false, false),
            _ => Ok(None),
        }
    };
    Ok((at(0)?, at(1)?))
}

/// R's serialize(x, xdr = FALSE), written to `w` as it is produced.
/// False if R failed (a value nested too deeply, a connection it cannot
/// serialize): the error is caught inside `R_ToplevelExec`, so it never
/// unwinds through Rust frames, and what `w` holds must be dropped.
pub(crate) fn serialize_into(w: &mut crate::big::Writer<'_>, x: &Robj) -> bool {
    use extendr_ffi::{R_NilValue, R_Serialize, R_outpstream_st, R_outpstream_t, R_pstream_format_t};
    use std::os::raw::{c_int, c_void};
    unsafe extern "C" fn out_char(s: R_outpstream_t, c: c_int) {
        let w = &mut *((*s).data as *mut crate::big::Writer<'_>);
        w.push(&[c as u8]);
    }
    unsafe extern "C" fn out_bytes(s: R_outpstream_t, buf: *mut c_void, n: c_int) {
        let w = &mut *((*s).data as *mut crate::big::Writer<'_>);
        w.push(std::slice::from_raw_parts(buf as *const u8, n as usize));
    }
    struct Job<'a, 'b> {
        w: &'a mut crate::big::Writer<'b>,
        x: extendr_ffi::SEXP,
    }
    unsafe extern "C" fn run(data: *mut c_void) {
        let job = &mut *(data as *mut Job<'_, '_>);
        let mut stream = R_outpstream_st {
            data: job.w as *mut crate::big::Writer<'_> as *mut c_void,
            type_: R_pstream_format_t::R_pstream_binary_format,
            version: 3,
            OutChar: Some(out_char),
            OutBytes: Some(out_bytes),
            OutPersistHookFunc: None,
            OutPersistHookData: R_NilValue,
        };
        R_Serialize(job.x, &mut stream);
    }
    let mut job = Job { w, x: unsafe { x.get() } };
    let ok = unsafe { R_ToplevelExec(Some(run), &mut job as *mut Job<'_, '_> as *mut c_void) != 0 };
    if !ok {
        let why = extendr_api::eval_string("geterrmessage()")
            .ok()
            .and_then(|m| m.as_str().map(|s| s.trim().to_string()))
            .unwrap_or_default();
        job.w.fail(Error::Argument(format!("R could not serialize the value: {why}")));
    }
    ok
}

extendr_module! {
    mod bindings;
    use arg;
    use controller;
    use error;
    use task;
    use queue;
    use worker;
    use job;
    use rng;
    use secret;
    use server;
}
