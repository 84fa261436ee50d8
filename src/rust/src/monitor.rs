//! Fault detection: the reaper that turns expired leases into requeued (or
//! DIED) tasks. Anyone may run it: controllers while they wait, workers'
//! heartbeat threads between beats. See `lua/reap.lua`.

use crate::connection::Connection;
use crate::error::Result;
use crate::keys::Keys;
use crate::scripts::{self, invocation};

use crate::status::LEASE_RAN_OUT;

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
    /// Why: "lost its lease", or how its process ended.
    pub why: String,
}

impl LostWorker {
    /// What a waiting controller tells its user.
    pub fn describe(&self) -> String {
        format!(
            "worker {} on host {} {}: {} task(s) requeued, {} ended {}",
            self.id,
            self.host,
            if self.why.is_empty() || self.why == LEASE_RAN_OUT { "stopped answering".to_string() } else { format!("was lost ({})", self.why) },
            self.requeued,
            self.died,
            crate::status::DIED
        )
    }
}

/// Run the reaper once, unless some process ran it less than `at_most_every`
/// ago (zero: run it now); returns the workers it declared lost.
pub fn reap(conn: &mut Connection, keys: &Keys, at_most_every: std::time::Duration) -> Result<Vec<LostWorker>> {
    let every = at_most_every.as_millis() as u64;
    let flat: Vec<redis::Value> = conn.run(|c| invocation(scripts::reap(), keys).arg(every).invoke(c))?;
    let mut out = Vec::new();
    for w in flat.chunks(4) {
        if let [id, host, requeued, died] = w {
            out.push(LostWorker {
                id: redis::from_redis_value_ref(id).unwrap_or_default(),
                host: redis::from_redis_value_ref(host).unwrap_or_default(),
                requeued: redis::from_redis_value_ref(requeued).unwrap_or_default(),
                died: redis::from_redis_value_ref(died).unwrap_or_default(),
                why: LEASE_RAN_OUT.into(),
            });
        }
    }
    Ok(out)
}

/// Workers whose processes the caller saw end, each with how it ended:
/// those still registered are declared lost now (see `lua/lose.lua`).
/// Returns the ids that were lost rather than gone on their own, which
/// the caller may replace.
pub fn lose(conn: &mut Connection, keys: &Keys, gone: &[(String, String)]) -> Result<Vec<String>> {
    if gone.is_empty() {
        return Ok(vec![]);
    }
    let mut inv = invocation(scripts::lose(), keys);
    for (wid, why) in gone {
        inv.arg(wid).arg(why);
    }
    let flags: Vec<i64> = conn.run(|c| inv.invoke(c))?;
    Ok(gone.iter().zip(flags).filter(|(_, f)| *f == 1).map(|((w, _), _)| w.clone()).collect())
}

/// For each of `queues`: (tasks waiting in it, live workers serving it).
pub fn serving(conn: &mut Connection, keys: &Keys, queues: &[String]) -> Result<Vec<(u64, u64)>> {
    if queues.is_empty() {
        return Ok(vec![]);
    }
    let mut inv = invocation(scripts::serving(), keys);
    for q in queues {
        inv.arg(q);
    }
    let flat: Vec<u64> = conn.run(|c| inv.invoke(c))?;
    Ok(flat.chunks(2).map(|c| (c[0], c.get(1).copied().unwrap_or(0))).collect())
}

/// The id of the newest event, the starting point of `lost_since` ("0-0"
/// when there is none).
pub fn events_tail(conn: &mut Connection, keys: &Keys) -> Result<String> {
    let v: Vec<(String, Vec<(String, String)>)> =
        conn.run(|c| redis::cmd("XREVRANGE").arg(keys.events()).arg("+").arg("-").arg("COUNT").arg(1).query(c))?;
    Ok(v.into_iter().next().map_or_else(|| "0-0".to_string(), |(id, _)| id))
}

/// Workers reported lost after event `since` (whoever reaped them), and the
/// id to continue from.
pub fn lost_since(conn: &mut Connection, keys: &Keys, since: &str) -> Result<(Vec<LostWorker>, String)> {
    let v: Vec<(String, Vec<(String, String)>)> =
        conn.run(|c| redis::cmd("XRANGE").arg(keys.events()).arg(format!("({since}")).arg("+").query(c))?;
    let mut last = since.to_string();
    let mut out = Vec::with_capacity(v.len());
    for (id, fields) in v {
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone()).unwrap_or_default();
        out.push(LostWorker {
            id: get("worker"),
            host: get("host"),
            requeued: get("requeued").parse().unwrap_or(0),
            died: get("died").parse().unwrap_or(0),
            why: get("why"),
        });
        last = id;
    }
    Ok((out, last))
}
