//! Every Redis key redq uses is built here (and mirrored, for Lua, by
//! `lua/keys.lua`, which a test checks against this file).
//!
//! All keys of one namespace share the hash tag `{ns}`, so a namespace lives
//! in one Redis Cluster slot and every script stays legal there.

/// Key builder for one namespace.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys of namespace `ns`.
    pub fn new(ns: &str) -> Keys {
        Keys { prefix: format!("redq:{{{ns}}}:") }
    }

    /// `redq:{ns}:`, handed to Lua scripts, which append the same nouns.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn k(&self, parts: &[&str]) -> String {
        let mut s = String::with_capacity(self.prefix.len() + 48);
        s.push_str(&self.prefix);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                s.push(':');
            }
            s.push_str(p);
        }
        s
    }

    /// Schema version of the namespace (string).
    pub fn version(&self) -> String {
        self.k(&["version"])
    }
    /// PENDING task ids of a queue (list; pushed left, claimed from the right).
    pub fn queue(&self, q: &str) -> String {
        self.k(&["queue", q])
    }
    /// Names of queues that ever received a task (set).
    pub fn queues(&self) -> String {
        self.k(&["queues"])
    }
    /// One task (hash: status, queue, payload, result, times, ...).
    pub fn task(&self, id: &str) -> String {
        self.k(&["task", id])
    }
    /// Payloads of unfinished tasks: task id -> serialized R (hash).
    pub fn payloads(&self) -> String {
        self.k(&["payloads"])
    }
    /// Tasks waiting for this one to end (set).
    pub fn task_dependents(&self, id: &str) -> String {
        self.k(&["task", id, "dependents"])
    }
    /// Ids created through the task API, oldest first (list).
    pub fn tasks(&self) -> String {
        self.k(&["tasks"])
    }
    /// Registered, not yet lost or exited, worker ids (set).
    pub fn workers(&self) -> String {
        self.k(&["workers"])
    }
    /// Worker info and status (hash).
    pub fn worker(&self, wid: &str) -> String {
        self.k(&["worker", wid])
    }
    /// Heartbeat lease: exists iff the worker is alive (string with TTL).
    pub fn worker_alive(&self, wid: &str) -> String {
        self.k(&["worker", wid, "alive"])
    }
    /// Ids the worker has claimed (the reliable-queue list).
    pub fn worker_running(&self, wid: &str) -> String {
        self.k(&["worker", wid, "running"])
    }
    /// Control messages for the worker (list: STOP, KILL, CANCEL <id>, WAKE).
    pub fn worker_control(&self, wid: &str) -> String {
        self.k(&["worker", wid, "control"])
    }
    /// Running foreach jobs: job id -> description (hash).
    pub fn jobs(&self) -> String {
        self.k(&["jobs"])
    }
    /// Serialized environment of a foreach job.
    pub fn job_env(&self, jid: &str) -> String {
        self.k(&["job", jid, "env"])
    }
    /// Completion notices (task ids) of a foreach job (list).
    pub fn job_done(&self, jid: &str) -> String {
        self.k(&["job", jid, "done"])
    }
    /// Completion notices of tasks a controller created (list).
    pub fn controller_done(&self, cid: &str) -> String {
        self.k(&["controller", cid, "done"])
    }
    /// A user value stored with `redisSet()` (string).
    pub fn data(&self, name: &str) -> String {
        self.k(&["data", name])
    }
    /// Lost-worker reports for waiting controllers (stream, capped).
    pub fn events(&self) -> String {
        self.k(&["events"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_hash_tag() {
        let k = Keys::new("ns");
        assert_eq!(k.queue("jobs"), "redq:{ns}:queue:jobs");
        assert_eq!(k.worker_alive("w1"), "redq:{ns}:worker:w1:alive");
        assert_eq!(k.task("t"), "redq:{ns}:task:t");
        assert!(k.job_done("j").starts_with(k.prefix()));
    }
}
