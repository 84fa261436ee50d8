//! Controller handles: open, close, reaper, lost-worker events, raw commands, user data.

use super::out;
use crate::config::Config;
use crate::controller::Controller;
use crate::monitor;
use extendr_api::prelude::*;

macro_rules! ctl {
    ($x:expr) => {
        match $crate::bindings::ptr::<$crate::controller::Controller>(&$x, "controller") {
            Ok(p) => p,
            Err(e) => return e,
        }
    };
}
pub(crate) use ctl;

/// Run `f` on the controller behind `x`. A closed handle, or an error of
/// `f`, comes back as the `redq_rs_error` value R expects.
pub(crate) fn with_ctl<T: Into<Robj>>(x: &Robj, f: impl FnOnce(&mut Controller) -> crate::error::Result<T>) -> Robj {
    match super::ptr::<Controller>(x, "controller") {
        Ok(mut p) => out(f(p.as_mut())),
        Err(e) => e,
    }
}

/// Open a controller connection.
#[extendr]
fn rs_controller_open(url: &str, namespace: &str) -> Robj {
    out(Config::new(url, namespace).and_then(|c| Controller::open(&c)).map(ExternalPtr::new))
}

/// `host:port/db` of the server.
#[extendr]
fn rs_controller_address(x: Robj) -> Robj {
    let c = ctl!(x);
    c.conn.config().address().into()
}

/// Drop the controller's private keys.
#[extendr]
fn rs_controller_close(x: Robj) -> Robj {
    let mut c = ctl!(x);
    out(c.as_mut().close())
}

/// Run the reaper once: list(id, host, requeued, died).
#[extendr]
fn rs_controller_reap(x: Robj) -> Robj {
    with_ctl(&x, |c| monitor::reap(&mut c.conn, &c.keys).map(|lost| lost_robj(&lost)))
}

/// Newest event id, where `rs_controller_lost_since` starts.
#[extendr]
fn rs_controller_events_tail(x: Robj) -> Robj {
    with_ctl(&x, |c| monitor::events_tail(&mut c.conn, &c.keys))
}

/// Workers reported lost after event `since`: list(id, host, requeued,
/// died) with attribute `last`, the id to continue from.
#[extendr]
fn rs_controller_lost_since(x: Robj, since: &str) -> Robj {
    let mut c = ctl!(x);
    let c = c.as_mut();
    match monitor::lost_since(&mut c.conn, &c.keys, since) {
        Ok((lost, last)) => {
            let mut r = lost_robj(&lost);
            let _ = r.set_attrib("last", last);
            r
        }
        Err(e) => super::err(&e),
    }
}

/// Lost workers as list(id, host, requeued, died).
pub(crate) fn lost_robj(lost: &[monitor::LostWorker]) -> Robj {
    list!(
        id = lost.iter().map(|w| w.id.as_str()).collect::<Strings>(),
        host = lost.iter().map(|w| w.host.as_str()).collect::<Strings>(),
        requeued = lost.iter().map(|w| w.requeued as f64).collect::<Vec<f64>>(),
        died = lost.iter().map(|w| w.died as f64).collect::<Vec<f64>>()
    )
    .into()
}

/// Run one Redis command given as strings; the reply as an R value. For
/// administration and tests.
#[extendr]
fn rs_controller_command(x: Robj, args: Strings) -> Robj {
    let mut c = ctl!(x);
    let args = super::strs(&args);
    let Some((name, rest)) = args.split_first() else {
        return super::err(&crate::error::Error::Argument("no command given".into()));
    };
    let mut cmd = redis::cmd(name);
    for a in rest {
        cmd.arg(a);
    }
    out(c.as_mut().conn.run(|k| cmd.query::<redis::Value>(k)).map(value))
}

fn value(v: redis::Value) -> Robj {
    use redis::Value as V;
    match v {
        V::Nil => ().into(),
        V::Int(i) => (i as f64).into(),
        V::BulkString(b) => String::from_utf8_lossy(&b).into_owned().into(),
        V::SimpleString(s) => s.into(),
        V::Okay => "OK".into(),
        V::Array(a) | V::Set(a) => List::from_values(a.into_iter().map(value)).into(),
        V::Double(d) => d.into(),
        V::Boolean(b) => b.into(),
        other => format!("{other:?}").into(),
    }
}

/// Store a user value under the namespace's data prefix.
#[extendr]
fn rs_controller_data_set(x: Robj, key: &str, value: Raw) -> Robj {
    with_ctl(&x, |c| {
        let k = c.keys.data(key);
        c.conn.run(|r| redis::cmd("SET").arg(&k).arg(value.as_slice()).query::<()>(r))
    })
}

/// Fetch a user value (NULL if absent).
#[extendr]
fn rs_controller_data_get(x: Robj, key: &str) -> Robj {
    with_ctl(&x, |c| {
        let k = c.keys.data(key);
        c.conn.run(|r| redis::cmd("GET").arg(&k).query::<Option<Vec<u8>>>(r)).map(|v| match v {
            Some(b) => Raw::from_bytes(&b).into(),
            None => Robj::from(()),
        })
    })
}

/// Delete a user value.
#[extendr]
fn rs_controller_data_delete(x: Robj, key: &str) -> Robj {
    with_ctl(&x, |c| {
        let k = c.keys.data(key);
        c.conn.run(|r| redis::cmd("DEL").arg(&k).query::<()>(r))
    })
}

extendr_module! {
    mod controller;
    fn rs_controller_open;
    fn rs_controller_address;
    fn rs_controller_close;
    fn rs_controller_reap;
    fn rs_controller_events_tail;
    fn rs_controller_lost_since;
    fn rs_controller_command;
    fn rs_controller_data_set;
    fn rs_controller_data_get;
    fn rs_controller_data_delete;
}
