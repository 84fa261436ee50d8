//! Queues: how many tasks wait in one and which, the queues of a
//! namespace, removing one.


use crate::connection::Connection;
use crate::error::Result;
use crate::keys::Keys;

/// Number of PENDING tasks in a queue.
pub fn length(conn: &mut Connection, keys: &Keys, queue: &str) -> Result<usize> {
    conn.run(|c| redis::cmd("LLEN").arg(keys.queue(queue)).query(c))
}

/// Ids waiting in a queue, next first.
pub fn waiting(conn: &mut Connection, keys: &Keys, queue: &str) -> Result<Vec<String>> {
    let mut v: Vec<String> = conn.run(|c| redis::cmd("LRANGE").arg(keys.queue(queue)).arg(0).arg(-1).query(c))?;
    v.reverse();
    Ok(v)
}

/// Names of queues that ever received a task.
pub fn list(conn: &mut Connection, keys: &Keys) -> Result<Vec<String>> {
    let mut v: Vec<String> = conn.run(|c| redis::cmd("SMEMBERS").arg(keys.queues()).query(c))?;
    v.sort();
    Ok(v)
}

/// Drop a queue: its PENDING tasks end CANCELLED, then the list goes.
pub fn remove(conn: &mut Connection, keys: &Keys, queue: &str) -> Result<usize> {
    let ids: Vec<String> = conn.run(|c| redis::cmd("LRANGE").arg(keys.queue(queue)).arg(0).arg(-1).query(c))?;
    crate::tasks::cancel(conn, keys, &ids)?;
    conn.run(|c| redis::pipe().del(keys.queue(queue)).srem(keys.queues(), queue).query::<()>(c))?;
    Ok(ids.len())
}
