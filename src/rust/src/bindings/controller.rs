//! Controller handles: open, close, reaper, raw commands, user data.

use super::{err, lost_robj, out, strs, with_ctl};
use crate::config::Config;
use crate::controller::Controller;
use crate::monitor;
use extendr_api::prelude::*;


/// Open a controller connection; `secret` seals what it writes and opens
/// what it reads (NULL: `REDQ_SECRET`'s, if set).
#[extendr]
fn rs_controller_open(url: &str, namespace: &str, secret: Nullable<String>) -> Robj {
    out(Config::new(url, namespace)
        .and_then(|c| Controller::open(&c.with_secret(super::secret::given(&secret))))
        .map(ExternalPtr::new))
}

/// Offload values over `threshold` bytes to the directory `path` (NULL:
/// do not).
#[extendr]
fn rs_controller_offload(x: Robj, path: Nullable<String>, threshold: f64) -> Robj {
    with_ctl(&x, |c| {
        c.conn.set_offload(super::offload(path, threshold));
        Ok(())
    })
}

/// `host:port/db` of the server.
#[extendr]
fn rs_controller_address(x: Robj) -> Robj {
    with_ctl(&x, |c| Ok(c.conn.config().address()))
}

/// Drop the controller's private keys.
#[extendr]
fn rs_controller_close(x: Robj) -> Robj {
    with_ctl(&x, |c| c.close())
}

/// Run the reaper once: list(id, host, requeued, died, message).
#[extendr]
fn rs_controller_reap(x: Robj) -> Robj {
    with_ctl(&x, |c| monitor::reap(&mut c.conn, &c.keys, std::time::Duration::ZERO).map(|lost| lost_robj(&lost)))
}



/// Run one Redis command given as strings; the reply as an R value. For
/// administration and tests.
#[extendr]
fn rs_controller_command(x: Robj, args: Strings) -> Robj {
    with_ctl(&x, |c| c.command(&strs(&args)).map(value))
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
    with_ctl(&x, |c| c.data_set(key, value.as_slice()))
}

/// Fetch a user value (NULL if absent).
#[extendr]
fn rs_controller_data_get(x: Robj, key: &str) -> Robj {
    with_ctl(&x, |c| {
        c.data_get(key).map(super::raw_or_null)
    })
}

/// Set a key the user names (outside the namespace).
#[extendr]
fn rs_redis_set(x: Robj, key: &str, value: Raw) -> Robj {
    with_ctl(&x, |c| c.raw_set(key, value.as_slice()))
}

/// Get a key the user names (NULL if absent).
#[extendr]
fn rs_redis_get(x: Robj, key: &str) -> Robj {
    with_ctl(&x, |c| {
        c.raw_get(key).map(super::raw_or_null)
    })
}

/// INCRBY a key the user names; the new value.
#[extendr]
fn rs_redis_incr_by(x: Robj, key: &str, by: f64) -> Robj {
    if !(by.is_finite() && by == by.trunc() && by.abs() < 9.0e15) {
        return err(&crate::error::Error::Argument("'value' must be a whole number".into()));
    }
    with_ctl(&x, |c| c.raw_incr_by(key, by as i64).map(|n| n as f64))
}

/// Delete keys the user names; how many there were.
#[extendr]
fn rs_redis_delete(x: Robj, keys: Strings) -> Robj {
    with_ctl(&x, |c| c.raw_delete(&strs(&keys)).map(|n| n as f64))
}

/// Send a message to workers; returns its id.
#[extendr]
fn rs_message_send(x: Robj, workers: Strings, command: &str, args: Raw) -> Robj {
    with_ctl(&x, |c| c.message_send(&strs(&workers), command, args.as_slice()))
}

/// Replies to a message so far: list(worker, reply) (replies raw).
#[extendr]
fn rs_message_responses(x: Robj, mid: &str) -> Robj {
    with_ctl(&x, |c| {
        c.message_responses(mid).map(|v| -> Robj {
            list!(
                worker = v.iter().map(|(w, _)| w.as_str()).collect::<Strings>(),
                reply = super::raw_list(v.iter().map(|(_, r)| Some(r)))
            )
            .into()
        })
    })
}

/// Delete every key of the namespace; returns how many.
#[extendr]
fn rs_controller_destroy(x: Robj) -> Robj {
    with_ctl(&x, |c| c.destroy().map(|n| n as f64))
}


/// Nested Redis replies as R values: arrays become lists, integers
/// numbers, text character strings and anything else (serialized R) raw
/// vectors.
fn value_robj(v: &redis::Value) -> Robj {
    match v {
        redis::Value::Array(items) => List::from_values(items.iter().map(value_robj)).into(),
        redis::Value::Int(i) => (*i as f64).into(),
        redis::Value::BulkString(b) => match std::str::from_utf8(b) {
            Ok(s) if !b.contains(&0) => s.into(),
            _ => Raw::from_bytes(b).into(),
        },
        redis::Value::SimpleString(s) => s.as_str().into(),
        _ => ().into(),
    }
}

/// The dashboard's picture of the namespace (`Controller::snapshot`).
#[extendr]
fn rs_controller_snapshot(x: Robj, recent: f64, failures: f64) -> Robj {
    with_ctl(&x, |c| c.snapshot(recent as usize, failures as usize).map(|v| value_robj(&v)))
}

/// The last `n` events of each worker's log (a list of character vectors).
#[extendr]
fn rs_worker_log_tail(x: Robj, ids: Strings, n: f64) -> Robj {
    let ids = super::strs(&ids);
    with_ctl(&x, |c| {
        c.worker_log(&ids, n as usize).map(|v| List::from_values(v.iter().map(|l| l.iter().map(|s| s.as_str()).collect::<Strings>())))
    })
}

/// Fetch several user values (a list: raw vectors, NULL where unset).
#[extendr]
fn rs_controller_data_mget(x: Robj, keys: Strings) -> Robj {
    let names = super::strs(&keys);
    with_ctl(&x, |c| c.data_get_many(&names).map(|v| super::raw_list(v.iter().map(|b| b.as_ref()))))
}

/// Delete a user value.
#[extendr]
fn rs_controller_data_delete(x: Robj, key: &str) -> Robj {
    with_ctl(&x, |c| c.data_delete(key))
}

extendr_module! {
    mod controller;
    fn rs_controller_open;
    fn rs_controller_address;
    fn rs_controller_offload;
    fn rs_controller_close;
    fn rs_controller_reap;
    fn rs_controller_command;
    fn rs_controller_data_set;
    fn rs_controller_data_get;
    fn rs_controller_data_mget;
    fn rs_controller_destroy;
    fn rs_controller_snapshot;
    fn rs_worker_log_tail;
    fn rs_message_send;
    fn rs_message_responses;
    fn rs_redis_set;
    fn rs_redis_get;
    fn rs_redis_incr_by;
    fn rs_redis_delete;
    fn rs_controller_data_delete;
}
