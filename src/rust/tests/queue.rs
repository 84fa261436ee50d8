//! The queue engine against a real redis-server: submission, claim,
//! first-result-wins completion, cancellation, and the Lua/Rust key schema.

mod common;

use common::{options, Server};
use redq::connection::Connection;
use redq::controller::Controller;
use redq::keys::Keys;
use redq::queue;
use redq::submit::{self, Submit};
use redq::tasks;
use redq::scripts::{self, invocation};
use redq::status::Outcome;
use redq::task::TaskSpec;
use redq::worker::Worker;
use std::time::Duration;

const API: Submit = Submit { register: true, expire: false };

fn spec(queue: &str, payload: &[u8], job: &str) -> TaskSpec {
    TaskSpec { job: Some(job.into()), ..TaskSpec::new(queue, payload.to_vec()) }
}

#[test]
fn lua_preamble_builds_the_same_keys_words_and_ttls_as_rust() {
    let srv = Server::start();
    let cfg = srv.config("ns");
    let keys = Keys::new("ns");
    let mut conn = Connection::open(&cfg).unwrap();
    let check = scripts::vocabulary_check();
    let got: Vec<String> = conn.run(|c| invocation(&check, &keys).invoke(c)).unwrap();
    let mut want: Vec<String> = Vec::new();
    for (k, v) in scripts::constant_values() {
        want.push(k.to_string());
        want.push(v);
    }
    for (k, v) in keys.samples() {
        want.push(k.to_string());
        want.push(v);
    }
    assert_eq!(got, want);
    // every status word, TTL and key shape is in the comparison
    for w in redq::status::TERMINAL.iter().chain(&[redq::status::PENDING, redq::status::DEFERRED, redq::status::RUNNING, redq::status::MISSING]) {
        assert!(got.contains(&w.to_string()), "{w}");
    }
    for ttl in [redq::protocol::JOB_TTL_S, redq::protocol::NOTIFY_TTL_MS, redq::protocol::WORKER_TTL_S] {
        assert!(got.contains(&ttl.to_string()), "{ttl}");
    }
    assert_eq!(keys.samples().len(), 28);
    assert!(got.contains(&keys.job_done("j")));
}

#[test]
fn tasks_run_in_fifo_order_and_results_come_back() {
    let srv = Server::start();
    let cfg = srv.config("fifo");
    let mut ctl = Controller::open(&cfg).unwrap();
    let tasks: Vec<TaskSpec> = (0..5).map(|i| spec("q", &[i], &ctl.cid)).collect();
    submit::submit(&mut ctl.conn, &ctl.keys, &tasks, API).unwrap();
    assert_eq!(queue::length(&mut ctl.conn, &ctl.keys, "q").unwrap(), 5);

    let mut w = Worker::start(&cfg, options(&["q"])).unwrap();
    let mut seen = vec![];
    let (_, mut next) = common::step1(&mut w, None, true, Duration::from_millis(100));
    while let Some(t) = next {
        seen.push(t.payload[0]);
        let result = vec![t.payload[0] * 2];
        let (accepted, n) = common::step1(&mut w, Some((&t.id, Outcome::Value, &result)), true, Duration::ZERO);
        assert!(accepted);
        next = n;
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
    let res = tasks::results(&mut ctl.conn, &ctl.keys, &ids).unwrap();
    for (i, e) in res.iter().enumerate() {
        assert_eq!(e.status, "COMPLETE");
        assert!(e.completed() && e.done() && e.exists());
        assert_eq!(e.result.as_deref(), Some(&[(i as u8) * 2][..]));
    }
    // every completion was announced on the controller's list, and a
    // completed task's payload is gone
    let done = ctl.done();
    let n: usize = ctl.conn.run(|c| redis::cmd("LLEN").arg(&done).query(c)).unwrap();
    let payloads: usize = ctl.conn.run(|c| redis::cmd("HLEN").arg(ctl.keys.payloads()).query(c)).unwrap();
    assert_eq!(payloads, 0);
    assert_eq!(n, 5);
    assert_eq!(tasks::list(&mut ctl.conn, &ctl.keys).unwrap().len(), 5);
    w.exit("EXITED").unwrap();
}

#[test]
fn the_first_result_wins_and_a_duplicate_is_dropped() {
    let srv = Server::start();
    let cfg = srv.config("fw");
    let mut ctl = Controller::open(&cfg).unwrap();
    let t = spec("q", b"x", &ctl.cid);
    submit::submit(&mut ctl.conn, &ctl.keys, &[t.clone()], API).unwrap();
    let mut w = Worker::start(&cfg, options(&["q"])).unwrap();
    let (_, got) = common::step1(&mut w, None, true, Duration::ZERO);
    assert_eq!(got.unwrap().id, t.id);
    let first: Vec<i64> = ctl
        .conn
        .run(|c| invocation(scripts::complete(), &ctl.keys).arg("other").arg(&t.id).arg("COMPLETE").arg("first").invoke(c))
        .unwrap();
    assert_eq!(first, vec![1]);
    let (accepted, _) = common::step1(&mut w, Some((&t.id, Outcome::Value, b"second")), false, Duration::ZERO);
    assert!(!accepted);
    let res = tasks::results(&mut ctl.conn, &ctl.keys, &[t.id.clone()]).unwrap();
    assert_eq!(res[0].result.as_deref(), Some(&b"first"[..]));
    let running: usize =
        ctl.conn.run(|c| redis::cmd("LLEN").arg(ctl.keys.worker_running(w.id())).query(c)).unwrap();
    assert_eq!(running, 0, "the dropped result still left the running list");
}

#[test]
fn cancel_takes_pending_tasks_off_the_queue() {
    let srv = Server::start();
    let cfg = srv.config("cancel");
    let mut ctl = Controller::open(&cfg).unwrap();
    let tasks: Vec<TaskSpec> = (0..3).map(|i| spec("q", &[i], &ctl.cid)).collect();
    submit::submit(&mut ctl.conn, &ctl.keys, &tasks, API).unwrap();
    let before = tasks::cancel(&mut ctl.conn, &ctl.keys, &[tasks[1].id.clone(), "nope".into()]).unwrap();
    assert_eq!(before, vec!["PENDING", "MISSING"]);
    assert_eq!(queue::length(&mut ctl.conn, &ctl.keys, "q").unwrap(), 2);
    let st = tasks::statuses(&mut ctl.conn, &ctl.keys, &[tasks[1].id.clone()]).unwrap();
    assert_eq!(st, vec!["CANCELLED"]);
    tasks::delete(&mut ctl.conn, &ctl.keys, &[tasks[0].id.clone()]).unwrap();
    let st = tasks::statuses(&mut ctl.conn, &ctl.keys, &[tasks[0].id.clone()]).unwrap();
    assert_eq!(st, vec!["MISSING"]);
    assert_eq!(queue::length(&mut ctl.conn, &ctl.keys, "q").unwrap(), 1);
}

#[test]
fn a_worker_claims_in_queue_priority_order() {
    let srv = Server::start();
    let cfg = srv.config("prio");
    let mut ctl = Controller::open(&cfg).unwrap();
    let low = spec("low", b"low", &ctl.cid);
    let high = spec("high", b"high", &ctl.cid);
    submit::submit(&mut ctl.conn, &ctl.keys, &[low.clone()], API).unwrap();
    submit::submit(&mut ctl.conn, &ctl.keys, &[high.clone()], API).unwrap();
    let mut w = Worker::start(&cfg, options(&["high", "low"])).unwrap();
    let (_, t) = common::step1(&mut w, None, true, Duration::ZERO);
    assert_eq!(t.unwrap().id, high.id);
}

#[test]
fn unreachable_servers_fail_fast_with_a_connection_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = redq::config::Config::new(&format!("redis://127.0.0.1:{port}/0"), "x").unwrap();
    let t = std::time::Instant::now();
    let e = Controller::open(&cfg).err().unwrap();
    assert!(e.is_connection(), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(e.to_string().contains("is redis-server running"));
}

#[test]
fn cancelling_many_queued_tasks_keeps_the_rest_in_order() {
    let srv = Server::start();
    let cfg = srv.config("bulkcancel");
    let mut ctl = Controller::open(&cfg).unwrap();
    let tasks: Vec<TaskSpec> = (0..1000u32).map(|i| spec("q", &i.to_le_bytes(), &ctl.cid)).collect();
    submit::submit(&mut ctl.conn, &ctl.keys, &tasks, API).unwrap();
    let gone: Vec<String> = tasks.iter().step_by(3).map(|t| t.id.clone()).collect();
    let before = tasks::cancel(&mut ctl.conn, &ctl.keys, &gone).unwrap();
    assert!(before.iter().all(|s| s == "PENDING"));
    let left: Vec<String> = ctl.conn.run(|c| redis::cmd("LRANGE").arg(ctl.keys.queue("q")).arg(0).arg(-1).query(c)).unwrap();
    // the queue is pushed on the left: its rightmost id is the oldest
    let want: Vec<String> = tasks.iter().enumerate().filter(|(i, _)| i % 3 != 0).map(|(_, t)| t.id.clone()).rev().collect();
    assert_eq!(left, want);
    assert!(tasks::statuses(&mut ctl.conn, &ctl.keys, &[]).unwrap().is_empty());
    assert!(tasks::cancel(&mut ctl.conn, &ctl.keys, &[]).unwrap().is_empty());
}

#[test]
fn workers_run_only_payloads_signed_with_their_secret() {
    let srv = Server::start();
    let mut signed = srv.config("sig");
    signed.secret = Some(b"right".to_vec());
    let mut ctl = Controller::open(&signed).unwrap();
    let tasks: Vec<TaskSpec> = (0..2).map(|i| spec("q", &[i], &ctl.cid)).collect();
    submit::submit(&mut ctl.conn, &ctl.keys, &tasks, API).unwrap();
    let stored: Vec<u8> =
        ctl.conn.run(|c| redis::cmd("HGET").arg(ctl.keys.payloads()).arg(&tasks[0].id).query(c)).unwrap();
    assert!(stored.starts_with(redq::signature::MAGIC));

    let mut good = Worker::start(&signed, options(&["q"])).unwrap();
    let (_, t) = common::step1(&mut good, None, true, Duration::ZERO);
    let t = t.unwrap();
    assert_eq!((t.payload.clone(), t.refused.clone()), (vec![0u8], None));
    common::step1(&mut good, Some((&t.id, Outcome::Value, b"ok")), false, Duration::ZERO);
    good.exit("EXITED").unwrap();

    let mut other = srv.config("sig");
    other.secret = Some(b"wrong".to_vec());
    let mut bad = Worker::start(&other, options(&["q"])).unwrap();
    let (_, t) = common::step1(&mut bad, None, true, Duration::ZERO);
    let t = t.unwrap();
    assert!(t.payload.is_empty());
    assert!(t.refused.unwrap().contains("signature"));
}

#[test]
fn results_are_sealed_and_one_forged_or_moved_is_refused() {
    let srv = Server::start();
    let mut signed = srv.config("sealres");
    signed.secret = Some(b"k".to_vec());
    let mut ctl = Controller::open(&signed).unwrap();
    let tasks: Vec<TaskSpec> = (0..3).map(|i| spec("q", &[i], &ctl.cid)).collect();
    submit::submit(&mut ctl.conn, &ctl.keys, &tasks, API).unwrap();
    let mut w = Worker::start(&signed, options(&["q"])).unwrap();
    let (_, a) = common::step1(&mut w, None, true, Duration::ZERO);
    let a = a.unwrap();
    let (_, b) = common::step1(&mut w, Some((&a.id, Outcome::Value, b"ra")), true, Duration::ZERO);
    let b = b.unwrap();
    let (_, c) = common::step1(&mut w, Some((&b.id, Outcome::Value, b"rb")), true, Duration::ZERO);
    let c = c.unwrap();
    common::step1(&mut w, Some((&c.id, Outcome::Value, b"rc")), false, Duration::ZERO);
    let ids: Vec<String> = [&a, &b, &c].iter().map(|t| t.id.clone()).collect();
    let stored = |ctl: &mut Controller, id: &str| -> Vec<u8> {
        ctl.conn.run(|c| redis::cmd("HGET").arg(ctl.keys.task(id)).arg("result").query(c)).unwrap()
    };
    assert!(stored(&mut ctl, &ids[0]).starts_with(redq::signature::MAGIC));
    let got = tasks::results(&mut ctl.conn, &ctl.keys, &ids).unwrap();
    assert_eq!(got.iter().map(|e| e.result.clone().unwrap()).collect::<Vec<_>>(), vec![b"ra".to_vec(), b"rb".to_vec(), b"rc".to_vec()]);
    // someone without the secret writes b's result; a's sealed result is
    // copied onto c's: both are refused, a's still opens
    let a_sealed = stored(&mut ctl, &ids[0]);
    let (kb, kc) = (ctl.keys.task(&ids[1]), ctl.keys.task(&ids[2]));
    ctl.conn.run(|c| redis::cmd("HSET").arg(&kb).arg("result").arg(&b"X\n forged"[..]).query::<()>(c)).unwrap();
    ctl.conn.run(|c| redis::cmd("HSET").arg(&kc).arg("result").arg(&a_sealed).query::<()>(c)).unwrap();
    let got = tasks::results(&mut ctl.conn, &ctl.keys, &ids).unwrap();
    assert!(got[0].completed() && got[0].refused.is_none());
    for e in &got[1..] {
        assert!(!e.completed() && e.result.is_none(), "{e:?}");
        assert!(e.message().contains("refused"), "{}", e.message());
    }
    w.exit("EXITED").unwrap();
}

fn with_deps(mut t: TaskSpec, deps: &[&TaskSpec]) -> TaskSpec {
    t.depends_on = deps.iter().map(|d| d.id.clone()).collect();
    t
}

#[test]
fn dependents_wait_then_run_or_become_impossible() {
    let srv = Server::start();
    let cfg = srv.config("deps");
    let mut ctl = Controller::open(&cfg).unwrap();
    let a = spec("q", b"a", &ctl.cid);
    let fail = spec("q", b"f", &ctl.cid);
    submit::submit(&mut ctl.conn, &ctl.keys, &[a.clone(), fail.clone()], API).unwrap();
    let b = with_deps(spec("q", b"b", &ctl.cid), &[&a, &a]);
    let c = with_deps(spec("q", b"c", &ctl.cid), &[&b, &fail]);
    let d = with_deps(spec("q", b"d", &ctl.cid), &[&c]);
    submit::submit(&mut ctl.conn, &ctl.keys, &[b.clone(), c.clone(), d.clone()], API).unwrap();
    let ids = |ts: &[&TaskSpec]| ts.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
    let st = |ctl: &mut Controller, ts: &[&TaskSpec]| tasks::statuses(&mut ctl.conn, &ctl.keys, &ids(ts)).unwrap();
    assert_eq!(st(&mut ctl, &[&b, &c, &d]), vec!["DEFERRED"; 3]);
    assert_eq!(queue::length(&mut ctl.conn, &ctl.keys, "q").unwrap(), 2);

    let mut w = Worker::start(&cfg, options(&["q"])).unwrap();
    let mut ran = vec![];
    let (_, mut next) = common::step1(&mut w, None, true, Duration::ZERO);
    while let Some(t) = next {
        ran.push(t.payload.clone());
        let outcome = if t.payload == b"f" { Outcome::Error } else { Outcome::Value };
        next = common::step1(&mut w, Some((&t.id, outcome, b"r")), true, Duration::ZERO).1;
    }
    // b ran once a had completed; c and d can never run
    assert_eq!(ran, vec![b"a".to_vec(), b"f".to_vec(), b"b".to_vec()]);
    assert_eq!(st(&mut ctl, &[&b, &c, &d]), vec!["COMPLETE", "IMPOSSIBLE", "IMPOSSIBLE"]);
    // a dependency on a task that already failed is impossible at once
    let e = with_deps(spec("q", b"e", &ctl.cid), &[&fail]);
    let f = with_deps(spec("q", b"f2", &ctl.cid), &[&a]);
    submit::submit(&mut ctl.conn, &ctl.keys, &[e.clone(), f.clone()], API).unwrap();
    assert_eq!(st(&mut ctl, &[&e, &f]), vec!["IMPOSSIBLE", "PENDING"]);
    // cancelling a deferred task makes its dependents impossible
    let g = with_deps(spec("q", b"g", &ctl.cid), &[&f]);
    let h = with_deps(spec("q", b"h", &ctl.cid), &[&g]);
    submit::submit(&mut ctl.conn, &ctl.keys, &[g.clone(), h.clone()], API).unwrap();
    assert_eq!(tasks::cancel(&mut ctl.conn, &ctl.keys, &[g.id.clone()]).unwrap(), vec!["DEFERRED"]);
    assert_eq!(st(&mut ctl, &[&g, &h]), vec!["CANCELLED", "IMPOSSIBLE"]);
}

/// Keys of the namespace holding chunks of large values.
fn chunk_keys(ctl: &mut Controller) -> Vec<String> {
    let pattern = format!("{}chunk:*", ctl.keys.prefix());
    ctl.conn.run(|c| redis::cmd("KEYS").arg(&pattern).query(c)).unwrap()
}

#[test]
fn large_payloads_and_results_travel_in_chunks_and_are_checked() {
    let srv = Server::start();
    let cfg = srv.config("big");
    let mut ctl = Controller::open(&cfg).unwrap();
    let payload: Vec<u8> = (0..40_000_000u32).map(|i| (i % 251) as u8).collect();
    let t = spec("q", &payload, &ctl.cid);
    submit::submit(&mut ctl.conn, &ctl.keys, &[t.clone()], API).unwrap();
    // 40 MB in chunks; the payload's place holds a short reference,
    // and a task API task's chunks do not expire
    let chunks = chunk_keys(&mut ctl);
    let n = 40_000_000usize.div_ceil(redq::protocol::BIG_CHUNK);
    assert_eq!(chunks.len(), n);
    let ttl: i64 = ctl.conn.run(|c| redis::cmd("TTL").arg(&chunks[0]).query(c)).unwrap();
    assert_eq!(ttl, -1);
    let stored: usize = ctl.conn.run(|c| redis::cmd("HSTRLEN").arg(ctl.keys.payloads()).arg(&t.id).query(c)).unwrap();
    assert!(stored < 200, "{stored}");

    let mut w = Worker::start(&cfg, options(&["q"])).unwrap();
    let (_, got) = common::step1(&mut w, None, true, Duration::ZERO);
    let got = got.unwrap();
    assert!(got.payload == payload, "the payload came back altered");
    let result: Vec<u8> = payload.iter().rev().copied().collect();
    w.begin(&got.id);
    w.end_big(&got.id, Outcome::Value, &result).unwrap();
    let (accepted, _) = w.step(0, Duration::ZERO).unwrap();
    assert_eq!(accepted, vec![true]);
    let res = tasks::results(&mut ctl.conn, &ctl.keys, &[t.id.clone()]).unwrap();
    assert!(res[0].result.as_deref() == Some(&result[..]), "the result came back altered");
    // completing dropped the payload's chunks; the result's stay with the task
    assert_eq!(chunk_keys(&mut ctl).len(), n);

    // an altered chunk is found before anyone unserializes it
    let first = chunk_keys(&mut ctl)[0].clone();
    ctl.conn.run(|c| redis::cmd("SETRANGE").arg(&first).arg(10).arg("tampered").query::<()>(c)).unwrap();
    let err = tasks::results(&mut ctl.conn, &ctl.keys, &[t.id.clone()]).unwrap_err();
    assert_eq!(err.kind(), "corrupt");
    // deleting the task deletes its chunks
    tasks::delete(&mut ctl.conn, &ctl.keys, &[t.id.clone()]).unwrap();
    assert!(chunk_keys(&mut ctl).is_empty());
    w.exit("EXITED").unwrap();
}
