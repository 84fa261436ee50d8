//! A private redis-server per test, on a free loopback port, with a
//! password of its own (in a configuration file only its owner reads),
//! killed on drop.

#![allow(dead_code)]

use redq::config::Config;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub port: u16,
    pub password: String,
    dir: std::path::PathBuf,
}

impl Server {
    pub fn start() -> Server {
        Server::start_on(Server::free_port(), None)
    }

    /// On `port`, with `password` (None: a new one), as a server that
    /// comes back after a restart.
    pub fn start_on(port: u16, password: Option<String>) -> Server {
        Server::launch_with(port, &["--port".to_string(), port.to_string()], password)
    }

    /// redis-server with `args` (which must make it listen on `port`), no
    /// persistence, in a directory of its own; returns once `port` accepts.
    pub fn launch(port: u16, args: &[String]) -> Server {
        Server::launch_with(port, args, None)
    }

    fn launch_with(port: u16, args: &[String], password: Option<String>) -> Server {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let dir = std::env::temp_dir().join(format!("redq-cargo-test-{}-{port}", std::process::id()));
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).unwrap();
        let password = password.unwrap_or_else(|| redq::signature::random_token(16).unwrap());
        let conf = dir.join("redis.conf");
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&conf)
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("requirepass {password}\n").as_bytes()))
            .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .args(args)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be on PATH for the tests");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Server { child, port, password, dir }
    }

    /// A free loopback port never handed out before in this process: a
    /// test that stops its server and starts a new one on the same port
    /// must not find another test's server there.
    pub fn free_port() -> u16 {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let start = std::process::id().wrapping_mul(37);
        loop {
            let port = (20_000 + start.wrapping_add(NEXT.fetch_add(1, Ordering::SeqCst)) % 40_000) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }

    pub fn url(&self) -> String {
        self.url_with("redis")
    }

    /// Its URL with another scheme (`rediss` for TLS).
    pub fn url_with(&self, scheme: &str) -> String {
        format!("{scheme}://:{}@127.0.0.1:{}/0", self.password, self.port)
    }

    pub fn config(&self, ns: &str) -> Config {
        Config::new(&self.url(), ns).unwrap()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

use redq::controller::Controller;
use redq::heartbeat::Timing;
use redq::registry::{register, Registration};
use redq::scripts::{self, invocation};
use redq::status::Outcome;
use redq::worker::{Worker, WorkerOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Worker settings for tests: short heartbeat and lease.
pub fn options(queues: &[&str]) -> WorkerOptions {
    WorkerOptions {
        name: None,
        queues: queues.iter().map(|s| s.to_string()).collect(),
        timing: Timing {
            period: Duration::from_millis(100),
            lease: Duration::from_millis(500),
            grace: Duration::from_secs(1),
            reap_every: 2,
            parent: None,
        },
        max_batch: 4,
        info: vec![("host".into(), "test".into())],
    }
}

/// A worker on a thread of its own that returns each payload as its
/// result (after `delay`), until stopped.
pub struct EchoWorker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<usize>>,
}

impl EchoWorker {
    pub fn start(cfg: &Config, queue: &str, delay: Duration) -> EchoWorker {
        EchoWorker::start_with(cfg, queue, delay, 2)
    }

    /// With the side thread running the reaper every `reap_every` beats
    /// (0: never).
    pub fn start_with(cfg: &Config, queue: &str, delay: Duration, reap_every: u32) -> EchoWorker {
        let stop = Arc::new(AtomicBool::new(false));
        let (cfg, queue, flag) = (cfg.clone(), queue.to_string(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut opts = options(&[&queue]);
            opts.timing.reap_every = reap_every;
            let mut w = Worker::start(&cfg, opts).unwrap();
            let mut n = 0;
            while !flag.load(Ordering::SeqCst) {
                if let Ok((_, tasks)) = w.step(usize::MAX, Duration::from_millis(100)) {
                    for t in tasks {
                        w.begin(&t.id);
                        std::thread::sleep(delay);
                        n += 1;
                        w.end(&t.id, Outcome::Value, t.payload);
                    }
                }
            }
            let _ = w.step(0, Duration::ZERO);
            let _ = w.exit("EXITED");
            n
        });
        EchoWorker { stop, handle: Some(handle) }
    }

    /// Stop and return how many tasks it ran.
    pub fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().map(|h| h.join().unwrap()).unwrap_or(0)
    }
}

impl Drop for EchoWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A worker that registers and claims one task from queue `q`, then falls
/// silent (no heartbeat): its lease runs out after `lease`.
pub fn ghost_claims(ctl: &mut Controller, lease: Duration) -> String {
    let reg = Registration {
        keys: ctl.keys.clone(),
        id: format!("ghost-{}", redq::id::new_id()),
        info: vec![("host".into(), "nowhere".into())],
    };
    register(&mut ctl.conn, &reg, lease).unwrap();
    let keys = ctl.keys.clone();
    let reply: Vec<redis::Value> = ctl
        .conn
        .run(|c| invocation(scripts::step(), &keys).arg(&reg.id).arg(0).arg("").arg(1).arg("q").invoke(c))
        .unwrap();
    assert!(reply.len() >= 5, "the ghost claimed nothing");
    reg.id
}

/// One step as a worker loop of one task at a time makes it: report `done`
/// (id, what its code produced, result) and, if `claim`, start one task.
pub fn step1(w: &mut Worker, done: Option<(&str, Outcome, &[u8])>, claim: bool, wait: Duration) -> (bool, Option<redq::worker::Task>) {
    if let Some((id, outcome, result)) = done {
        w.begin(id);
        w.end(id, outcome, result.to_vec());
    }
    let (accepted, tasks) = w.step(if claim { 1 } else { 0 }, wait).unwrap();
    (accepted.iter().any(|a| *a), tasks.into_iter().next())
}
