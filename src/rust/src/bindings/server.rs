//! What starting a local redis-server needs from the system: a free
//! loopback port, chosen by the operating system (no random number drawn
//! from R's generator).

use super::out;
use crate::error::Error;
use extendr_api::prelude::*;

/// A TCP port on 127.0.0.1 that was free a moment ago.
#[extendr]
fn rs_server_free_port() -> Robj {
    out(std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port() as i32)
        .map_err(|e| Error::System(format!("found no free TCP port on 127.0.0.1: {e}"))))
}

extendr_module! {
    mod server;
    fn rs_server_free_port;
}
