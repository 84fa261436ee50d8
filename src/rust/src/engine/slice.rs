//! One slice of a wait and the work between slices: blocking for
//! completion notices, collecting ended tasks, reaping, checks for tasks
//! the server lost, resubmission, and riding out an unreachable server.

use super::Job;
use crate::big;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::monitor;
use crate::protocol::JOB_TTL_S;
use crate::submit::{self, Submit};
use crate::tasks::{self, Ended};
use crate::scripts::{self, invocation};
use crate::signature::{self, Purpose};
use crate::status;
use crate::task::TaskSpec;
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Most tasks read by one collect script: a script blocks the server, and
/// its reply (results included) must arrive within the read timeout.
const COLLECT_CHUNK: usize = 256;

impl Job {
    pub(super) fn upload_env(&mut self, conn: &mut Connection, env: &[u8], about: &str, shared: bool) -> Result<()> {
        let secret = conn.config().secret.clone();
        let mut p = redis::pipe();
        // a shared environment is an object stored once per content, the
        // key holding a (sealed) reference to it; stored in one transaction
        // with the key that counts as its owner
        let object = if shared { Some(big::prepare_shared(conn, &self.keys, env, 1, true)?) } else { None };
        let sealed = if let Some(o) = &object {
            p.atomic();
            submit::put_object(&mut p, &self.keys, crate::id::now_ms(), o, 1, true);
            signature::seal(secret.as_deref(), Purpose::Env, &self.id, &big::object_ref(&o.sha))
        } else {
            let sealed = signature::seal(secret.as_deref(), Purpose::Env, &self.id, env);
            // an environment over the inline limit goes in chunks, the key
            // holding the reference
            if big::is_big(conn.config(), sealed.len()) {
                big::write(conn, &self.keys, &self.id, big::ENV, &[&sealed])?.encode()
            } else {
                sealed
            }
        };
        p.cmd("SET").arg(self.keys.job_env(&self.id)).arg(&sealed).arg("EX").arg(JOB_TTL_S).ignore();
        p.hset(self.keys.jobs(), &self.id, about).ignore();
        let want_cursor = self.cursor.is_none();
        if want_cursor {
            p.cmd("XREVRANGE").arg(self.keys.events()).arg("+").arg("-").arg("COUNT").arg(1);
        }
        let reply: Vec<redis::Value> = match conn.run(|c| p.query(c)) {
            Ok(r) => r,
            Err(e) => {
                if let Some(o) = object.filter(|_| !e.is_connection()) {
                    // refused: the object's upload, or its new owner, goes
                    big::give_back(conn, &self.keys, &o, 1);
                }
                return Err(e);
            }
        };
        if want_cursor {
            self.cursor = Some(tail_of(reply.first()));
        }
        Ok(())
    }

    pub(super) fn ensure_cursor(&mut self, conn: &mut Connection) -> Result<()> {
        if self.cursor.is_none() {
            self.cursor = Some(monitor::events_tail(conn, &self.keys)?);
        }
        Ok(())
    }

    pub(super) fn is_ours(&self, id: &str) -> bool {
        self.held.contains_key(id) || self.watched.contains(id)
    }

    pub(super) fn waiting_for(&self, only: Option<&HashSet<&str>>) -> usize {
        match only {
            None => self.held.len() + self.watched.len(),
            Some(o) => o.iter().filter(|id| self.is_ours(id)).count(),
        }
    }

    pub(super) fn take_ready(&mut self, out: &mut Vec<Ended>, only: Option<&HashSet<&str>>, want: super::Want) {
        let limit = match want {
            super::Want::Next(n) => n,
            _ => usize::MAX,
        };
        let mut keep = VecDeque::with_capacity(self.ready.len());
        while let Some(e) = self.ready.pop_front() {
            if out.len() < limit && only.map_or(true, |o| o.contains(e.id.as_str())) {
                out.push(e);
            } else {
                keep.push_back(e);
            }
        }
        self.ready = keep;
    }

    /// What a wait that failed had taken: back where the next wait finds it.
    pub(super) fn give_back(&mut self, batch: super::Batch) {
        for e in batch.ended.into_iter().rev() {
            self.ready.push_front(e);
        }
        let later = std::mem::replace(&mut self.relayed, batch.relayed);
        self.relayed.extend(later);
    }

    /// One slice: block for completion notices and take in what ended,
    /// then do whatever periodic work is due.
    pub(super) fn step(&mut self, conn: &mut Connection, slice: Duration) -> Result<()> {
        if self.need_check {
            // the caller looks at what this found before blocking
            return self.check(conn, true);
        }
        let notices = self.poll(conn, slice)?;
        let quiet = notices.is_empty();
        self.take_notices(conn, notices)?;
        self.periodic(conn, quiet)
    }

    /// Take in completion notices (and the job's own cancellation, and
    /// messages running tasks relay).
    fn take_notices(&mut self, conn: &mut Connection, notices: Vec<Vec<u8>>) -> Result<()> {
        let mut ours = Vec::with_capacity(notices.len());
        for n in &notices {
            let Some(space) = n.iter().position(|&b| b == b' ') else { continue };
            let id = String::from_utf8_lossy(&n[..space]);
            let rest = &n[space + 1..];
            if id == self.id {
                // the job itself: cancelled from another session
                self.cancelled = true;
            } else if let Some(message) = rest.strip_prefix(b"@") {
                // a relayed condition whose seal does not verify is dropped:
                // it is no result, and R must not unserialize it
                if self.opts.relay && self.is_ours(&id) {
                    if let Ok(m) = conn.config().open(Purpose::Relay, &id, message.to_vec()) {
                        self.relayed.push((id.into_owned(), m));
                    }
                }
            } else if self.is_ours(&id) {
                // "<status>" or "<status> <result>" (see notice() in common.lua)
                let (st, result) = match rest.iter().position(|&b| b == b' ') {
                    Some(at) => (&rest[..at], Some(rest[at + 1..].to_vec())),
                    None => (rest, None),
                };
                ours.push((id.into_owned(), String::from_utf8_lossy(st).into_owned(), result));
            }
        }
        self.ended(conn, ours)
    }

    /// Block up to `slice` for the first notice, then take every other
    /// notice already there, without blocking. A zero slice only takes. A
    /// notice is "<id> <status>" when a task ended, "<id> @<bytes>" for a
    /// message a running task relays.
    fn poll(&mut self, conn: &mut Connection, slice: Duration) -> Result<Vec<Vec<u8>>> {
        if slice.is_zero() {
            let got: Option<Vec<Vec<u8>>> = conn.run(|c| redis::cmd("LPOP").arg(&self.done).arg(100_000).query(c))?;
            return Ok(got.unwrap_or_default());
        }
        // Redis blocking timeouts have ~100 ms resolution; never block 0 (= for ever)
        let secs = slice.as_secs_f64().max(0.01);
        let first: Option<(Vec<u8>, Vec<u8>)> =
            conn.run_blocking(slice, |c| redis::cmd("BLPOP").arg(&self.done).arg(secs).query(c))?;
        let Some((_, first)) = first else { return Ok(vec![]) };
        let mut notices = vec![first];
        if self.held.len() + self.watched.len() > 1 || self.opts.relay {
            let more: Option<Vec<Vec<u8>>> = conn.run(|c| redis::cmd("LPOP").arg(&self.done).arg(100_000).query(c))?;
            notices.extend(more.unwrap_or_default());
        }
        Ok(notices)
    }

    /// Tasks known to have ended, with the status they ended with (and
    /// the result, when small enough to come with the notice). A job that
    /// does not fetch results has all it needs for tasks it does not own,
    /// and passes on a result that came along; the others are collected.
    fn ended(&mut self, conn: &mut Connection, ended: Vec<(String, String, Option<Vec<u8>>)>) -> Result<()> {
        let mut collect = Vec::new();
        for (id, st, result) in ended {
            if !self.is_ours(&id) || !status::is_done(&st) {
                continue;
            }
            if self.opts.fetch || self.held.contains_key(&id) {
                collect.push(id);
            } else {
                // a notice carries only an inline result, never a reference
                let result = tasks::open_result(conn, &self.keys, &id, result)?;
                self.deliver(id, st, result);
            }
        }
        self.collect(conn, collect)
    }

    fn deliver(&mut self, id: String, status: String, result: std::result::Result<Option<Vec<u8>>, String>) {
        let tag = match self.held.remove(&id) {
            Some(t) => {
                self.acked.push(id.clone());
                t.tag
            }
            None => None,
        };
        self.watched.remove(&id);
        self.foreign.remove(&id);
        self.progressed = true;
        self.ready.push_back(Ended::new(id, status, result, tag));
    }

    /// Read tasks that ended (statuses, and results if the job fetches
    /// them), in scripts of at most `COLLECT_CHUNK` tasks, and queue them
    /// for handing out. A job that consumes its tasks deletes, in the same
    /// script, those it received with the previous collect. A task held
    /// here that the server no longer knows is submitted again.
    fn collect(&mut self, conn: &mut Connection, ids: Vec<String>) -> Result<()> {
        let mut seen = HashSet::with_capacity(ids.len());
        let ids: Vec<String> = ids.into_iter().filter(|id| seen.insert(id.clone())).collect();
        let mut lost = Vec::new();
        for chunk in ids.chunks(COLLECT_CHUNK) {
            let acks: Vec<String> = if self.opts.consume { std::mem::take(&mut self.acked) } else { Vec::new() };
            let mut inv = invocation(scripts::collect(), &self.keys);
            inv.arg(if self.opts.fetch { "1" } else { "0" }).arg(acks.len());
            for id in acks.iter().chain(chunk) {
                inv.arg(id);
            }
            let flat: Vec<redis::Value> = match conn.run(|c| inv.invoke(c)) {
                Ok(v) => v,
                Err(e) => {
                    // not deleted, as far as we know: try again next time
                    self.acked.extend(acks);
                    return Err(e);
                }
            };
            for (id, read) in chunk.iter().zip(flat.chunks(3)) {
                let st: String = redis::from_redis_value_ref(&read[0]).unwrap_or_default();
                let result: Option<Vec<u8>> = redis::from_redis_value_ref(&read[1]).unwrap_or_default();
                let attempt: u32 = redis::from_redis_value_ref(&read[2]).unwrap_or(0);
                if st == status::MISSING && self.held.contains_key(id) {
                    lost.push(id.clone());
                } else if status::is_done(&st) {
                    // it ran again: a worker it ran on may have been lost
                    self.rerun |= attempt > 1;
                    let result = tasks::open_result(conn, &self.keys, id, result)?;
                    self.deliver(id.clone(), st, result);
                }
                // anything else is a stale notice (the task was retried): ignore
            }
        }
        self.resubmit(conn, lost)
    }

    /// Workers found lost (by any reaper) since the last look, each
    /// reported once.
    pub(super) fn read_lost(&mut self, conn: &mut Connection) -> Result<()> {
        self.ensure_cursor(conn)?;
        let since = self.cursor.clone().unwrap_or_else(|| "0-0".into());
        let (found, last) = monitor::lost_since(conn, &self.keys, &since)?;
        self.cursor = Some(last);
        for w in found {
            if self.reported.insert(w.id.clone()) {
                self.lost.push(w);
            }
        }
        Ok(())
    }

    /// Work that is due whether or not notices arrive: the reaper, the
    /// check for tasks the server lost, and, on quiet slices, a look at
    /// watched tasks that report elsewhere.
    fn periodic(&mut self, conn: &mut Connection, quiet: bool) -> Result<()> {
        if self.last_reap.elapsed() >= self.opts.reap_every {
            self.last_reap = Instant::now();
            self.ensure_cursor(conn)?;
            monitor::reap(conn, &self.keys, self.opts.reap_every)?;
            self.read_lost(conn)?;
            big::sweep_offload(conn, &self.keys)?;
        }
        if self.last_check.elapsed() >= self.opts.check_every {
            self.check(conn, true)
        } else if quiet && !self.foreign.is_empty() && self.last_foreign.elapsed() >= self.foreign_every() {
            self.check(conn, false)
        } else {
            Ok(())
        }
    }

    /// How often to read the statuses of watched tasks that report
    /// elsewhere: every slice for a few, less often for many, so that the
    /// reads cost the server a small share of its time.
    fn foreign_every(&self) -> Duration {
        self.opts.slice.max(Duration::from_micros(20 * self.foreign.len() as u64))
    }

    /// Read, in one round trip, the status of outstanding tasks (`all`:
    /// every one, and whether the job environment still exists; else only
    /// watched tasks that report elsewhere). Ended tasks whose notice did
    /// not come are taken in; held tasks the server lost are submitted
    /// again, after the environment if that is gone too. The first check
    /// after `watch` also learns which watched tasks report elsewhere.
    pub(super) fn check(&mut self, conn: &mut Connection, all: bool) -> Result<()> {
        let ids: Vec<String> = if all {
            self.held.keys().chain(self.watched.iter()).cloned().collect()
        } else {
            self.foreign.iter().cloned().collect()
        };
        let classify = self.need_check;
        let mut p = redis::pipe();
        let want_cursor = self.cursor.is_none();
        if want_cursor {
            p.cmd("XREVRANGE").arg(self.keys.events()).arg("+").arg("-").arg("COUNT").arg(1);
        }
        let want_env = all && self.env.is_some();
        if want_env {
            p.exists(self.keys.job_env(&self.id));
        }
        for id in &ids {
            // the queue too on the first look (a task keeps its queue), for
            // the look at who serves it (`workers.rs`)
            p.cmd("HMGET").arg(self.keys.task(id)).arg("status").arg("job");
            if classify {
                p.arg("queue");
            }
        }
        // the notices already there too: they carry small results
        p.cmd("LPOP").arg(&self.done).arg(100_000);
        let reply: Vec<redis::Value> = conn.pipe(&p)?;
        let mut it = reply.iter();
        if want_cursor {
            self.cursor = Some(tail_of(it.next()));
        }
        if want_env {
            let exists = it.next().is_some_and(|v| redis::from_redis_value_ref::<bool>(v).unwrap_or(false));
            if !exists {
                if let Some((env, about, shared)) = self.env.take() {
                    let done = self.upload_env(conn, &env, &about, shared);
                    self.env = Some((env, about, shared));
                    done?;
                }
            }
        }
        let mut ended = Vec::new();
        let mut lost = Vec::new();
        let statuses: Vec<(String, &redis::Value)> = ids.into_iter().zip(it.by_ref()).collect();
        let notices: Option<Vec<Vec<u8>>> = it.next().and_then(|v| redis::from_redis_value_ref(v).ok()).flatten();
        // what the notices say first (a task they report leaves this job's
        // outstanding set, so its status is not taken in twice)
        self.take_notices(conn, notices.unwrap_or_default())?;
        for (id, v) in statuses {
            if !self.is_ours(&id) {
                continue;
            }
            let mut fields: Vec<Option<String>> = redis::from_redis_value_ref(v).unwrap_or_default();
            fields.resize(3, None);
            let (st, job, queue) = (fields[0].take(), fields[1].take(), fields[2].take());
            if classify && self.watched.contains(&id) && job.as_deref() != Some(self.id.as_str()) {
                self.foreign.insert(id.clone());
            }
            if let Some(q) = queue.filter(|_| self.watched.contains(&id)) {
                self.queues.insert(q);
            }
            match st {
                None if self.held.contains_key(&id) => lost.push(id),
                None => ended.push((id, status::MISSING.to_string(), None)),
                Some(s) if status::is_done(&s) => ended.push((id, s, None)),
                Some(_) => {}
            }
        }
        if all {
            self.need_check = false;
            self.last_check = Instant::now();
        }
        self.last_foreign = Instant::now();
        self.resubmit(conn, lost)?;
        self.ended(conn, ended)
    }

    /// Submit again, under the same ids, tasks the server lost.
    fn resubmit(&mut self, conn: &mut Connection, ids: Vec<String>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let specs: Vec<TaskSpec> = ids.iter().filter_map(|id| self.held.get(id).cloned()).collect();
        submit::submit(conn, &self.keys, &specs, Submit { register: false, expire: self.opts.consume })
    }

    /// Wait for an unreachable server to come back (backoff from 50 ms to
    /// 1 s, interrupts checked in between), for up to `patience`, or until
    /// the wait's own deadline. Returns whether the server is back (then a
    /// check follows), false when the deadline came first.
    pub(super) fn ride_out(
        &mut self,
        conn: &mut Connection,
        first: Error,
        hooks: &mut super::Hooks<'_>,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        let give_up = Instant::now() + self.opts.patience;
        let mut pause = Duration::from_millis(50);
        let mut last = first;
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                self.need_check = true;
                return Ok(false);
            }
            if now >= give_up {
                self.server_gone = true;
                return Err(Error::Connection(format!(
                    "{last}; gave up after waiting {:.0} s for the server to come back",
                    self.opts.patience.as_secs_f64()
                )));
            }
            if (hooks.interrupted)() {
                return Err(Error::Interrupted);
            }
            let mut nap = pause.min(self.opts.slice);
            if let Some(d) = deadline {
                nap = nap.min(d.saturating_duration_since(now));
            }
            std::thread::sleep(nap);
            pause = (pause * 2).min(Duration::from_secs(1));
            match conn.run(|c| redis::cmd("PING").query::<String>(c)) {
                Ok(_) => {
                    self.need_check = true;
                    self.server_gone = false;
                    return Ok(true);
                }
                Err(e) if e.is_connection() => last = e,
                Err(e) => return Err(e),
            }
        }
    }
}

/// The id of the newest event in an XREVRANGE reply ("0-0" when none).
fn tail_of(v: Option<&redis::Value>) -> String {
    v.and_then(|v| redis::from_redis_value_ref::<Vec<(String, Vec<(String, String)>)>>(v).ok())
        .and_then(|v| v.into_iter().next())
        .map_or_else(|| "0-0".to_string(), |(id, _)| id)
}
