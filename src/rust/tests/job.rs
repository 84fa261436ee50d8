//! The job listing against a real redis-server: jobs are listed until
//! removed, and forgotten when their environment expired.

mod common;

use common::Server;
use redq::controller::Controller;
use redq::engine::{Job, JobOptions};
use redq::job_list;
use redq::protocol::JOB_TTL_S;
use redq::task::TaskSpec;

#[test]
fn jobs_are_listed_until_removed_or_their_environment_expires() {
    let srv = Server::start();
    let mut ctl = Controller::open(&srv.config("jobs")).unwrap();
    let keys = ctl.keys.clone();
    let mut j1 = Job::new(&keys, None, JobOptions::default());
    let mut j2 = Job::new(&keys, None, JobOptions::default());
    for j in [&mut j1, &mut j2] {
        j.put_env(&mut ctl.conn, b"env".to_vec(), "q", false).unwrap();
    }
    let t = TaskSpec::new("q", b"p".to_vec());
    let id = t.id.clone();
    j1.submit(&mut ctl.conn, vec![t]).unwrap();
    let ttl: i64 = ctl.conn.run(|c| redis::cmd("TTL").arg(keys.task(&id)).query(c)).unwrap();
    assert!(ttl > 0 && ttl <= JOB_TTL_S as i64, "a job task must expire if never collected");
    let ids = |v: Vec<job_list::JobInfo>| v.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let mut both = vec![j1.id().to_string(), j2.id().to_string()];
    both.sort();
    assert_eq!(ids(job_list::list(&mut ctl.conn, &keys).unwrap()), both);
    // j2's controller died and its environment expired
    ctl.conn.run(|c| redis::cmd("DEL").arg(keys.job_env(j2.id())).query::<()>(c)).unwrap();
    assert_eq!(ids(job_list::list(&mut ctl.conn, &keys).unwrap()), vec![j1.id().to_string()]);
    j1.remove(&mut ctl.conn).unwrap();
    assert!(job_list::list(&mut ctl.conn, &keys).unwrap().is_empty());
    assert_eq!(redq::queue::length(&mut ctl.conn, &keys, "q").unwrap(), 0);
    let left: Vec<String> =
        ctl.conn.run(|c| redis::cmd("KEYS").arg(format!("{}*", keys.prefix())).query(c)).unwrap();
    assert!(left.iter().all(|k| k.ends_with(":version") || k.ends_with(":queues")), "{left:?}");
}
