//! foreach jobs against a real redis-server: listing, orphan expiry, removal.

mod common;

use common::Server;
use redq::controller::Controller;
use redq::job;
use redq::queue;
use redq::task::TaskSpec;

#[test]
fn jobs_are_listed_until_removed_or_their_environment_expires() {
    let srv = Server::start();
    let mut ctl = Controller::open(&srv.config("jobs")).unwrap();
    let keys = ctl.keys.clone();
    for j in ["j1", "j2"] {
        job::put_env(&mut ctl.conn, &keys, j, b"env", "q\tme\thost\t1\tnow").unwrap();
    }
    let t = TaskSpec {
        id: "j1.1".into(),
        queue: "q".into(),
        payload: b"p".to_vec(),
        timeout: None,
        max_attempts: 3,
        job: Some("j1".into()),
        notify: None,
        depends_on: Vec::new(),
    };
    queue::submit(&mut ctl.conn, &keys, &[t], false).unwrap();
    let ttl: i64 = ctl.conn.run(|c| redis::cmd("TTL").arg(keys.task("j1.1")).query(c)).unwrap();
    assert!(ttl > 0 && ttl <= job::JOB_TTL_S as i64, "a job task must expire if never collected");
    let ids = |v: Vec<(String, String)>| v.into_iter().map(|(j, _)| j).collect::<Vec<_>>();
    assert_eq!(ids(job::list(&mut ctl.conn, &keys).unwrap()), vec!["j1", "j2"]);
    // j2's controller died and its environment expired
    ctl.conn.run(|c| redis::cmd("DEL").arg(keys.job_env("j2")).query::<()>(c)).unwrap();
    assert_eq!(ids(job::list(&mut ctl.conn, &keys).unwrap()), vec!["j1"]);
    job::remove(&mut ctl.conn, &keys, "j1", &["j1.1".to_string()]).unwrap();
    assert!(job::list(&mut ctl.conn, &keys).unwrap().is_empty());
    assert_eq!(queue::queue_length(&mut ctl.conn, &keys, "q").unwrap(), 0);
    let left: Vec<String> =
        ctl.conn.run(|c| redis::cmd("KEYS").arg(format!("{}*", keys.prefix())).query(c)).unwrap();
    assert!(left.iter().all(|k| k.ends_with(":version") || k.ends_with(":queues")), "{left:?}");
}
