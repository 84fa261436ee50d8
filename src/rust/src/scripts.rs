//! The Lua scripts, one per atomic transition, each prefixed with the shared
//! preamble `lua/common.lua`. `redis::Script` sends EVALSHA and falls back to
//! EVAL after a server restart emptied the script cache.

use crate::keys::Keys;
use redis::Script;
use std::sync::OnceLock;

macro_rules! script {
    ($name:ident, $file:literal) => {
        #[doc = concat!("`lua/", $file, "` with the preamble.")]
        pub fn $name() -> &'static Script {
            static S: OnceLock<Script> = OnceLock::new();
            S.get_or_init(|| Script::new(concat!(include_str!("lua/common.lua"), "\n", include_str!(concat!("lua/", $file)))))
        }
    };
}

script!(step, "step.lua");
script!(complete, "complete.lua");
script!(reap, "reap.lua");
script!(exit_worker, "exit_worker.lua");
script!(release, "release.lua");
script!(cancel, "cancel.lua");
script!(delete, "delete.lua");
script!(retry, "retry.lua");
script!(beat, "beat.lua");
script!(keys_check, "keys_check.lua");

/// Source of `lua/link_deps.lua` with the preamble: sent with EVAL inside
/// a submission's MULTI/EXEC (EVALSHA there could fail on an empty script
/// cache and abort the whole transaction).
pub const LINK_DEPS: &str = concat!(include_str!("lua/common.lua"), "\n", include_str!("lua/link_deps.lua"));

/// Milliseconds since the Unix epoch, the time stamp every script records.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Start an invocation with the arguments every script expects:
/// KEYS[1] (slot routing), ARGV[1] prefix, ARGV[2] now.
pub fn invocation<'a>(script: &'a Script, keys: &Keys) -> redis::ScriptInvocation<'a> {
    let mut inv = script.prepare_invoke();
    inv.key(keys.version()).arg(keys.prefix()).arg(now_ms());
    inv
}
