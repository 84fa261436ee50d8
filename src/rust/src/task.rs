//! What a task is on the wire: its spec at submission, and fresh ids.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// foreach job the task belongs to, if any.
    pub job: Option<String>,
    /// Id of the controller to notify when the task ends (foreach tasks
    /// notify their job instead).
    pub notify: Option<String>,
    /// Tasks that must complete before this one may run.
    pub depends_on: Vec<String>,
}

impl TaskSpec {
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
        if let Some(n) = &self.notify {
            f.push(("notify", n.clone()));
        }
        if !self.depends_on.is_empty() {
            f.push(("depends_on", self.depends_on.join(",")));
        }
        f
    }
}

/// An 11-character id (64 random bits in base 62), unique with
/// overwhelming probability across processes and machines (random seed,
/// time, pid and a counter). Short, because every queued task spells its
/// id four times in Redis.
pub fn new_id() -> String {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(crate::scripts::now_ms());
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut n = h.finish();
    (0..11)
        .map(|_| {
            let d = DIGITS[(n % 62) as usize] as char;
            n /= 62;
            d
        })
        .collect()
}

/// Default number of attempts before a task whose worker keeps dying ends DIED.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Fields of the task hash that `task_info()` shows (not the payload or result).
pub const INFO_FIELDS: [&str; 13] = [
    "status", "queue", "worker", "attempt", "max_attempts", "timeout", "created", "started",
    "finished", "job", "history", "notify", "depends_on",
];


#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_distinct() {
        let a: std::collections::HashSet<String> = (0..10000).map(|_| super::new_id()).collect();
        assert_eq!(a.len(), 10000);
        assert!(a.iter().all(|s| s.len() == 11 && s.bytes().all(|b| b.is_ascii_alphanumeric())));
    }
}
