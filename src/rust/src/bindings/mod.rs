//! The boundary to R, and the only code that uses extendr. Functions are
//! named `rs_<noun>_<verb>` and called only from the R file of that noun.
//!
//! Errors do not cross as R errors (extendr would turn them into panics):
//! a failing call returns a `redq_rs_error` list (kind, message) that the
//! R helper `rs_check()` turns into a classed `redq_error_<kind>` condition.

use crate::error::Error;
use extendr_api::prelude::*;
use std::os::raw::{c_int, c_void};

pub mod controller;
pub mod job;
pub mod queue;
pub mod task;
pub mod worker;

/// Convert a core result for R.
pub(crate) fn out<T: Into<Robj>>(r: crate::error::Result<T>) -> Robj {
    match r {
        Ok(v) => v.into(),
        Err(e) => err(&e),
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
pub(crate) fn raws(x: &List) -> crate::error::Result<Vec<Vec<u8>>> {
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

/// A timeout in seconds from R: NA, NULL or Inf mean none.
pub(crate) fn seconds(x: f64) -> Option<std::time::Duration> {
    if x.is_finite() && x >= 0.0 {
        Some(std::time::Duration::from_secs_f64(x))
    } else {
        None
    }
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

extendr_module! {
    mod bindings;
    use controller;
    use task;
    use queue;
    use worker;
    use job;
}
