//! The one error type of the core. Every variant maps to an R condition class
//! `redq_error_<kind>` (see `Error::kind`), so R code can catch by class.

use std::fmt;

/// Everything that can go wrong in the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The server cannot be reached, or the connection broke.
    Connection(String),
    /// A wait ran out of time.
    Timeout(String),
    /// The caller passed something unusable.
    Argument(String),
    /// A task, worker or job id that the server does not know.
    NotFound(String),
    /// The server answered with an error (script error, ACL refusal, ...).
    Server(String),
    /// Controller and worker (or server data) disagree on the schema version.
    Version(String),
    /// A payload's signature is missing or does not verify.
    Signature(String),
    /// A worker cannot start or serve.
    Worker(String),
    /// A job was cancelled from another session.
    Cancelled(String),
    /// The user interrupted a blocking call.
    Interrupted,
    /// The server refused a write: it reached its memory limit.
    ServerMemory(String),
    /// A stored value is not what was written (a chunk missing or altered).
    Corrupt(String),
    /// No live worker serves a queue that a wait's tasks are in.
    NoWorkers(String),
    /// The operating system refused what redq needs (its random generator,
    /// a file's permissions).
    System(String),
}

/// Result with the core error.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The suffix of the R condition class, `redq_error_<kind>`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Connection(_) => "connection",
            Error::Timeout(_) => "timeout",
            Error::Argument(_) => "argument",
            Error::NotFound(_) => "not_found",
            Error::Server(_) => "server",
            Error::Version(_) => "version",
            Error::Signature(_) => "signature",
            Error::Worker(_) => "worker",
            Error::Cancelled(_) => "cancelled",
            Error::Interrupted => "interrupt",
            Error::ServerMemory(_) => "server_memory",
            Error::Corrupt(_) => "corrupt",
            Error::System(_) => "system",
            Error::NoWorkers(_) => "no_workers",
        }
    }

    /// True when the error means the server is (for now) unreachable.
    pub fn is_connection(&self) -> bool {
        matches!(self, Error::Connection(_))
    }

    /// True when a wait ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connection(m)
            | Error::Timeout(m)
            | Error::Argument(m)
            | Error::NotFound(m)
            | Error::Server(m)
            | Error::Version(m)
            | Error::Signature(m)
            | Error::Worker(m)
            | Error::Cancelled(m)
            | Error::ServerMemory(m)
            | Error::Corrupt(m)
            | Error::System(m)
            | Error::NoWorkers(m) => f.write_str(m),
            Error::Interrupted => f.write_str("interrupted by the user"),
        }
    }
}

impl std::error::Error for Error {}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
            Error::Connection(format!("lost the connection to Redis: {e}"))
        } else if e.code() == Some("OOM") || e.to_string().contains("OOM command not allowed") {
            Error::ServerMemory(format!(
                "the Redis server refused the write: it is at its memory limit (maxmemory) ({e}); \
                 free memory (delete finished tasks, lower what is queued), raise maxmemory, \
                 or keep large objects out of Redis with offload_path"
            ))
        } else {
            Error::Server(format!("Redis answered with an error: {e}"))
        }
    }
}
