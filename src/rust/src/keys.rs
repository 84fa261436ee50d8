//! Every Redis key redq uses is built here. One table (the `keys!` block
//! below) gives both the Rust methods and the Lua key builders `K.<name>`
//! of the script preamble (`scripts`), so the two cannot disagree.
//!
//! All keys of one namespace share the hash tag `{ns}`, so a namespace lives
//! in one Redis Cluster slot and every script stays legal there.

/// Key builder for one namespace.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

macro_rules! keys {
    ($( $(#[$doc:meta])* $name:ident ( $($arg:ident),* ) => [ $($part:tt),+ ] ; )*) => {
        impl Keys {
            $(
                $(#[$doc])*
                pub fn $name(&self, $($arg: &str),*) -> String {
                    self.k(&[$(keys!(@part $part)),+])
                }
            )*

            /// Every key shape, built with its argument names as values:
            /// (name, key). The Lua builders are checked against it.
            pub fn samples(&self) -> Vec<(&'static str, String)> {
                vec![$( (stringify!($name), self.$name($(stringify!($arg)),*)) ),*]
            }
        }

        /// Lua source of the key builders: `K.<name>(args)` for each shape.
        pub fn lua_builders() -> String {
            let mut s = String::from("local K = {}\n");
            $(
                s.push_str(concat!(
                    "function K.", stringify!($name), "(", keys!(@args $($arg),*), ") return PREFIX .. ",
                    keys!(@lua $($part),+), " end\n"));
            )*
            s
        }

        /// Lua expression returning {name, key, ...} for every shape, built
        /// with the argument names as values (compared with `samples`).
        pub fn lua_samples() -> String {
            let mut s = String::from("{");
            $(
                s.push_str(concat!("'", stringify!($name), "', K.", stringify!($name), "(",
                                   keys!(@quoted $($arg),*), "), "));
            )*
            s.push('}');
            s
        }
    };
    (@part $lit:literal) => { $lit };
    (@part $id:ident) => { $id };
    (@args) => { "" };
    (@args $first:ident $(, $rest:ident)*) => { concat!(stringify!($first) $(, ", ", stringify!($rest))*) };
    (@quoted) => { "" };
    (@quoted $first:ident $(, $rest:ident)*) => { concat!("'", stringify!($first), "'" $(, ", '", stringify!($rest), "'")*) };
    (@lua $first:tt $(, $rest:tt)*) => { concat!(keys!(@luapart $first) $(, " .. ':' .. ", keys!(@luapart $rest))*) };
    (@luapart $lit:literal) => { concat!("'", $lit, "'") };
    (@luapart $id:ident) => { stringify!($id) };
}

impl Keys {
    /// Keys of namespace `ns`.
    pub fn new(ns: &str) -> Keys {
        Keys { prefix: format!("redq:{{{ns}}}:") }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.prefix["redq:{".len()..self.prefix.len() - "}:".len()]
    }

    /// `redq:{ns}:`, handed to Lua scripts, whose builders append the same
    /// nouns.
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
}

keys! {
    /// Schema version of the namespace (string).
    version() => ["version"];
    /// PENDING task ids of a queue (list; pushed left, claimed from the right).
    queue(q) => ["queue", q];
    /// Names of queues that ever received a task (set).
    queues() => ["queues"];
    /// One task (hash: status, queue, result, times, attempts, ...).
    task(id) => ["task", id];
    /// Payloads of tasks that may still run: task id -> serialized R (hash).
    payloads() => ["payloads"];
    /// Tasks waiting for this one to end (set).
    task_dependents(id) => ["task", id, "dependents"];
    /// Ids created through the task API, oldest first (list).
    tasks() => ["tasks"];
    /// Registered, not yet lost or exited, worker ids (set).
    workers() => ["workers"];
    /// Worker info and status (hash).
    worker(w) => ["worker", w];
    /// Heartbeat lease: exists iff the worker is alive (string with TTL).
    worker_alive(w) => ["worker", w, "alive"];
    /// Ids the worker has claimed (the reliable-queue list).
    worker_running(w) => ["worker", w, "running"];
    /// The worker's event log: "<ms> <event> <detail>" lines, newest last,
    /// capped (list).
    worker_log(w) => ["worker", w, "log"];
    /// Control messages for the worker (list: STOP, KILL, CANCEL <id>, WAKE,
    /// MSG <id>).
    worker_control(w) => ["worker", w, "control"];
    /// A message to workers (hash: command, args).
    message(m) => ["message", m];
    /// Replies to a message (hash: worker id -> reply).
    response(m) => ["response", m];
    /// Listed jobs: job id -> description (hash).
    jobs() => ["jobs"];
    /// Serialized environment of a job (a foreach loop's).
    job_env(j) => ["job", j, "env"];
    /// Completion notices ("<task id> <status>") of a job's tasks (list). A
    /// controller's task API tasks report to the job named by its id.
    job_done(j) => ["job", j, "done"];
    /// A user value stored with `redisSet()` (string).
    data(name) => ["data", name];
    /// Lost-worker reports for waiting controllers (stream, capped).
    events() => ["events"];
    /// Running totals: tasks ended by status; the milliseconds workers spent
    /// on tasks (`ms`) and how many tasks those were (`timed`), reported
    /// with their beats (hash).
    counts() => ["counts"];
    /// Chunk `part` of a value over the inline limit (string; see `big`):
    /// `owner` is the task (and, for results, the worker) or job it
    /// belongs to.
    chunk(owner, part) => ["chunk", owner, part];
    /// A value shared by tasks, stored once under the SHA-256 of its
    /// serialization (string: the value, sealed, or a reference to its
    /// chunks).
    object(h) => ["object", h];
    /// How many owners refer to each shared object: SHA-256 -> count (hash).
    objects() => ["objects"];
    /// Set for a moment by each run of the reaper, which runs at most once
    /// while it exists (string with a time to live).
    reaped() => ["reaped"];
    /// How many references name each file of the offload directory:
    /// SHA-256 -> count (hash).
    offloaded() => ["offloaded"];
    /// Files of the offload directory no reference names any more, to be
    /// deleted by a process that has the directory (set of SHA-256).
    offload_gone() => ["offload_gone"];
    /// Ids of the latest tasks that ended other than COMPLETE, newest first
    /// (list, capped).
    failures() => ["failures"];
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
        assert!(k.samples().iter().all(|(_, key)| key.starts_with(k.prefix())));
        assert_eq!(k.namespace(), "ns");
    }

    #[test]
    fn lua_builders_cover_every_shape() {
        let lua = lua_builders();
        for (name, _) in Keys::new("x").samples() {
            assert!(lua.contains(&format!("function K.{name}(")), "{name}");
        }
        assert!(lua.contains("function K.worker_alive(w) return PREFIX .. 'worker' .. ':' .. w .. ':' .. 'alive' end"));
    }
}
