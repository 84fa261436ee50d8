//! Argument checks R runs before values travel elsewhere than into a
//! binding (to a worker process through its environment, for example):
//! the same checks the bindings apply, so bounds live in `protocol` only.

use super::{number, out};
use crate::error::Result;
use crate::protocol;
use extendr_api::prelude::*;

fn required(x: &Robj, name: &str) -> Result<f64> {
    number(x, name)?.ok_or_else(|| crate::error::Error::Argument(format!("'{name}' must be a single number, not NULL")))
}

/// A number of seconds, checked: returns it (Inf for none), or an error.
#[extendr]
fn rs_arg_seconds(x: Robj, name: &str, none_ok: bool, zero_ok: bool) -> Robj {
    out(required(&x, name)
        .and_then(|v| protocol::seconds(name, v, none_ok, zero_ok))
        .map(|d| d.map_or(f64::INFINITY, |d| d.as_secs_f64())))
}

/// A whole number from 1 to the protocol's limit for `name`, checked:
/// returns it (Inf for no limit when `none_ok`), or an error.
#[extendr]
fn rs_arg_count(x: Robj, name: &str, none_ok: bool) -> Robj {
    out(required(&x, name)
        .and_then(|v| protocol::count(name, v, 1, protocol::count_limit(name), none_ok))
        .map(|c| c.map_or(f64::INFINITY, |c| c as f64)))
}

/// A heartbeat period and lease (seconds, checked) that fit together.
#[extendr]
fn rs_arg_lease(heartbeat: f64, lease: f64) -> Robj {
    let d = |x: f64| std::time::Duration::try_from_secs_f64(x).unwrap_or_default();
    out(protocol::check_lease(d(heartbeat), d(lease)))
}

/// The defaults of `protocol::DEFAULTS`, as a named numeric vector.
#[extendr]
fn rs_arg_defaults() -> Robj {
    let mut v: Robj = protocol::DEFAULTS.iter().map(|(_, x)| *x).collect::<Vec<f64>>().into();
    let _ = v.set_names(protocol::DEFAULTS.iter().map(|(n, _)| *n).collect::<Vec<&str>>());
    v
}

extendr_module! {
    mod arg;
    fn rs_arg_defaults;
    fn rs_arg_seconds;
    fn rs_arg_count;
    fn rs_arg_lease;
}
