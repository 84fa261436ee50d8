//! redq: a Redis task queue for R, with a foreach backend.
//!
//! **Queue model.** A task is a hash `redq:{ns}:task:<id>` plus its id in
//! exactly one place: a queue list, one worker's running list, or nowhere
//! once it has a terminal status. Controllers submit in one pipeline
//! (`queue`), workers claim and complete in one Lua step (`worker`,
//! `lua/step.lua`), and completion notices go to a list the submitter
//! blocks on. foreach loops are jobs (`job`): an environment uploaded once,
//! tasks that carry chunks of iterations.
//!
//! **Where things are spelled.** Key names: `keys` (mirrored for Lua by
//! `lua/common.lua`). Status words: `status`. Atomic transitions: one
//! script each under `lua/`, loaded by `scripts`.
//!
//! **Fault model.** A worker is alive while its lease key exists; its side
//! thread (`heartbeat`) renews it. Anyone may run the reaper (`monitor`),
//! which gives a lost worker's tasks back to their queues, or ends them
//! DIED after `max_attempts`. Results are first-writer-wins. Connections
//! reconnect with backoff (`connection`).
//!
//! **Trust.** With `REDQ_SECRET` set, payloads are signed by controllers
//! and verified by workers before R sees them (`signature`).
//!
//! The only code that knows R is under `bindings/`.

pub mod config;
pub mod connection;
pub mod controller;
pub mod error;
pub mod heartbeat;
pub mod job;
pub mod keys;
pub mod monitor;
pub mod queue;
pub mod scripts;
pub mod signature;
pub mod status;
pub mod task;
pub mod worker;

mod bindings;

extendr_api::extendr_module! {
    mod redq;
    use bindings;
}
