//! Queues.

use super::with_ctl;
use crate::queue;
use extendr_api::prelude::*;

/// PENDING tasks of a queue.
#[extendr]
fn rs_queue_length(x: Robj, queue: &str) -> Robj {
    with_ctl(&x, |c| queue::length(&mut c.conn, &c.keys, queue).map(|n| n as f64))
}

/// Ids waiting in a queue, next first.
#[extendr]
fn rs_queue_tasks(x: Robj, queue: &str) -> Robj {
    with_ctl(&x, |c| queue::waiting(&mut c.conn, &c.keys, queue).map(|v| v.into_iter().collect::<Strings>()))
}

/// Known queue names.
#[extendr]
fn rs_queue_list(x: Robj) -> Robj {
    with_ctl(&x, |c| queue::list(&mut c.conn, &c.keys).map(|v| v.into_iter().collect::<Strings>()))
}

/// Remove a queue, cancelling its PENDING tasks; returns how many.
#[extendr]
fn rs_queue_remove(x: Robj, queue: &str) -> Robj {
    with_ctl(&x, |c| queue::remove(&mut c.conn, &c.keys, queue).map(|n| n as f64))
}

extendr_module! {
    mod queue;
    fn rs_queue_length;
    fn rs_queue_tasks;
    fn rs_queue_list;
    fn rs_queue_remove;
}
