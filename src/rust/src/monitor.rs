//! Fault detection: the reaper that turns expired leases into requeued (or
//! DIED) tasks. Anyone may run it: controllers while they wait, workers'
//! heartbeat threads between beats. See `lua/reap.lua`.

use crate::connection::Connection;
use crate::error::Result;
use crate::keys::Keys;
use crate::scripts::{self, invocation};

/// A worker the reaper found without a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostWorker {
    /// Worker id.
    pub id: String,
    /// Host it ran on, as it registered.
    pub host: String,
    /// Tasks put back in their queues.
    pub requeued: u64,
    /// Tasks that used up their attempts and ended DIED.
    pub died: u64,
}

/// Run the reaper once; returns the workers it declared lost.
pub fn reap(conn: &mut Connection, keys: &Keys) -> Result<Vec<LostWorker>> {
    let flat: Vec<redis::Value> = conn.run(|c| invocation(scripts::reap(), keys).invoke(c))?;
    let mut out = Vec::new();
    for w in flat.chunks(4) {
        if let [id, host, requeued, died] = w {
            out.push(LostWorker {
                id: redis::from_redis_value_ref(id).unwrap_or_default(),
                host: redis::from_redis_value_ref(host).unwrap_or_default(),
                requeued: redis::from_redis_value_ref(requeued).unwrap_or_default(),
                died: redis::from_redis_value_ref(died).unwrap_or_default(),
            });
        }
    }
    Ok(out)
}
