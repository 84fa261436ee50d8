//! What a running task reads and writes through its worker: messages and
//! replies, progress, logs and events, relayed conditions, the job's
//! environment, shared objects and the namespace's values.

use crate::error::Result;
use crate::protocol;
use crate::big;
use crate::registry;
use crate::signature::Purpose;
use std::time::Duration;
use super::Worker;

impl Worker {
    /// Messages waiting for the R thread: (id, command, args).
    pub fn take_messages(&self) -> Vec<(String, String, Vec<u8>)> {
        std::mem::take(&mut *self.shared.messages.lock())
    }

    /// Reply to message `mid` (an R serialization).
    pub fn respond(&mut self, mid: &str, reply: &[u8]) -> Result<()> {
        // sealed by heartbeat::respond, as the side thread's replies
        let mut v = b"r".to_vec();
        v.extend_from_slice(reply);
        crate::heartbeat::respond(&mut self.conn, &self.reg.keys, &self.reg.id, mid, &v)
    }

    /// Record the running task's progress (a serialized R value) in its
    /// record, where any session reads it (`task_progress()`). False when
    /// no task is running.
    pub fn progress(&mut self, value: &[u8]) -> Result<bool> {
        let Some((id, _)) = self.relay_to.clone() else { return Ok(false) };
        let sealed = self.conn.config().seal(Purpose::Progress, &id, value);
        self.record("progress", &sealed)
    }

    /// Record what the running task printed (stdout, messages, warnings),
    /// at most `TASK_LOG_LIMIT` bytes (the end is kept), for `task_log()`.
    pub fn log(&mut self, text: &[u8]) -> Result<bool> {
        let text = if text.len() > protocol::TASK_LOG_LIMIT { &text[text.len() - protocol::TASK_LOG_LIMIT..] } else { text };
        self.record("log", text)
    }

    /// Add an event to this worker's log (`worker_log_tail()`).
    pub fn event(&mut self, text: &str) -> Result<()> {
        registry::event(&mut self.conn, &self.reg.keys, &self.reg.id, text)
    }

    fn record(&mut self, field: &'static str, value: &[u8]) -> Result<bool> {
        let Some((id, _)) = self.relay_to.clone() else { return Ok(false) };
        let k = self.reg.keys.task(&id);
        self.conn.run(|c| redis::cmd("HSET").arg(&k).arg(field).arg(value).query::<()>(c))?;
        Ok(true)
    }

    /// Send a message from the running task to whoever waits for it (a
    /// serialized condition: progress, a message): it goes to the task's
    /// job's completion list as "<id> @<bytes>", where the waiting engine
    /// hands it to the front end at once. Nothing happens for a task that
    /// reports to no job.
    pub fn relay(&mut self, message: &[u8]) -> Result<()> {
        let Some((id, job)) = self.relay_to.clone() else { return Ok(()) };
        if job.is_empty() {
            return Ok(());
        }
        let message = self.conn.config().seal(Purpose::Relay, &id, message);
        let mut item = Vec::with_capacity(id.len() + 2 + message.len());
        item.extend_from_slice(id.as_bytes());
        item.extend_from_slice(b" @");
        item.extend_from_slice(&message);
        let list = self.reg.keys.job_done(&job);
        self.conn.run(|c| {
            let n: i64 = redis::cmd("RPUSH").arg(&list).arg(&item).query(c)?;
            if n == 1 {
                redis::cmd("PEXPIRE").arg(&list).arg(protocol::NOTIFY_TTL_MS).query::<()>(c)?;
            }
            Ok(())
        })
    }

    /// Fetch a job's environment (checked like task payloads): the value,
    /// or the address of the shared object it is stored as (which the
    /// worker fetches with `object`, once for every job that shares it).
    pub fn job_env(&mut self, job: &str) -> Result<Option<JobEnv>> {
        let key = self.reg.keys.job_env(job);
        let env: Option<Vec<u8>> = self.conn.retry(Duration::from_secs(60), |c| redis::cmd("GET").arg(&key).query(c))?;
        let env = match env {
            Some(e) => big::resolve(&mut self.conn, &self.reg.keys, e)?,
            None => return Ok(None),
        };
        let env = self.conn.config().open(Purpose::Env, job, env)?;
        Ok(Some(match big::parse_object_ref(&env) {
            Some(sha) => JobEnv::Object(sha.to_string()),
            None => JobEnv::Value(env),
        }))
    }

    /// A shared object (a bulk submission's common arguments), checked.
    pub fn object(&mut self, sha: &str) -> Result<Vec<u8>> {
        big::read_shared(&mut self.conn, &self.reg.keys, sha)
    }

    /// A value of the namespace (`value_get()`), read on the worker's own
    /// connection.
    pub fn data_get(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        let key = self.reg.keys.data(name);
        let v: Option<Vec<u8>> = self.conn.run(|c| redis::cmd("GET").arg(&key).query(c))?;
        v.map(|v| self.conn.config().open(Purpose::Value, &key, v)).transpose()
    }
}

/// A job's environment as a worker fetches it.
pub enum JobEnv {
    /// The serialized environment.
    Value(Vec<u8>),
    /// The address of the shared object that holds it.
    Object(String),
}
