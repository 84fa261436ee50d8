//! Submitting tasks: one transaction for many (MULTI/EXEC), payloads over
//! the inline limit written to their chunks first, the common part of a bulk
//! submission stored once as a shared object, dependencies linked.


use crate::big;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::protocol::{CONTROL_TTL_S, JOB_TTL_S};
use crate::scripts::{self};
use crate::signature::{self, Purpose};
use crate::status;
use crate::task::TaskSpec;
use std::collections::{BTreeMap, BTreeSet};

/// How a submission is recorded.
#[derive(Clone, Copy, Debug, Default)]
pub struct Submit {
    /// Add the ids to the namespace's task list (task API).
    pub register: bool,
    /// Let the task hashes expire if nobody collects them (tasks of a job
    /// whose controller removes them when it is done).
    pub expire: bool,
}

/// Submit tasks in one atomic pipeline (MULTI/EXEC): either every task is
/// queued or none is. Tasks with dependencies are linked by one script per
/// set of dependencies, inside the same transaction.
pub fn submit(conn: &mut Connection, keys: &Keys, tasks: &[TaskSpec], how: Submit) -> Result<()> {
    submit_sharing(conn, keys, tasks, how, None)
}

/// `submit_sharing`, exactly once across a broken connection (a server
/// restarting or failing over, a killed connection): the submission is one
/// transaction, so after a connection error the first task's record says
/// whether it ran, and only if it did not is it sent again, for up to
/// `patience`.
pub fn submit_once(
    conn: &mut Connection,
    keys: &Keys,
    tasks: &[TaskSpec],
    how: Submit,
    shared: Option<&big::SharedObject>,
    patience: std::time::Duration,
) -> Result<()> {
    let give_up = std::time::Instant::now() + patience;
    loop {
        let e = match submit_sharing(conn, keys, tasks, how, shared) {
            Err(e) if e.is_connection() && !tasks.is_empty() => e,
            done => return done,
        };
        // did it run? asked until the server answers, within the patience
        let left = give_up.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(Error::Connection(format!("{e}; gave up after {:.0} s", patience.as_secs_f64())));
        }
        let first = keys.task(&tasks[0].id);
        if conn.retry(left, |c| redis::cmd("EXISTS").arg(&first).query::<bool>(c))? {
            return Ok(());
        }
    }
}

/// `submit()`, with a shared object (prepared by `big::prepare_shared`)
/// that the tasks' payloads refer to (their `object`): stored, or counted
/// if an earlier upload of the same content is there, in the same
/// transaction.
pub fn submit_sharing(
    conn: &mut Connection,
    keys: &Keys,
    tasks: &[TaskSpec],
    how: Submit,
    shared: Option<&big::SharedObject>,
) -> Result<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    let now = crate::id::now_ms();
    let mut p = redis::pipe();
    p.atomic();
    let secret = conn.config().secret.clone();
    // payloads over the inline limit go in chunks first; the record holds
    // the reference (and, for a task that never expires, they are made
    // permanent with it)
    let mut big_refs: Vec<big::BigRef> = Vec::new();
    let mut sealed: Vec<Vec<u8>> = Vec::with_capacity(tasks.len());
    for t in tasks {
        // a payload already streamed to its chunks (see `big::Writer`): its
        // reference is what gets sealed and stored
        if let Some(r) = big::BigRef::parse(&t.payload) {
            big_refs.push(r);
            sealed.push(signature::seal(secret.as_deref(), Purpose::Payload, &t.id, &t.payload));
            continue;
        }
        let s = signature::seal(secret.as_deref(), Purpose::Payload, &t.id, &t.payload);
        if big::is_big(conn.config(), s.len()) {
            match big::write(conn, keys, &t.id, big::PAYLOAD, &[&s]) {
                Ok(r) => {
                    sealed.push(r.encode());
                    big_refs.push(r);
                }
                Err(e) => {
                    drop_big(conn, keys, &big_refs);
                    give_back(conn, keys, tasks, shared);
                    return Err(e);
                }
            }
        } else {
            sealed.push(s);
        }
    }
    let payloads = p.cmd("HSET").arg(keys.payloads());
    for (t, s) in tasks.iter().zip(&sealed) {
        payloads.arg(&t.id).arg(s);
    }
    payloads.ignore();
    if !how.expire {
        for r in &big_refs {
            for i in 0..r.chunks {
                p.persist(r.key(keys, i)).ignore();
            }
        }
    }
    let mut by_queue: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut by_deps: BTreeMap<Vec<String>, Vec<&str>> = BTreeMap::new();
    if let Some(o) = shared {
        put_object(&mut p, keys, now, o, owners(tasks, o), how.expire);
    }
    for (t, s) in tasks.iter().zip(&sealed) {
        p.cmd("HSET").arg(keys.task(&t.id)).arg(t.fields(now)).ignore();
        if s.starts_with(big::MARK) || t.payload.starts_with(big::MARK) {
            // the scripts that drop the payload look for its chunks
            p.hset(keys.task(&t.id), "pbig", 1).ignore();
        }
        if how.expire {
            p.expire(keys.task(&t.id), JOB_TTL_S as i64).ignore();
        }
        if t.depends_on.is_empty() {
            by_queue.entry(t.queue.as_str()).or_default().push(t.id.as_str());
        } else {
            let mut deps = t.depends_on.clone();
            deps.sort();
            deps.dedup();
            by_deps.entry(deps).or_default().push(t.id.as_str());
        }
    }
    for (q, ids) in &by_queue {
        p.lpush(keys.queue(q), ids).ignore();
        if let Some(owner) = status::private_owner(q) {
            // addressed to one worker, which may be waiting on another
            // queue: wake it; a queue whose worker left expires
            p.expire(keys.queue(q), JOB_TTL_S as i64).ignore();
            p.rpush(keys.worker_control(owner), status::CONTROL_WAKE).ignore();
            p.expire(keys.worker_control(owner), CONTROL_TTL_S as i64).ignore();
        }
    }
    for (deps, ids) in &by_deps {
        // queued by the script once (if ever) their dependencies complete
        eval_in(&mut p, scripts::link_deps_source(), keys, now)
            .arg(deps.len())
            .arg(deps)
            .arg(ids)
            .ignore();
    }
    let queues: BTreeSet<&str> =
        tasks.iter().map(|t| t.queue.as_str()).filter(|q| status::private_owner(q).is_none()).collect();
    if !queues.is_empty() {
        p.sadd(keys.queues(), queues).ignore();
    }
    if how.register {
        let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        p.rpush(keys.tasks(), ids).ignore();
    }
    let done = conn.run(|c| p.query::<()>(c));
    if matches!(&done, Err(e) if !e.is_connection()) {
        // refused, so the transaction did not run (a refusal aborts all of
        // it): the chunks it would have referred to go too
        drop_big(conn, keys, &big_refs);
        give_back(conn, keys, tasks, shared);
    }
    done
}

/// A script sent with EVAL inside a submission's transaction (EVALSHA
/// there could fail on an empty script cache and abort all of it), with
/// the arguments every script expects; the caller adds its own.
fn eval_in<'a>(p: &'a mut redis::Pipeline, source: &str, keys: &Keys, now: u64) -> &'a mut redis::Pipeline {
    p.add_command(scripts::command("EVAL", source, keys, now))
}

/// Store shared object `o` in transaction `p` (or count `n` more owners of
/// an earlier upload of the same content; see put_object.lua), unless its
/// owners are counted already.
pub fn put_object(p: &mut redis::Pipeline, keys: &Keys, now: u64, o: &big::SharedObject, n: usize, expire: bool) {
    if o.held {
        return;
    }
    eval_in(p, scripts::put_object_source(), keys, now)
        .arg(&o.sha)
        .arg(&o.stored)
        .arg(n)
        .arg(if expire { "1" } else { "0" })
        .ignore();
}

/// How many of `tasks` refer to shared object `o`.
fn owners(tasks: &[TaskSpec], o: &big::SharedObject) -> usize {
    tasks.iter().filter(|t| t.object.as_deref() == Some(o.sha.as_str())).count()
}

/// A submission sharing `shared` was refused: the object's upload, or the
/// count of its new owners, is undone.
fn give_back(conn: &mut Connection, keys: &Keys, tasks: &[TaskSpec], shared: Option<&big::SharedObject>) {
    if let Some(o) = shared {
        big::give_back(conn, keys, o, owners(tasks, o));
    }
}

/// Delete the chunks of values that will not be recorded (best effort).
fn drop_big(conn: &mut Connection, keys: &Keys, refs: &[big::BigRef]) {
    for r in refs {
        let _ = big::drop_ref(conn, keys, r);
    }
}
