//! Workers against a real redis-server: a task whose record a worker
//! cannot use ends ERROR and the worker goes on; a worker whose connection
//! breaks while it waits for work gives back what it may have claimed; the
//! side thread's errors reach the worker's record; work that wakes an idle
//! worker starts in the step pipelined behind its blocking move, which loads
//! its script again if the server lost it.

mod common;

use common::{options, Server};
use redq::controller::Controller;
use redq::queue;
use redq::submit::{self, Submit};
use redq::tasks;
use redq::registry::{self, Signal};
use redq::status::Outcome;
use redq::task::TaskSpec;
use redq::worker::Worker;
use std::time::Duration;

const API: Submit = Submit { register: true, expire: false };

#[test]
fn a_task_with_an_unusable_timeout_is_refused_and_the_worker_goes_on() {
    let srv = Server::start();
    let cfg = srv.config("badtimeout");
    let mut ctl = Controller::open(&cfg).unwrap();
    let bad = TaskSpec { job: Some(ctl.cid.clone()), ..TaskSpec::new("q", b"bad".to_vec()) };
    let good = TaskSpec { job: Some(ctl.cid.clone()), ..TaskSpec::new("q", b"good".to_vec()) };
    submit::submit(&mut ctl.conn, &ctl.keys, &[bad.clone(), good.clone()], API).unwrap();
    // written by something other than this redq: a timeout no clock can hold
    let _: () = ctl.conn.run(|c| redis::cmd("HSET").arg(ctl.keys.task(&bad.id)).arg("timeout").arg("1e19").query(c)).unwrap();
    let mut w = Worker::start(&cfg, options(&["q"])).unwrap();
    let (_, t) = common::step1(&mut w, None, true, Duration::ZERO);
    let t = t.unwrap();
    assert_eq!(t.id, bad.id);
    let why = t.refused.clone().unwrap();
    assert!(why.contains("timeout"), "{why}");
    assert!(t.payload.is_empty());
    let (_, next) = common::step1(&mut w, Some((&t.id, Outcome::Error, b"refused")), true, Duration::ZERO);
    let next = next.unwrap();
    assert_eq!((next.id.as_str(), next.refused.as_deref(), next.payload.as_slice()), (good.id.as_str(), None, &b"good"[..]));
    common::step1(&mut w, Some((&next.id, Outcome::Value, b"ok")), false, Duration::ZERO);
    let st = tasks::statuses(&mut ctl.conn, &ctl.keys, &[bad.id.clone(), good.id.clone()]).unwrap();
    assert_eq!(st, vec!["ERROR", "COMPLETE"]);
    w.exit("EXITED").unwrap();
}

#[test]
fn a_worker_whose_connection_breaks_while_waiting_gives_back_its_claims() {
    let srv = Server::start();
    let cfg = srv.config("blocked");
    let ctl = Controller::open(&cfg).unwrap();
    let mut w = Worker::start(&cfg, options(&["q"])).unwrap();
    let wid = w.id().to_string();
    let keys = ctl.keys.clone();
    // on a queue this worker does not serve, so its BLMOVE cannot take it
    let t = TaskSpec { job: Some(ctl.cid.clone()), ..TaskSpec::new("side", b"x".to_vec()) };
    let id = t.id.clone();
    let killer = {
        let cfg = cfg.clone();
        std::thread::spawn(move || {
            let mut ctl = Controller::open(&cfg).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            // as if BLMOVE had moved the id just before the connection broke
            submit::submit(&mut ctl.conn, &ctl.keys, &[t], API).unwrap();
            let _: () = ctl.conn.run(|c| redis::cmd("LREM").arg(ctl.keys.queue("side")).arg(0).arg(&id).query(c)).unwrap();
            let _: () = ctl.conn.run(|c| redis::cmd("RPUSH").arg(ctl.keys.worker_running(&wid)).arg(&id).query(c)).unwrap();
            let _: i64 = ctl.conn.run(|c| redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").query(c)).unwrap();
        })
    };
    let (_, got) = common::step1(&mut w, None, true, Duration::from_secs(3));
    killer.join().unwrap();
    assert!(got.is_none());
    let mut ctl = Controller::open(&cfg).unwrap(); // the kill closed ours too
    let running: usize = ctl.conn.run(|c| redis::cmd("LLEN").arg(keys.worker_running(w.id())).query(c)).unwrap();
    assert_eq!(running, 0, "the claim stayed with the worker");
    assert_eq!(queue::length(&mut ctl.conn, &keys, "side").unwrap(), 1);
    // and the worker serves on
    let q = TaskSpec { job: Some(ctl.cid.clone()), ..TaskSpec::new("q", b"y".to_vec()) };
    submit::submit(&mut ctl.conn, &keys, &[q.clone()], API).unwrap();
    let (_, again) = common::step1(&mut w, None, true, Duration::ZERO);
    assert_eq!(again.map(|t| t.id), Some(q.id));
}

#[test]
fn work_that_wakes_a_worker_starts_with_the_move_even_if_the_server_lost_its_scripts() {
    let srv = Server::start();
    let cfg = srv.config("woken");
    let mut ctl = Controller::open(&cfg).unwrap();
    let mut w = Worker::start(&cfg, options(&["q"])).unwrap();
    let wid = w.id().to_string();
    let keys = ctl.keys.clone();
    // a claim whose step never ran (refused after its move): in the
    // worker's running list and still PENDING
    let stale = TaskSpec { job: Some(ctl.cid.clone()), ..TaskSpec::new("q", b"s".to_vec()) };
    submit::submit(&mut ctl.conn, &keys, &[stale.clone()], API).unwrap();
    let _: () = ctl.conn.run(|c| redis::cmd("LREM").arg(keys.queue("q")).arg(0).arg(&stale.id).query(c)).unwrap();
    let _: () = ctl.conn.run(|c| redis::cmd("RPUSH").arg(keys.worker_running(&wid)).arg(&stale.id).query(c)).unwrap();
    let fresh = TaskSpec { job: Some(ctl.cid.clone()), ..TaskSpec::new("q", b"f".to_vec()) };
    let submitter = {
        let (cfg, fresh) = (cfg.clone(), fresh.clone());
        std::thread::spawn(move || {
            let mut ctl = Controller::open(&cfg).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            // the step pipelined behind the blocked move meets an empty cache
            let _: () = ctl.conn.run(|c| redis::cmd("SCRIPT").arg("FLUSH").query(c)).unwrap();
            submit::submit(&mut ctl.conn, &ctl.keys, &[fresh], API).unwrap();
        })
    };
    let (_, got) = common::step1(&mut w, None, true, Duration::from_secs(3));
    submitter.join().unwrap();
    let got = got.expect("the task that woke the worker was started");
    assert_eq!(got.id, fresh.id);
    assert_eq!(got.payload, b"f".to_vec());
    let running: Vec<String> = ctl.conn.run(|c| redis::cmd("LRANGE").arg(keys.worker_running(&wid)).arg(0).arg(-1).query(c)).unwrap();
    assert_eq!(running, vec![fresh.id.clone()]);
    let queued: Vec<String> = ctl.conn.run(|c| redis::cmd("LRANGE").arg(keys.queue("q")).arg(0).arg(-1).query(c)).unwrap();
    assert_eq!(queued, vec![stale.id.clone()], "the stale claim went back to its queue");
    assert_eq!(tasks::statuses(&mut ctl.conn, &keys, &[fresh.id.clone(), stale.id.clone()]).unwrap(), vec!["RUNNING", "PENDING"]);
    w.exit("EXITED").unwrap();
}

#[test]
fn a_missing_script_is_seen_in_a_pipeline_whose_other_command_was_refused() {
    let srv = Server::start();
    let mut ctl = Controller::open(&srv.config("refused")).unwrap();
    // no replica: every write is refused (NOREPLICAS)
    let _: () = ctl.conn.run(|c| redis::cmd("CONFIG").arg("SET").arg("min-replicas-to-write").arg(1).query(c)).unwrap();
    let mut p = redis::pipe();
    p.cmd("LPUSH").arg("k").arg("v");
    p.cmd("EVALSHA").arg("0123456789012345678901234567890123456789").arg(0);
    let mut c = redis::Client::open(srv.url()).unwrap().get_connection().unwrap();
    let e = p.query::<(i64, i64)>(&mut c).unwrap_err();
    assert!(redq::connection::lacks_script(&e), "{e}");
    let e = redis::cmd("LPUSH").arg("k").arg("v").query::<i64>(&mut c).unwrap_err();
    assert!(!redq::connection::lacks_script(&e), "{e}");
}

#[test]
fn heartbeat_errors_reach_the_worker_record() {
    let mut srv = Server::start();
    let port = srv.port;
    let cfg = srv.config("hberr");
    let password = srv.password.clone();
    let _w = Worker::start(&cfg, options(&["q"])).unwrap();
    srv.stop();
    std::thread::sleep(Duration::from_millis(400));
    let _srv2 = Server::start_on(port, Some(password));
    let mut ctl = Controller::open(&cfg).unwrap();
    let keys = ctl.keys.clone();
    let recorded = common::wait_until(Duration::from_secs(10), || {
        let ids: Vec<String> = ctl.conn.run(|c| redis::cmd("SMEMBERS").arg(keys.workers()).query(c)).unwrap_or_default();
        ids.iter().any(|id| {
            let e: Option<String> = ctl.conn.run(|c| redis::cmd("HGET").arg(keys.worker(id)).arg("last_error").query(c)).unwrap_or(None);
            e.is_some_and(|e| e.contains("connect") || e.contains("connection"))
        })
    });
    assert!(recorded, "the side thread's error never reached the worker's record");
}

#[test]
fn the_registry_lists_describes_and_signals_workers() {
    let srv = Server::start();
    let cfg = srv.config("registry");
    let mut ctl = Controller::open(&cfg).unwrap();
    let w = Worker::start(&cfg, options(&["q", "r"])).unwrap();
    let id = w.id().to_string();
    assert_eq!(registry::list(&mut ctl.conn, &ctl.keys).unwrap(), vec![id.clone()]);
    let info = registry::info(&mut ctl.conn, &ctl.keys, &[id.clone(), "nobody".into()]).unwrap();
    assert!(info[0].alive);
    assert_eq!((info[0].status(), info[0].get("queues"), info[0].get("host")), ("IDLE", Some("q,r"), Some("test")));
    assert!(!info[1].alive);
    assert_eq!(info[1].status(), "MISSING");
    assert!(info[1].fields.is_empty());
    registry::signal(&mut ctl.conn, &ctl.keys, &[id.clone()], Signal::Stop).unwrap();
    assert!(common::wait_until(Duration::from_secs(5), || w.stop_requested()));
    drop(w);
    let info = registry::info(&mut ctl.conn, &ctl.keys, &[id.clone()]).unwrap();
    assert_eq!((info[0].status(), info[0].get("how"), info[0].alive), ("EXITED", Some("EXITED"), false));
    assert!(registry::list(&mut ctl.conn, &ctl.keys).unwrap().is_empty());
}

#[test]
fn controllers_keep_user_values_and_run_raw_commands() {
    let srv = Server::start();
    let mut ctl = Controller::open(&srv.config("data")).unwrap();
    assert_eq!(ctl.data_get("x").unwrap(), None);
    ctl.data_set("x", b"\x00bytes").unwrap();
    assert_eq!(ctl.data_get("x").unwrap().as_deref(), Some(&b"\x00bytes"[..]));
    ctl.data_delete("x").unwrap();
    assert_eq!(ctl.data_get("x").unwrap(), None);
    let pong = ctl.command(&["PING".to_string()]).unwrap();
    assert_eq!(pong, redis::Value::SimpleString("PONG".into()));
    assert_eq!(ctl.command(&[]).unwrap_err().kind(), "argument");
}

fn hget(ctl: &mut Controller, id: &str, field: &str) -> Option<String> {
    let key = ctl.keys.task(id);
    ctl.conn.run(|c| redis::cmd("HGET").arg(&key).arg(field).query(c)).unwrap()
}

/// A worker that has run one short task (so it has a pace) and then
/// started a batch of several from a long backlog.
fn worker_with_a_batch(cfg: &redq::config::Config, ctl: &mut Controller) -> (Worker, Vec<redq::worker::Task>) {
    let tasks: Vec<TaskSpec> =
        (0..40).map(|i| TaskSpec { job: Some(ctl.cid.clone()), ..TaskSpec::new("q", vec![i as u8]) }).collect();
    submit::submit(&mut ctl.conn, &ctl.keys, &tasks, API).unwrap();
    let mut w = Worker::start(cfg, options(&["q"])).unwrap();
    let (_, first) = w.step(usize::MAX, Duration::ZERO).unwrap();
    assert_eq!(first.len(), 1, "no pace yet: one task at a time");
    w.begin(&first[0].id);
    w.end(&first[0].id, Outcome::Value, b"r".to_vec());
    let (accepted, batch) = w.step(usize::MAX, Duration::ZERO).unwrap();
    assert_eq!(accepted, vec![true]);
    assert_eq!(batch.len(), 4, "a short task's pace fills a batch (max_batch 4)");
    (w, batch)
}

#[test]
fn short_tasks_start_in_batches_and_count_attempts_when_they_end() {
    let srv = Server::start();
    let cfg = srv.config("batch");
    let mut ctl = Controller::open(&cfg).unwrap();
    let (mut w, batch) = worker_with_a_batch(&cfg, &mut ctl);
    for (i, t) in batch.iter().enumerate() {
        assert_eq!(hget(&mut ctl, &t.id, "status").as_deref(), Some("RUNNING"));
        // only the first is recorded as begun before it ends
        assert_eq!(hget(&mut ctl, &t.id, "started").is_some(), i == 0, "{i}");
    }
    for t in &batch {
        assert!(w.begin(&t.id));
        w.end(&t.id, Outcome::Value, t.payload.clone());
    }
    let (accepted, _) = w.step(0, Duration::ZERO).unwrap();
    assert_eq!(accepted, vec![true; 4]);
    for t in &batch {
        assert_eq!(hget(&mut ctl, &t.id, "status").as_deref(), Some("COMPLETE"));
        assert_eq!(hget(&mut ctl, &t.id, "attempt").as_deref(), Some("1"));
        assert!(hget(&mut ctl, &t.id, "started").is_some());
        let info = tasks::info(&mut ctl.conn, &ctl.keys, &t.id).unwrap();
        assert_eq!(info.attempts.len(), 1);
        assert_eq!(info.attempts[0].outcome, "COMPLETE");
        assert_eq!(info.attempts[0].worker, w.id());
    }
    w.exit("EXITED").unwrap();
}

#[test]
fn a_lost_worker_charges_only_the_task_it_began_and_the_rest_run_alone() {
    let srv = Server::start();
    let cfg = srv.config("batchlost");
    let mut ctl = Controller::open(&cfg).unwrap();
    let (mut w, batch) = worker_with_a_batch(&cfg, &mut ctl);
    assert!(w.begin(&batch[0].id));
    // the worker dies in its first task: it stops renewing its lease
    drop(w);
    let keys = ctl.keys.clone();
    assert!(common::wait_until(Duration::from_secs(5), || {
        !redq::monitor::reap(&mut ctl.conn, &keys, std::time::Duration::ZERO).unwrap().is_empty()
    }));
    assert_eq!(hget(&mut ctl, &batch[0].id, "attempt").as_deref(), Some("1"));
    assert_eq!(hget(&mut ctl, &batch[0].id, "status").as_deref(), Some("PENDING"));
    for t in &batch[1..] {
        assert_eq!(hget(&mut ctl, &t.id, "status").as_deref(), Some("PENDING"));
        assert_eq!(hget(&mut ctl, &t.id, "attempt"), None, "charged without having run");
        assert_eq!(hget(&mut ctl, &t.id, "solo").as_deref(), Some("1"));
    }
    // the next worker, once it has a pace, starts each of them on its own
    // and then batches the rest again
    let mut w2 = Worker::start(&cfg, options(&["q"])).unwrap();
    let mut sizes = Vec::new();
    let mut alone = 0;
    loop {
        let (_, got) = w2.step(usize::MAX, Duration::ZERO).unwrap();
        if got.is_empty() {
            break;
        }
        sizes.push(got.len());
        if got.iter().any(|t| batch[1..].iter().any(|b| b.id == t.id)) {
            assert_eq!(got.len(), 1, "a task marked to run alone came in a batch");
            alone += 1;
        }
        for t in &got {
            w2.begin(&t.id);
            w2.end(&t.id, Outcome::Value, vec![]);
        }
    }
    assert_eq!(alone, 3);
    assert!(sizes.iter().any(|&n| n > 1), "{sizes:?}");
    w2.exit("EXITED").unwrap();
}

#[test]
fn a_batch_mate_cancelled_before_it_began_is_skipped() {
    let srv = Server::start();
    let cfg = srv.config("batchcancel");
    let mut ctl = Controller::open(&cfg).unwrap();
    let (mut w, batch) = worker_with_a_batch(&cfg, &mut ctl);
    assert!(w.begin(&batch[0].id));
    assert_eq!(tasks::cancel(&mut ctl.conn, &ctl.keys, &[batch[2].id.clone()]).unwrap(), vec!["RUNNING"]);
    w.end(&batch[0].id, Outcome::Value, vec![]);
    assert!(w.begin(&batch[1].id));
    std::thread::sleep(Duration::from_millis(300)); // the side thread reads its control list
    w.end(&batch[1].id, Outcome::Value, vec![]);
    assert!(!w.begin(&batch[2].id), "ran a cancelled task");
    w.end(&batch[2].id, Outcome::Interrupted, vec![]);
    let (accepted, _) = w.step(0, Duration::ZERO).unwrap();
    assert_eq!(accepted, vec![true, true, false]);
    assert_eq!(hget(&mut ctl, &batch[2].id, "status").as_deref(), Some("CANCELLED"));
    w.exit("EXITED").unwrap();
}
