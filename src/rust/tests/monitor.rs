//! The reaper against a real redis-server: a worker whose lease lapses has
//! its tasks requeued (or ended DIED), once, and the loss is reported.

mod common;

use common::{ghost_claims, Server};
use redq::controller::Controller;
use redq::keys::Keys;
use redq::monitor;
use redq::queue;
use redq::submit::{self, Submit};
use redq::tasks;
use redq::task::TaskSpec;
use std::time::Duration;

fn submit(ctl: &mut Controller, max_attempts: u32) -> String {
    let t = TaskSpec { max_attempts, job: Some(ctl.cid.clone()), ..TaskSpec::new("q", b"p".to_vec()) };
    submit::submit(&mut ctl.conn, &ctl.keys, &[t.clone()], Submit { register: true, expire: false }).unwrap();
    t.id
}

fn field(ctl: &mut Controller, keys: &Keys, id: &str, f: &str) -> Option<String> {
    ctl.conn.run(|c| redis::cmd("HGET").arg(keys.task(id)).arg(f).query(c)).unwrap()
}

#[test]
fn a_silent_worker_is_reaped_once_and_its_task_requeued() {
    let srv = Server::start();
    let mut ctl = Controller::open(&srv.config("reap")).unwrap();
    let keys = ctl.keys.clone();
    let since = monitor::events_tail(&mut ctl.conn, &keys).unwrap();
    let id = submit(&mut ctl, 3);
    let ghost = ghost_claims(&mut ctl, Duration::from_millis(150));
    assert_eq!(field(&mut ctl, &keys, &id, "status").as_deref(), Some("RUNNING"));
    assert!(monitor::reap(&mut ctl.conn, &keys, std::time::Duration::ZERO).unwrap().is_empty(), "reaped while the lease held");
    std::thread::sleep(Duration::from_millis(300));
    let lost = monitor::reap(&mut ctl.conn, &keys, std::time::Duration::ZERO).unwrap();
    assert_eq!(lost.len(), 1);
    assert_eq!((lost[0].id.as_str(), lost[0].host.as_str(), lost[0].requeued, lost[0].died), (ghost.as_str(), "nowhere", 1, 0));
    assert!(monitor::reap(&mut ctl.conn, &keys, std::time::Duration::ZERO).unwrap().is_empty(), "a second reap found work");
    assert_eq!(field(&mut ctl, &keys, &id, "status").as_deref(), Some("PENDING"));
    assert_eq!(field(&mut ctl, &keys, &id, "attempt").as_deref(), Some("1"));
    assert_eq!(queue::length(&mut ctl.conn, &keys, "q").unwrap(), 1);
    let (reported, last) = monitor::lost_since(&mut ctl.conn, &keys, &since).unwrap();
    assert_eq!(reported.len(), 1);
    assert_eq!(reported[0].id, ghost);
    assert!(monitor::lost_since(&mut ctl.conn, &keys, &last).unwrap().0.is_empty());
}

#[test]
fn a_task_that_used_up_its_attempts_ends_died_and_is_announced() {
    let srv = Server::start();
    let mut ctl = Controller::open(&srv.config("died")).unwrap();
    let keys = ctl.keys.clone();
    let id = submit(&mut ctl, 1);
    ghost_claims(&mut ctl, Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(250));
    let lost = monitor::reap(&mut ctl.conn, &keys, std::time::Duration::ZERO).unwrap();
    assert_eq!((lost[0].requeued, lost[0].died), (0, 1));
    assert_eq!(field(&mut ctl, &keys, &id, "status").as_deref(), Some("DIED"));
    assert_eq!(queue::length(&mut ctl.conn, &keys, "q").unwrap(), 0);
    let done = ctl.done();
    let notices: Vec<String> = ctl.conn.run(|c| redis::cmd("LRANGE").arg(&done).arg(0).arg(-1).query(c)).unwrap();
    assert_eq!(notices, vec![format!("{id} DIED")]);
    let payload: Option<Vec<u8>> = ctl.conn.run(|c| redis::cmd("HGET").arg(keys.payloads()).arg(&id).query(c)).unwrap();
    assert!(payload.is_some(), "a task API task keeps its payload for task_retry");
    // all or nothing: a missing id blocks the retry, and the error names it
    let e = tasks::retry(&mut ctl.conn, &keys, &ctl.cid, &[id.clone(), "nope".into()]).unwrap_err();
    assert_eq!(e.kind(), "argument");
    assert!(e.to_string().contains("nope (MISSING)"), "{e}");
    assert_eq!(queue::length(&mut ctl.conn, &keys, "q").unwrap(), 0);
    assert_eq!(tasks::retry(&mut ctl.conn, &keys, &ctl.cid, &[id.clone()]).unwrap(), vec!["DIED"]);
    assert_eq!(field(&mut ctl, &keys, &id, "status").as_deref(), Some("PENDING"));
    assert_eq!(field(&mut ctl, &keys, &id, "attempt").as_deref(), Some("0"));
    assert_eq!(queue::length(&mut ctl.conn, &keys, "q").unwrap(), 1);
}
