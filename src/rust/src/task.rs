//! What a task is on the wire: its spec at submission, fresh ids, and its
//! bookkeeping as `task_info()` reports it.

use crate::error::{Error, Result};
use crate::protocol::{self, DEFAULT_MAX_ATTEMPTS};
use crate::status::{CANCELLED, COMPLETE, ERROR, TIMEOUT};
use crate::rng::Stream;
use crate::id::new_id;

/// A task to submit. `payload` is R `serialize()` bytes; the core never
/// looks inside.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    /// Unique id (see `new_id`).
    pub id: String,
    /// Queue name.
    pub queue: String,
    /// Serialized R payload.
    pub payload: Vec<u8>,
    /// Seconds the task may run, or none.
    pub timeout: Option<f64>,
    /// Runs allowed before a task whose workers keep dying ends DIED.
    pub max_attempts: u32,
    /// The job whose completion list is told when the task ends: a foreach
    /// loop's, or the creating controller's id for task API tasks.
    pub job: Option<String>,
    /// Tasks that must complete before this one may run.
    pub depends_on: Vec<String>,
    /// The random number stream the worker installs before running it.
    pub seed: Option<Stream>,
    /// A number the front end gives the task (foreach: the index of its
    /// first iteration) and receives back with its result.
    pub tag: Option<f64>,
    /// The shared object (SHA-256) its payload refers to.
    pub object: Option<String>,
}

impl TaskSpec {
    /// A task with defaults: no timeout, default attempts, no job, no
    /// dependencies, seed or tag.
    pub fn new(queue: &str, payload: Vec<u8>) -> TaskSpec {
        TaskSpec {
            id: new_id(),
            queue: queue.to_string(),
            payload,
            timeout: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            job: None,
            depends_on: Vec::new(),
            seed: None,
            tag: None,
            object: None,
        }
    }

    /// Tasks sharing one submission's settings, each checked: a timeout in
    /// seconds (None or Inf: none), attempts (None: the default).
    pub fn batch(queue: &str, payloads: Vec<Vec<u8>>, timeout: Option<f64>, max_attempts: Option<f64>) -> Result<Vec<TaskSpec>> {
        crate::config::validate_name("queue", queue)?;
        let timeout = match timeout {
            Some(t) => protocol::seconds("timeout", t, true, false)?.map(|d| d.as_secs_f64()),
            None => None,
        };
        if let Some(t) = timeout.filter(|t| *t < protocol::MIN_TASK_TIMEOUT_S) {
            return Err(crate::error::Error::Argument(format!(
                "'timeout' is {t} seconds; a task's timeout must be at least {} s (a worker cannot \
                 interrupt a task sooner), or Inf for none",
                protocol::MIN_TASK_TIMEOUT_S
            )));
        }
        let max_attempts = match max_attempts {
            Some(m) => protocol::required_count("max_attempts", m, 1, protocol::count_limit("max_attempts"))? as u32,
            None => DEFAULT_MAX_ATTEMPTS,
        };
        Ok(payloads
            .into_iter()
            .map(|payload| TaskSpec { timeout, max_attempts, ..TaskSpec::new(queue, payload) })
            .collect())
    }

    /// The `HSET` field/value pairs that create the task hash. The payload
    /// goes elsewhere (`Keys::payloads`) and defaults are left out, which
    /// keeps the hash in Redis' compact encoding.
    pub fn fields(&self, now: u64) -> Vec<(&'static str, String)> {
        let mut f: Vec<(&'static str, String)> = vec![
            ("status", if self.depends_on.is_empty() { crate::status::PENDING } else { crate::status::DEFERRED }.to_string()),
            ("queue", self.queue.clone()),
            ("created", now.to_string()),
        ];
        if self.max_attempts != DEFAULT_MAX_ATTEMPTS {
            f.push(("max_attempts", self.max_attempts.to_string()));
        }
        if let Some(t) = self.timeout {
            f.push(("timeout", t.to_string()));
        }
        if let Some(j) = &self.job {
            f.push(("job", j.clone()));
        }
        if !self.depends_on.is_empty() {
            f.push(("depends_on", self.depends_on.join(",")));
        }
        if let Some(s) = self.seed {
            f.push(("seed", s.encode()));
        }
        if let Some(t) = self.tag {
            f.push(("tag", t.to_string()));
        }
        if let Some(o) = &self.object {
            f.push(("object", o.clone()));
        }
        f
    }
}

/// Give tasks their tags (none, or one each) and, with a base stream,
/// their random number streams: task i gets the stream `tag - 1` streams
/// after `base`, so a foreach iteration's numbers depend on its index only.
pub fn tag(tasks: &mut [TaskSpec], tags: &[f64], base: Option<Stream>) -> Result<()> {
    if !tags.is_empty() && tags.len() != tasks.len() {
        return Err(Error::Argument(format!("give one tag per task ({} tags for {} tasks)", tags.len(), tasks.len())));
    }
    for (i, t) in tasks.iter_mut().enumerate() {
        t.tag = tags.get(i).copied();
        if let Some(b) = base {
            let n = t.tag.unwrap_or(1.0);
            if !(n >= 1.0 && n.fract() == 0.0 && n <= 2f64.powi(53)) {
                return Err(Error::Argument(format!("with a seed, tags must be whole numbers from 1, not {n}")));
            }
            t.seed = Some(b.advance(n as u64 - 1));
        }
    }
    Ok(())
}


/// Fields of the task hash that `task_info()` shows (not the payload or result).
pub const INFO_FIELDS: [&str; 13] = [
    "status", "queue", "worker", "attempt", "max_attempts", "timeout", "created", "started",
    "finished", "job", "history", "depends_on", "tag",
];

/// One ended attempt of a task.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    /// Worker that ran it ('' for a retry).
    pub worker: String,
    /// Start, ms since the epoch (None if it never started).
    pub started: Option<f64>,
    /// End, ms since the epoch.
    pub ended: Option<f64>,
    /// How it ended: a status, LOST, or RETRY.
    pub outcome: String,
}

/// A task's bookkeeping.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskInfo {
    /// The hash's fields, bar the history (defaults filled in).
    pub fields: Vec<(String, String)>,
    /// Ended attempts, oldest first.
    pub attempts: Vec<Attempt>,
}

impl TaskInfo {
    /// From the values of `INFO_FIELDS` (None where absent). The history
    /// lists the attempts that did not end the task; the one that did (a
    /// worker recorded its end: COMPLETE, ERROR, TIMEOUT, CANCELLED while
    /// running) is read from the task's own fields.
    pub fn from_values(values: Vec<Option<String>>) -> TaskInfo {
        let mut fields = Vec::new();
        let mut attempts = Vec::new();
        for (k, v) in INFO_FIELDS.iter().zip(values) {
            match (*k, v) {
                ("history", Some(h)) => attempts = parse_history(&h),
                (_, Some(v)) => fields.push((k.to_string(), v)),
                _ => {}
            }
        }
        if !fields.iter().any(|(k, _)| k == "max_attempts") {
            fields.push(("max_attempts".into(), DEFAULT_MAX_ATTEMPTS.to_string()));
        }
        let mut info = TaskInfo { fields, attempts };
        if let Some(last) = info.final_attempt() {
            info.attempts.push(last);
        }
        info
    }

    /// The attempt that ended the task, if a worker recorded its end.
    fn final_attempt(&self) -> Option<Attempt> {
        let status = self.get("status")?;
        let ran = [COMPLETE, ERROR, TIMEOUT, CANCELLED].contains(&status);
        let worker = self.get("worker").filter(|w| !w.is_empty())?;
        let started = self.get("started").and_then(|s| s.parse().ok());
        if !ran || started.is_none() {
            return None;
        }
        Some(Attempt {
            worker: worker.to_string(),
            started,
            ended: self.get("finished").and_then(|s| s.parse().ok()),
            outcome: status.to_string(),
        })
    }

    /// A field's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The history field: one `worker|started|ended|outcome` line per attempt.
fn parse_history(h: &str) -> Vec<Attempt> {
    let ms = |s: &str| s.parse::<f64>().ok();
    h.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let p: Vec<&str> = l.split('|').collect();
            let at = |i: usize| p.get(i).copied().unwrap_or("");
            Attempt { worker: at(0).to_string(), started: ms(at(1)), ended: ms(at(2)), outcome: at(3).to_string() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct() {
        let a: std::collections::HashSet<String> = (0..10000).map(|_| new_id()).collect();
        assert_eq!(a.len(), 10000);
        assert!(a.iter().all(|s| s.len() == 11 && s.bytes().all(|b| b.is_ascii_alphanumeric())));
    }

    #[test]
    fn history_becomes_attempts() {
        let mut v: Vec<Option<String>> = vec![None; INFO_FIELDS.len()];
        let at = |f: &str| INFO_FIELDS.iter().position(|k| *k == f).unwrap();
        v[at("status")] = Some("COMPLETE".into());
        v[at("history")] = Some("w1|100|200|LOST\n||300|RETRY\n".into());
        v[at("worker")] = Some("w2".into());
        v[at("started")] = Some("400".into());
        v[at("finished")] = Some("500".into());
        let info = TaskInfo::from_values(v.clone());
        assert_eq!(info.get("status"), Some("COMPLETE"));
        assert_eq!(info.get("max_attempts"), Some("3"));
        assert_eq!(info.attempts.len(), 3);
        assert_eq!(info.attempts[1], Attempt { worker: "".into(), started: None, ended: Some(300.0), outcome: "RETRY".into() });
        assert_eq!(info.attempts[2], Attempt { worker: "w2".into(), started: Some(400.0), ended: Some(500.0), outcome: "COMPLETE".into() });
        // a task that died has no attempt of its own beyond the history
        v[at("status")] = Some("DIED".into());
        assert_eq!(TaskInfo::from_values(v).attempts.len(), 2);
    }
}
