//! The job engine against a real redis-server and real workers (threads
//! running `Worker`): wait-any, results in batches, waits for given tasks,
//! resubmission after FLUSHALL and after a server restart, lost-worker
//! reports, timeouts, cancel and removal.

mod common;

use common::{ghost_claims, EchoWorker, Server};
use redq::controller::Controller;
use redq::engine::{self, Hooks, Job, JobOptions, Want};
use redq::tasks::Ended;
use redq::rng::Stream;
use redq::task::TaskSpec;
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn tasks(n: usize, queue: &str) -> Vec<TaskSpec> {
    (0..n)
        .map(|i| TaskSpec { tag: Some((i + 1) as f64), ..TaskSpec::new(queue, format!("p{}", i + 1).into_bytes()) })
        .collect()
}

fn opts() -> JobOptions {
    JobOptions { reap_every: Duration::from_millis(100), check_every: Duration::from_millis(300), ..JobOptions::default() }
}

/// A server, its config for namespace `ns`, a controller and a job.
fn setup(ns: &str) -> (Server, redq::config::Config, Controller, Job) {
    let srv = Server::start();
    let cfg = srv.config(ns);
    let ctl = Controller::open(&cfg).unwrap();
    let job = Job::new(&ctl.keys, None, opts());
    (srv, cfg, ctl, job)
}

fn wait(ctl: &mut Controller, job: &mut Job, want: Want, only: Option<&[String]>, timeout: Option<Duration>) -> engine::Batch {
    let (mut no, mut quiet) = (|| false, |_: usize, _: usize| {});
    let mut hooks = Hooks { interrupted: &mut no, progress: &mut quiet, workers: None };
    job.wait(&mut ctl.conn, want, only, timeout, &mut hooks).unwrap()
}

/// Every result, checked against its tag: payload `p<tag>` echoed back.
fn check_echo(ended: &[Ended]) {
    for e in ended {
        assert_eq!(e.status, "COMPLETE", "{e:?}");
        let tag = e.tag.expect("tag returned") as usize;
        assert_eq!(e.result.as_deref(), Some(format!("p{tag}").as_bytes()));
    }
}

fn keys_left(ctl: &mut Controller) -> Vec<String> {
    let mut left: Vec<String> =
        ctl.conn.run(|c| redis::cmd("KEYS").arg(format!("{}*", ctl.keys.prefix())).query(c)).unwrap();
    left.retain(|k| !(k.ends_with(":version") || k.ends_with(":queues") || k.contains(":worker") || k.ends_with(":events") || k.ends_with(":counts") || k.ends_with(":failures") || k.ends_with(":reaped")));
    left
}

#[test]
fn wait_any_hands_results_back_in_batches_with_their_tags() {
    let (_srv, cfg, mut ctl, mut job) = setup("any");
    job.submit(&mut ctl.conn, tasks(60, "q")).unwrap();
    let w = EchoWorker::start(&cfg, "q", Duration::from_millis(2));
    // let a backlog of results build up, so a wait receives several at once
    std::thread::sleep(Duration::from_millis(300));
    let mut all = Vec::new();
    let mut biggest = 0;
    while job.outstanding() > 0 {
        let b = wait(&mut ctl, &mut job, Want::Any, None, Some(Duration::from_secs(10)));
        assert!(!b.timed_out && !b.ended.is_empty());
        biggest = biggest.max(b.ended.len());
        all.extend(b.ended);
    }
    assert!(biggest > 1, "results never came in batches");
    check_echo(&all);
    let tags: HashSet<u64> = all.iter().map(|e| e.tag.unwrap() as u64).collect();
    assert_eq!(tags, (1..=60).collect());
    assert_eq!(job.progress(), (60, 60));
    // a job that owns its tasks deletes them as it receives them (those of
    // the last batch with its next collect, or when it is removed)
    let records = keys_left(&mut ctl).iter().filter(|k| k.contains(":task:")).count();
    assert!(records <= biggest, "{records} task records left");
    job.remove(&mut ctl.conn).unwrap();
    assert!(keys_left(&mut ctl).is_empty(), "{:?}", keys_left(&mut ctl));
    assert_eq!(w.stop(), 60);
}

#[test]
fn next_n_and_waits_for_given_tasks_keep_the_rest_for_later() {
    let (_srv, cfg, mut ctl, mut job) = setup("nextn");
    let specs = tasks(10, "q");
    let last = specs[9].id.clone();
    job.submit(&mut ctl.conn, specs).unwrap();
    let w = EchoWorker::start(&cfg, "q", Duration::ZERO);
    let b = wait(&mut ctl, &mut job, Want::Next(3), None, Some(Duration::from_secs(10)));
    assert_eq!(b.ended.len(), 3);
    // only the last task: the others that end meanwhile are kept
    let b = wait(&mut ctl, &mut job, Want::All, Some(&[last.clone()]), Some(Duration::from_secs(10)));
    assert_eq!(b.ended.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), vec![last]);
    let rest = wait(&mut ctl, &mut job, Want::All, None, Some(Duration::from_secs(10)));
    assert_eq!(rest.ended.len(), 6);
    check_echo(&rest.ended);
    assert_eq!(job.outstanding(), 0);
    // nothing left to wait for: returns at once
    let t = Instant::now();
    assert!(wait(&mut ctl, &mut job, Want::Any, None, None).ended.is_empty());
    assert!(t.elapsed() < Duration::from_millis(100));
    w.stop();
}

#[test]
fn a_zero_timeout_looks_once_without_blocking() {
    let (_srv, cfg, mut ctl, mut job) = setup("zero");
    let specs = tasks(1, "q");
    let id = specs[0].id.clone();
    job.submit(&mut ctl.conn, specs).unwrap();
    let t = Instant::now();
    let b = wait(&mut ctl, &mut job, Want::Any, Some(&[id.clone()]), Some(Duration::ZERO));
    assert!(b.timed_out && b.ended.is_empty());
    assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
    let w = EchoWorker::start(&cfg, "q", Duration::ZERO);
    let got = common::wait_until(Duration::from_secs(10), || {
        !wait(&mut ctl, &mut job, Want::Any, Some(&[id.clone()]), Some(Duration::ZERO)).ended.is_empty()
    });
    assert!(got);
    w.stop();
}

#[test]
fn tasks_lost_to_flushall_are_submitted_again_with_their_environment() {
    let (_srv, cfg, mut ctl, mut job) = setup("flush");
    job.put_env(&mut ctl.conn, b"the environment".to_vec(), "q", false).unwrap();
    job.submit(&mut ctl.conn, tasks(20, "q")).unwrap();
    let _: () = ctl.conn.run(|c| redis::cmd("FLUSHALL").query(c)).unwrap();
    let w = EchoWorker::start(&cfg, "q", Duration::ZERO);
    let b = wait(&mut ctl, &mut job, Want::All, None, Some(Duration::from_secs(20)));
    assert!(!b.timed_out);
    assert_eq!(b.ended.len(), 20);
    check_echo(&b.ended);
    let env: Option<Vec<u8>> = ctl.conn.run(|c| redis::cmd("GET").arg(ctl.keys.job_env(job.id())).query(c)).unwrap();
    assert_eq!(env.as_deref(), Some(&b"the environment"[..]));
    job.remove(&mut ctl.conn).unwrap();
    assert!(keys_left(&mut ctl).is_empty(), "{:?}", keys_left(&mut ctl));
    w.stop();
}

#[test]
fn an_environment_shared_by_jobs_is_stored_once_and_goes_with_the_last() {
    let (_srv, cfg, mut ctl, mut job) = setup("shared-env");
    let env = vec![7u8; 3 << 20];
    job.put_env(&mut ctl.conn, env.clone(), "q", true).unwrap();
    let mut other = Job::new(&ctl.keys, None, opts());
    other.put_env(&mut ctl.conn, env.clone(), "q", true).unwrap();
    let objects = |ctl: &mut Controller| keys_left(ctl).into_iter().filter(|k| k.contains(":object:")).count();
    assert_eq!(objects(&mut ctl), 1);
    // a worker gets the object's address, and the object by it
    let mut w = redq::worker::Worker::start(&cfg, common::options(&["q"])).unwrap();
    let sha = match w.job_env(other.id()).unwrap() {
        Some(redq::worker::JobEnv::Object(sha)) => sha,
        _ => panic!("the environment is not stored as a shared object"),
    };
    assert_eq!(w.object(&sha).unwrap(), env);
    job.remove(&mut ctl.conn).unwrap();
    assert_eq!(objects(&mut ctl), 1);
    other.remove(&mut ctl.conn).unwrap();
    w.exit("normal").unwrap();
    assert!(keys_left(&mut ctl).iter().all(|k| !k.contains(":object:") && !k.contains(":job:")), "{:?}", keys_left(&mut ctl));
}

#[test]
fn a_wait_rides_out_a_server_restart_and_resubmits() {
    let mut srv = Server::start();
    let (port, password) = (srv.port, srv.password.clone());
    let cfg = srv.config("restart");
    let mut ctl = Controller::open(&cfg).unwrap();
    let mut job = Job::new(&ctl.keys, None, opts());
    job.submit(&mut ctl.conn, tasks(5, "q")).unwrap();
    srv.stop();
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        Server::start_on(port, Some(password))
    });
    let t = Instant::now();
    let b = {
        let (mut no, mut quiet) = (|| false, |_: usize, _: usize| {});
        let mut hooks = Hooks { interrupted: &mut no, progress: &mut quiet, workers: None };
        // no worker yet: the wait reconnects, finds the tasks gone, resubmits them
        job.wait(&mut ctl.conn, Want::Any, None, Some(Duration::from_millis(1500)), &mut hooks).unwrap()
    };
    assert!(b.timed_out && b.ended.is_empty());
    assert!(t.elapsed() < Duration::from_secs(3));
    let _srv2 = restarter.join().unwrap();
    let queued: usize = ctl.conn.run(|c| redis::cmd("LLEN").arg(ctl.keys.queue("q")).query(c)).unwrap();
    assert_eq!(queued, 5);
    let w = EchoWorker::start(&cfg, "q", Duration::ZERO);
    let b = wait(&mut ctl, &mut job, Want::All, None, Some(Duration::from_secs(10)));
    check_echo(&b.ended);
    assert_eq!(b.ended.len(), 5);
    w.stop();
}

#[test]
fn lost_workers_are_reported_once_and_their_task_runs_elsewhere() {
    let (_srv, cfg, mut ctl, mut job) = setup("lost");
    let specs = tasks(1, "q");
    let id = specs[0].id.clone();
    job.submit(&mut ctl.conn, specs).unwrap();
    let ghost = ghost_claims(&mut ctl, Duration::from_millis(200));
    // before the reaper runs, the task's worker is known to be gone
    std::thread::sleep(Duration::from_millis(300));
    let info = redq::tasks::info(&mut ctl.conn, &ctl.keys, &id).unwrap();
    assert_eq!((info.get("status"), info.get("worker")), (Some("RUNNING"), Some(ghost.as_str())));
    let w = redq::registry::info(&mut ctl.conn, &ctl.keys, &[ghost.clone()]).unwrap();
    assert!(!w[0].alive, "{w:?}");
    let w = EchoWorker::start(&cfg, "q", Duration::ZERO);
    let b = wait(&mut ctl, &mut job, Want::All, None, Some(Duration::from_secs(10)));
    check_echo(&b.ended);
    let lost = job.take_lost();
    assert_eq!(lost.len(), 1);
    assert_eq!((lost[0].id.as_str(), lost[0].host.as_str(), lost[0].requeued), (ghost.as_str(), "nowhere", 1));
    // reported once: later reaps find nothing new
    let _ = wait(&mut ctl, &mut job, Want::Any, None, Some(Duration::from_millis(300)));
    assert!(job.take_lost().is_empty());
    w.stop();
}

fn job_ids(ctl: &mut Controller) -> Vec<String> {
    ctl.conn.run(|c| redis::cmd("LRANGE").arg(ctl.keys.queue("q")).arg(0).arg(-1).query(c)).unwrap_or_default()
}

#[test]
fn a_timed_out_wait_for_all_says_how_many_are_pending_and_running() {
    let (_srv, _, mut ctl, mut job) = setup("timeout");
    job.submit(&mut ctl.conn, tasks(3, "q")).unwrap();
    ghost_claims(&mut ctl, Duration::from_secs(30));
    let t = Instant::now();
    let b = wait(&mut ctl, &mut job, Want::All, None, Some(Duration::from_millis(300)));
    assert!(b.timed_out);
    assert!(t.elapsed() < Duration::from_secs(1));
    let e = job.timeout_error(&mut ctl.conn, Some(t.elapsed()));
    assert!(e.is_timeout());
    let msg = e.to_string();
    assert!(msg.contains("3 of 3 tasks had not ended"), "{msg}");
    assert!(msg.contains("2 pending") && msg.contains("1 running"), "{msg}");
}

#[test]
fn cancel_ends_every_task_and_remove_leaves_no_keys() {
    let (_srv, _, mut ctl, mut job) = setup("cancel");
    job.put_env(&mut ctl.conn, b"env".to_vec(), "q", false).unwrap();
    job.submit(&mut ctl.conn, tasks(4, "q")).unwrap();
    assert_eq!(job.cancel(&mut ctl.conn, None).unwrap(), 4);
    let b = wait(&mut ctl, &mut job, Want::All, None, Some(Duration::from_secs(5)));
    assert_eq!(b.ended.len(), 4);
    assert!(b.ended.iter().all(|e| e.status == "CANCELLED" && e.result.is_none() && !e.completed()));
    assert!(b.ended[0].message().contains("cancelled"));
    // a job's task that ended without completing keeps no payload
    let payloads: usize = ctl.conn.run(|c| redis::cmd("HLEN").arg(ctl.keys.payloads()).query(c)).unwrap();
    assert_eq!(payloads, 0);
    job.remove(&mut ctl.conn).unwrap();
    assert!(keys_left(&mut ctl).is_empty(), "{:?}", keys_left(&mut ctl));

    let mut job = Job::new(&ctl.keys, None, opts());
    job.put_env(&mut ctl.conn, b"env".to_vec(), "q", false).unwrap();
    job.submit(&mut ctl.conn, tasks(3, "q")).unwrap();
    let listed = redq::job_list::list(&mut ctl.conn, &ctl.keys).unwrap();
    assert_eq!(listed.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), vec![job.id()]);
    assert_eq!(listed[0].queue, "q");
    job.remove(&mut ctl.conn).unwrap();
    assert!(keys_left(&mut ctl).is_empty(), "{:?}", keys_left(&mut ctl));
    assert!(redq::job_list::list(&mut ctl.conn, &ctl.keys).unwrap().is_empty());
}

#[test]
fn a_job_is_cancelled_from_another_session_by_its_id() {
    let srv = Server::start();
    let cfg = srv.config("remote");
    let mut ctl = Controller::open(&cfg).unwrap();
    let mut other = Controller::open(&cfg).unwrap();
    let mut job = Job::new(&ctl.keys, None, opts());
    job.put_env(&mut ctl.conn, b"env".to_vec(), "q", false).unwrap();
    job.submit(&mut ctl.conn, tasks(5, "q")).unwrap();
    // an unrelated task on the same queue stays
    let mut bystander = Job::new(&ctl.keys, None, opts());
    bystander.submit(&mut ctl.conn, tasks(1, "q")).unwrap();
    let ghost = ghost_claims(&mut ctl, Duration::from_secs(30));
    assert!(!ghost.is_empty());
    assert_eq!(redq::job_list::cancel(&mut other.conn, &other.keys, job.id()).unwrap(), 5);
    let b = wait(&mut ctl, &mut job, Want::All, None, Some(Duration::from_secs(5)));
    assert_eq!(b.ended.len(), 5);
    assert!(b.ended.iter().all(|e| e.status == "CANCELLED"));
    assert_eq!(job_ids(&mut ctl).len(), 1);
    // the job itself was told: what it submits later is not waited for
    job.submit(&mut ctl.conn, tasks(2, "q")).unwrap();
    let (mut no, mut quiet) = (|| false, |_: usize, _: usize| {});
    let mut hooks = Hooks { interrupted: &mut no, progress: &mut quiet, workers: None };
    let e = job.wait(&mut ctl.conn, Want::All, None, Some(Duration::from_secs(5)), &mut hooks).unwrap_err();
    assert_eq!(e.kind(), "cancelled");
    assert!(e.to_string().contains(job.id()));
    job.remove(&mut ctl.conn).unwrap();
    assert_eq!(job_ids(&mut ctl).len(), 1);
}

#[test]
fn task_api_waits_follow_tasks_of_any_controller() {
    let srv = Server::start();
    let cfg = srv.config("watch");
    let mut mine = Controller::open(&cfg).unwrap();
    let mut theirs = Controller::open(&cfg).unwrap();
    let api = redq::submit::Submit { register: true, expire: false };
    let a = TaskSpec { job: Some(mine.cid.clone()), ..TaskSpec::new("q", b"a".to_vec()) };
    let b = TaskSpec { job: Some(theirs.cid.clone()), ..TaskSpec::new("q", b"b".to_vec()) };
    redq::submit::submit(&mut mine.conn, &mine.keys, &[a.clone()], api).unwrap();
    redq::submit::submit(&mut theirs.conn, &theirs.keys, &[b.clone()], api).unwrap();
    let w = EchoWorker::start(&cfg, "q", Duration::from_millis(50));
    let ids = vec![a.id.clone(), b.id.clone(), "nosuchtask".to_string(), a.id.clone()];
    let (mut no, mut seen) = (|| false, Vec::new());
    let mut show = |d: usize, t: usize| seen.push((d, t));
    let mut hooks = Hooks { interrupted: &mut no, progress: &mut show, workers: None };
    let cid = mine.cid.clone();
    let r = engine::wait_all(&mut mine.conn, &mine.keys, &cid, &ids, opts(), Some(Duration::from_secs(10)), &mut hooks);
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.statuses, vec!["COMPLETE", "COMPLETE", "MISSING", "COMPLETE"]);
    assert_eq!(seen.last(), Some(&(3, 3)));
    // the task API keeps its tasks: results stay readable
    let res = redq::tasks::results(&mut mine.conn, &mine.keys, &[a.id.clone()]).unwrap();
    assert_eq!(res[0].result.as_deref(), Some(&b"a"[..]));
    w.stop();
}

#[test]
fn an_interrupted_wait_keeps_what_it_had_received() {
    let (_srv, cfg, mut ctl, mut job) = setup("interrupt");
    let specs = tasks(3, "q");
    let ids: Vec<String> = specs.iter().map(|t| t.id.clone()).collect();
    job.submit(&mut ctl.conn, specs).unwrap();
    // one more task that nobody serves keeps the wait going
    job.submit(&mut ctl.conn, tasks(1, "nobody")).unwrap();
    let w = EchoWorker::start(&cfg, "q", Duration::ZERO);
    std::thread::sleep(Duration::from_millis(300));
    let mut calls = 0;
    let mut stop = || {
        calls += 1;
        calls > 3
    };
    let mut quiet = |_: usize, _: usize| {};
    let mut hooks = Hooks { interrupted: &mut stop, progress: &mut quiet, workers: None };
    let e = job.wait(&mut ctl.conn, Want::All, None, None, &mut hooks).unwrap_err();
    assert_eq!(e.kind(), "interrupt");
    assert_eq!(job.outstanding(), 4);
    let b = wait(&mut ctl, &mut job, Want::All, Some(&ids), Some(Duration::from_secs(5)));
    assert_eq!(b.ended.len(), 3);
    check_echo(&b.ended);
    w.stop();
}

#[test]
fn seeded_tasks_get_the_stream_of_their_tag() {
    let base = Stream::from_r(&[10407, 1280795612, -169270483, -442010614, -603558397, -222347416, 1489374793]).unwrap();
    let mut ts = tasks(3, "q");
    redq::task::tag(&mut ts, &[1.0, 2.0, 1001.0], Some(base)).unwrap();
    assert_eq!(ts[0].seed, Some(base));
    assert_eq!(ts[1].seed, Some(base.advance(1)));
    assert_eq!(ts[2].seed.unwrap().to_r(), [10407, -705288750, -333011748, 1990091638, -1736235797, 993743571, 95546049]);
    assert!(redq::task::tag(&mut ts, &[1.0], None).is_err());
    assert!(redq::task::tag(&mut ts, &[0.0, 1.0, 2.0], Some(base)).is_err());
}

#[test]
fn a_retried_task_is_not_taken_for_ended_by_its_old_notice() {
    let srv = Server::start();
    let cfg = srv.config("retried");
    let mut ctl = Controller::open(&cfg).unwrap();
    let api = redq::submit::Submit { register: true, expire: false };
    let t = TaskSpec { job: Some(ctl.cid.clone()), ..TaskSpec::new("q", b"x".to_vec()) };
    redq::submit::submit(&mut ctl.conn, &ctl.keys, &[t.clone()], api).unwrap();
    let mut w = redq::worker::Worker::start(&cfg, common::options(&["q"])).unwrap();
    let (_, got) = common::step1(&mut w, None, true, Duration::ZERO);
    common::step1(&mut w, Some((&got.unwrap().id, redq::status::Outcome::Error, b"e")), false, Duration::ZERO);
    // the ERROR notice waits in the controller's list; the task runs again
    redq::tasks::retry(&mut ctl.conn, &ctl.keys, &ctl.cid.clone(), &[t.id.clone()]).unwrap();
    let (mut no, mut quiet) = (|| false, |_: usize, _: usize| {});
    let mut hooks = Hooks { interrupted: &mut no, progress: &mut quiet, workers: None };
    let cid = ctl.cid.clone();
    let r = engine::wait_all(&mut ctl.conn, &ctl.keys, &cid, &[t.id.clone()], opts(), Some(Duration::from_millis(300)), &mut hooks);
    assert!(r.error.as_ref().is_some_and(|e| e.is_timeout()), "{r:?}");
    let (_, again) = common::step1(&mut w, None, true, Duration::ZERO);
    common::step1(&mut w, Some((&again.unwrap().id, redq::status::Outcome::Value, b"v")), false, Duration::ZERO);
    let r = engine::wait_all(&mut ctl.conn, &ctl.keys, &cid, &[t.id.clone()], opts(), Some(Duration::from_secs(5)), &mut hooks);
    assert_eq!(r.statuses, vec!["COMPLETE"]);
}

#[test]
fn a_wait_with_a_timeout_does_not_wait_longer_for_a_server_that_is_away() {
    let (mut srv, _, mut ctl, mut job) = setup("away");
    job.submit(&mut ctl.conn, tasks(1, "q")).unwrap();
    srv.stop();
    let t = Instant::now();
    let b = wait(&mut ctl, &mut job, Want::All, None, Some(Duration::from_millis(400)));
    assert!(b.timed_out);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // and one with a short patience gives up with a connection error
    let mut job = Job::new(&ctl.keys, None, JobOptions { patience: Duration::from_millis(300), ..opts() });
    let (mut no, mut quiet) = (|| false, |_: usize, _: usize| {});
    let mut hooks = Hooks { interrupted: &mut no, progress: &mut quiet, workers: None };
    job.watch(&["x".to_string()]);
    let e = job.wait(&mut ctl.conn, Want::All, None, None, &mut hooks).unwrap_err();
    assert!(e.is_connection(), "{e:?}");
    // the clean-up that follows does not wait for the server all over again
    let t = Instant::now();
    assert!(job.remove(&mut ctl.conn).unwrap_err().is_connection());
    assert!(t.elapsed() < Duration::from_millis(200), "{:?}", t.elapsed());
}

#[test]
fn the_reaper_runs_while_results_keep_arriving() {
    let srv = Server::start();
    let cfg = srv.config("busy");
    let mut ctl = Controller::open(&cfg).unwrap();
    let mut job = Job::new(&ctl.keys, None, opts());
    // a ghost claims one task of queue q and falls silent; a worker that
    // does not reap (no heartbeat reaping) serves queue r with a steady
    // stream of results, so the wait never has a quiet slice
    let specs = tasks(1, "q");
    let ghost_task = specs[0].id.clone();
    job.submit(&mut ctl.conn, specs).unwrap();
    let ghost = ghost_claims(&mut ctl, Duration::from_millis(200));
    job.submit(&mut ctl.conn, tasks(100, "r")).unwrap();
    let w = common::EchoWorker::start_with(&cfg, "r", Duration::from_millis(10), 0);
    let mut lost = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lost.is_empty() && Instant::now() < deadline {
        wait(&mut ctl, &mut job, Want::Any, None, Some(Duration::from_secs(1)));
        lost.extend(job.take_lost());
    }
    assert_eq!(lost.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), vec![ghost.as_str()]);
    // found while the stream of results still flowed
    assert!(job.outstanding() > 10, "{} outstanding", job.outstanding());
    let queued: Vec<String> = ctl.conn.run(|c| redis::cmd("LRANGE").arg(ctl.keys.queue("q")).arg(0).arg(-1).query(c)).unwrap();
    assert_eq!(queued, vec![ghost_task]);
    w.stop();
}

#[test]
fn many_results_are_collected_in_several_scripts_without_loss() {
    let (_srv, cfg, mut ctl, mut job) = setup("many");
    job.submit(&mut ctl.conn, tasks(700, "q")).unwrap();
    let w = EchoWorker::start(&cfg, "q", Duration::ZERO);
    // let every result arrive, then take them in one wait
    assert!(common::wait_until(Duration::from_secs(30), || {
        ctl.conn.run(|c| redis::cmd("LLEN").arg(ctl.keys.job_done(job.id())).query::<usize>(c)).unwrap_or(0) == 700
    }));
    let b = wait(&mut ctl, &mut job, Want::All, None, Some(Duration::from_secs(10)));
    assert_eq!(b.ended.len(), 700);
    check_echo(&b.ended);
    job.remove(&mut ctl.conn).unwrap();
    assert!(keys_left(&mut ctl).is_empty(), "{:?}", keys_left(&mut ctl));
    w.stop();
}
