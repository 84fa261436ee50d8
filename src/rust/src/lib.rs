//! redq: a Redis task queue for R, with one job engine under several front
//! ends (foreach, the task API, futures, parallel clusters, BiocParallel,
//! rush).
//!
//! **Queue model.** A task is a hash `redq:{ns}:task:<id>` plus its id in
//! exactly one place: a queue list, one worker's running list, the
//! dependents set of a task it waits for, or nowhere once it has a
//! terminal status. Controllers submit in one pipeline (`queue`), workers
//! claim and complete in one Lua step (`worker`, `lua/step.lua`), and a
//! task's end is announced on its job's completion list.
//!
//! **The engine.** Every front end drives one loop, `engine::Job`:
//! submit, wait for any / the next n / all tasks in interruptible slices,
//! receive results in batches, with reaping, lost-worker reports and
//! resubmission of tasks the server lost done while waiting.
//!
//! **Where things are spelled.** Key names: `keys` (which also generates
//! the Lua key builders). Status words: `status`. Defaults, TTLs and
//! argument bounds: `protocol`. Atomic transitions: one script each under
//! `lua/`, loaded with a generated preamble by `scripts`.
//!
//! **Fault model.** A worker is alive while its lease key exists; its side
//! thread (`heartbeat`) renews it. Anyone may run the reaper (`monitor`),
//! which gives a lost worker's tasks back to their queues, or ends them
//! DIED after `max_attempts`. Results are first-writer-wins. Connections
//! reconnect with backoff (`connection`).
//!
//! **Trust.** With a secret (`REDQ_SECRET`, or the embedded servers' own),
//! everything R will unserialize (payloads, results, environments,
//! messages, values) is sealed by its writer and opened by its reader
//! before R sees it (`signature`).
//!
//! The only code that knows R is under `bindings/`.

pub mod big;
pub mod config;
pub mod connection;
pub mod controller;
pub mod engine;
pub mod error;
pub mod heartbeat;
pub mod id;
pub mod job_list;
pub mod keys;
pub mod monitor;
pub mod protocol;
pub mod queue;
pub mod registry;
pub mod rng;
pub mod scripts;
pub mod signature;
pub mod status;
pub mod submit;
pub mod task;
pub mod tasks;
pub mod worker;

mod bindings;

extendr_api::extendr_module! {
    mod redq;
    use bindings;
}
