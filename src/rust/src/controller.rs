//! A controller: any process that submits work and waits for it. It owns
//! one connection and a private completion list for the tasks it creates.

use crate::config::Config;
use crate::connection::Connection;
use crate::error::Result;
use crate::keys::Keys;
use crate::task::new_id;
use crate::worker::check_version;

/// Connection, namespace keys, and this controller's completion list.
pub struct Controller {
    /// The connection (reconnects by itself after a failure).
    pub conn: Connection,
    /// Keys of the namespace.
    pub keys: Keys,
    /// This controller's id, recorded in the tasks it creates.
    pub cid: String,
    /// Completion notices of tasks this controller created.
    pub done: String,
}

impl Controller {
    /// Connect and check the namespace's schema version.
    pub fn open(cfg: &Config) -> Result<Controller> {
        let keys = Keys::new(&cfg.namespace);
        let mut conn = Connection::open(cfg)?;
        let version: Option<String> = conn.run(|c| redis::cmd("GET").arg(keys.version()).query(c))?;
        if let Some(v) = version {
            check_version(&v)?;
        }
        let cid = new_id();
        let done = keys.controller_done(&cid);
        Ok(Controller { conn, keys, cid, done })
    }

    /// Drop this controller's completion list.
    pub fn close(&mut self) -> Result<()> {
        let done = self.done.clone();
        self.conn.run(|c| redis::cmd("DEL").arg(&done).query(c))
    }
}
