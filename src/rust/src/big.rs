//! Values of any size. A value over `protocol::BIG_VALUE` bytes (a task's
//! payload, its result, a job's environment) is not stored in its record:
//! it is cut into chunks of `protocol::BIG_CHUNK` bytes, each a string key
//! `chunk:<owner>:<part><i>`, written one command at a time (so neither
//! side packs the whole value into one buffer, and the server is never
//! busy with one value for long), and its record holds a short reference
//! instead: `\0redq-big:<length>:<chunks>:<sha256>:<owner>:<part>`. A
//! reader fetches the chunks into one buffer of the right size and checks
//! the length and the hash before anyone unserializes it. The owner of a
//! result's chunks names the worker too, so a late duplicate result never
//! overwrites the chunks of the one that was recorded.
//!
//! Chunks are written before the record that refers to them, with a time
//! to live, so that a writer that dies halfway leaves nothing for good;
//! the scripts that record a value for good (a task API task's result or
//! payload) make its chunks permanent too, and those that delete a value
//! delete its chunks (`drop_big` in `lua/common.lua`).

use crate::config::{Config, Offload};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::protocol::{BIG_CHUNK, BIG_VALUE, JOB_TTL_S};
use sha2::{Digest, Sha256};
use std::io::Write;

pub use crate::protocol::{BIG_MARK as MARK, FILE_PART as FILE, OBJECT_MARK};

/// Chunk parts: a task's payload, its result, a job's environment, a
/// shared object.
pub const PAYLOAD: &str = "p";
pub const RESULT: &str = "r";
pub const ENV: &str = "e";
pub const OBJECT: &str = "o";

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigRef {
    /// Bytes of the whole value.
    pub len: usize,
    /// Number of chunks.
    pub chunks: usize,
    /// SHA-256 of the value, in hex.
    pub sha: String,
    /// Whose chunks: `chunk:<owner>:<part><i>`.
    pub owner: String,
    pub part: String,
}

impl BigRef {
    /// The reference as stored in the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = MARK.to_vec();
        v.extend_from_slice(format!("{}:{}:{}:{}:{}", self.len, self.chunks, self.sha, self.owner, self.part).as_bytes());
        v
    }

    /// The key of chunk `i`.
    pub fn key(&self, keys: &Keys, i: usize) -> String {
        keys.chunk(&self.owner, &format!("{}{i}", self.part))
    }

    /// A reference, if `v` is one.
    pub fn parse(v: &[u8]) -> Option<BigRef> {
        let rest = std::str::from_utf8(v.strip_prefix(MARK)?).ok()?;
        let (rest, part) = rest.rsplit_once(':')?;
        let mut it = rest.splitn(4, ':');
        Some(BigRef {
            len: it.next()?.parse().ok()?,
            chunks: it.next()?.parse().ok()?,
            sha: it.next()?.to_string(),
            owner: it.next()?.to_string(),
            part: part.to_string(),
        })
    }
}

/// A reference to the shared object at address `sha`.
pub fn object_ref(sha: &str) -> Vec<u8> {
    let mut v = OBJECT_MARK.to_vec();
    v.extend_from_slice(sha.as_bytes());
    v
}

/// The address `v` refers to, if it is a reference to a shared object.
pub fn parse_object_ref(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v.strip_prefix(OBJECT_MARK)?).ok().filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// True when a value of `len` bytes is not stored inline: over the inline
/// limit, or over the offload threshold of a process that offloads.
pub fn is_big(cfg: &Config, len: usize) -> bool {
    len > BIG_VALUE || cfg.offload.as_ref().is_some_and(|o| len > o.threshold)
}

/// Store the concatenation of `parts` apart from its record: in chunks of
/// `owner`'s `part` (or, over the offload threshold, in a file of the
/// offload directory named by its hash); chunks live `JOB_TTL_S` unless
/// made permanent. Returns the reference. On failure, nothing written
/// stays.
pub fn write(conn: &mut Connection, keys: &Keys, owner: &str, part: &str, parts: &[&[u8]]) -> Result<BigRef> {
    let mut w = Writer::new(conn, keys, owner, part, 0);
    for p in parts {
        w.push(p);
    }
    match w.finish()? {
        Stored::Big(r) => Ok(r),
        Stored::Inline(_) => unreachable!("a writer with no inline room stores everything apart"),
    }
}

/// How a value written by a `Writer` was stored.
pub enum Stored {
    /// Small enough to go in its record: the bytes.
    Inline(Vec<u8>),
    /// Apart: the reference that goes in its record.
    Big(BigRef),
}

/// A value written as it is produced (by `write`, or by R's serializer
/// in the bindings), so that nobody holds it whole in memory a second
/// time: kept in memory while it fits in `inline` bytes, then streamed to
/// chunks of 1 MB (or to a file of the offload directory).
pub struct Writer<'a> {
    conn: &'a mut Connection,
    keys: &'a Keys,
    owner: String,
    part: String,
    inline: usize,
    buf: Vec<u8>,
    sha: Sha256,
    len: usize,
    chunks: usize,
    file: Option<(std::io::BufWriter<std::fs::File>, std::path::PathBuf, Offload)>,
    apart: bool,
    err: Option<Error>,
}

impl<'a> Writer<'a> {
    /// A writer keeping up to `inline` bytes (at most the inline limit, or
    /// the offload threshold) for the record itself.
    pub fn new(conn: &'a mut Connection, keys: &'a Keys, owner: &str, part: &str, inline: usize) -> Writer<'a> {
        let mut limit = inline.min(BIG_VALUE);
        if let Some(o) = &conn.config().offload {
            limit = limit.min(o.threshold);
        }
        Writer {
            conn,
            keys,
            owner: owner.to_string(),
            part: part.to_string(),
            inline: limit,
            buf: Vec::new(),
            sha: Sha256::new(),
            len: 0,
            chunks: 0,
            file: None,
            apart: false,
            err: None,
        }
    }

    /// Add bytes. An error is kept for `finish` (R's serializer, which
    /// calls this, cannot be told).
    pub fn push(&mut self, data: &[u8]) {
        if self.err.is_some() {
            return;
        }
        self.len += data.len();
        self.sha.update(data);
        if !self.apart && self.buf.len() + data.len() <= self.inline {
            self.buf.extend_from_slice(data);
            return;
        }
        if !self.apart {
            self.apart = true;
            if let Some(o) = self.conn.config().offload.clone() {
                let dir = offload_dir(&o, self.keys);
                let tmp = dir.join(format!(".{}.{}", crate::id::new_id(), std::process::id()));
                match std::fs::create_dir_all(&dir).and_then(|_| std::fs::File::create(&tmp)) {
                    Ok(f) => self.file = Some((std::io::BufWriter::with_capacity(BIG_CHUNK, f), tmp, o)),
                    Err(e) => {
                        self.err = Some(file_error(&o, e, "write"));
                        return;
                    }
                }
            }
        }
        if let Some((f, _, o)) = &mut self.file {
            let pending = std::mem::take(&mut self.buf);
            if let Err(e) = f.write_all(&pending).and_then(|_| f.write_all(data)) {
                self.err = Some(file_error(o, e, "write"));
            }
            return;
        }
        self.buf.extend_from_slice(data);
        let mut off = 0;
        while self.buf.len() - off >= BIG_CHUNK {
            let k = self.keys.chunk(&self.owner, &format!("{}{}", self.part, self.chunks));
            let chunk = &self.buf[off..off + BIG_CHUNK];
            if let Err(e) =
                self.conn.run(|c| redis::cmd("SET").arg(&k).arg(chunk).arg("EX").arg(JOB_TTL_S).query::<()>(c))
            {
                self.err = Some(e);
                break;
            }
            self.chunks += 1;
            off += BIG_CHUNK;
        }
        self.buf.drain(..off);
    }

    /// Give up: `finish` will remove what was written apart and return `e`
    /// (the producer of the bytes failed).
    pub fn fail(&mut self, e: Error) {
        if self.err.is_none() {
            self.err = Some(e);
        }
    }

    /// The value stored: inline bytes, or the reference to what was
    /// written apart. On failure, what was written apart is removed.
    pub fn finish(mut self) -> Result<Stored> {
        if self.err.is_none() && !self.apart {
            return Ok(Stored::Inline(std::mem::take(&mut self.buf)));
        }
        let sha = hex(&self.sha.clone().finalize());
        if let Some((f, tmp, o)) = self.file.take() {
            let done = self.err.take().map_or(Ok(()), Err).and_then(|_| {
                let f = f.into_inner().map_err(|e| file_error(&o, e.into_error(), "write"))?;
                f.sync_all().map_err(|e| file_error(&o, e, "write"))?;
                std::fs::rename(&tmp, offload_dir(&o, self.keys).join(&sha)).map_err(|e| file_error(&o, e, "write"))
            });
            if let Err(e) = done {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            // one reference more names the file (the scripts that drop a
            // reference count it down; see `sweep_offload`)
            let (counts, sha_ref) = (self.keys.offloaded(), &sha);
            self.conn.run(|c| redis::cmd("HINCRBY").arg(&counts).arg(sha_ref).arg(1).query::<()>(c))?;
            return Ok(Stored::Big(BigRef { len: self.len, chunks: 0, sha, owner: "file".into(), part: FILE.into() }));
        }
        if self.err.is_none() && (!self.buf.is_empty() || self.chunks == 0) {
            let k = self.keys.chunk(&self.owner, &format!("{}{}", self.part, self.chunks));
            let buf = std::mem::take(&mut self.buf);
            match self.conn.run(|c| redis::cmd("SET").arg(&k).arg(&buf[..]).arg("EX").arg(JOB_TTL_S).query::<()>(c)) {
                Ok(()) => self.chunks += 1,
                Err(e) => self.err = Some(e),
            }
        }
        if let Some(e) = self.err.take() {
            let _ = drop_chunks(self.conn, self.keys, &self.owner, &self.part, self.chunks + 1);
            return Err(e);
        }
        Ok(Stored::Big(BigRef { len: self.len, chunks: self.chunks, sha, owner: self.owner.clone(), part: self.part.clone() }))
    }
}

fn file_error(o: &Offload, e: std::io::Error, what: &str) -> Error {
    Error::Argument(format!("cannot {what} in the offload directory {}: {e}", o.path.display()))
}

/// The directory of a namespace's offloaded values: a directory of the
/// offload directory named by the namespace (or, if its name is not a
/// plain file name, by its hash), so that namespaces sharing the offload
/// directory count their files apart.
fn offload_dir(o: &Offload, keys: &Keys) -> std::path::PathBuf {
    let ns = keys.namespace();
    let plain = !ns.is_empty()
        && !ns.starts_with('.')
        && ns.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    o.path.join(if plain { ns.to_string() } else { format!("ns-{}", &address(ns.as_bytes())[..16]) })
}

/// How long a file no reference names is kept after it was last written:
/// a writer of the same content renames its file into place before it
/// counts its reference.
const OFFLOAD_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Delete the files of the offload directory that no reference names any
/// more (listed by the scripts that dropped their last reference), if
/// this process has the directory. Returns how many went.
pub fn sweep_offload(conn: &mut Connection, keys: &Keys) -> Result<usize> {
    let Some(o) = conn.config().offload.clone() else {
        return Ok(0);
    };
    let gone: Vec<String> = conn.run(|c| redis::cmd("SPOP").arg(keys.offload_gone()).arg(256).query(c))?;
    if gone.is_empty() {
        return Ok(0);
    }
    let mut p = redis::pipe();
    for sha in &gone {
        p.hexists(keys.offloaded(), sha);
    }
    let named: Vec<bool> = conn.pipe(&p)?;
    let dir = offload_dir(&o, keys);
    let (mut deleted, mut later) = (0, Vec::new());
    for (sha, named) in gone.into_iter().zip(named) {
        // named again meanwhile, or not a file name this wrote
        if named || sha.is_empty() || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let path = dir.join(&sha);
        match std::fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(t) if t.elapsed().map_or(true, |age| age < OFFLOAD_GRACE) => later.push(sha),
            Ok(_) => deleted += usize::from(std::fs::remove_file(&path).is_ok()),
            Err(_) => {}
        }
    }
    if !later.is_empty() {
        conn.run(|c| redis::cmd("SADD").arg(keys.offload_gone()).arg(&later).query::<()>(c))?;
    }
    Ok(deleted)
}

/// Delete the namespace's directory of offloaded values (when the
/// namespace itself is destroyed), if this process has the offload
/// directory.
pub fn remove_offload_dir(cfg: &Config, keys: &Keys) {
    if let Some(o) = &cfg.offload {
        let _ = std::fs::remove_dir_all(offload_dir(o, keys));
    }
}

/// Read an offloaded value, checked.
fn read_file(cfg: &Config, keys: &Keys, r: &BigRef) -> Result<Vec<u8>> {
    let o = cfg.offload.as_ref().ok_or_else(|| {
        Error::Argument(format!(
            "a value of {} bytes was offloaded to a file ({}), but this process has no offload_path \
             (REDQ_OFFLOAD_PATH): give it the directory the controller writes to",
            r.len, r.sha
        ))
    })?;
    let path = offload_dir(o, keys).join(&r.sha);
    let v = std::fs::read(&path).map_err(|e| {
        Error::Argument(format!("cannot read the offloaded value {} (offload_path {}): {e}", path.display(), o.path.display()))
    })?;
    if v.len() != r.len || address(&v) != r.sha {
        return Err(Error::Corrupt(format!("the offloaded file {} is not what was written", path.display())));
    }
    Ok(v)
}

/// Fetch the value `r` refers to, checked.
pub fn read(conn: &mut Connection, keys: &Keys, r: &BigRef) -> Result<Vec<u8>> {
    if r.part == FILE {
        return read_file(conn.config(), keys, r);
    }
    let owner = &r.owner;
    let mut out: Vec<u8> = Vec::new();
    out.try_reserve_exact(r.len)
        .map_err(|_| Error::Corrupt(format!("cannot allocate {} bytes for a stored value", r.len)))?;
    let mut sha = Sha256::new();
    for i in 0..r.chunks {
        let k = r.key(keys, i);
        let chunk: Option<Vec<u8>> = conn.run(|c| redis::cmd("GET").arg(&k).query(c))?;
        let chunk = chunk.ok_or_else(|| {
            Error::Corrupt(format!("chunk {} of {} of a stored value of {owner} is missing", i + 1, r.chunks))
        })?;
        sha.update(&chunk);
        out.extend_from_slice(&chunk);
    }
    if out.len() != r.len || hex(&sha.finalize()) != r.sha {
        return Err(Error::Corrupt(format!(
            "a stored value of {owner} is not what was written ({} bytes, expected {} with another hash)",
            out.len(),
            r.len
        )));
    }
    Ok(out)
}

/// The value itself, whether `v` is a reference or the value.
pub fn resolve(conn: &mut Connection, keys: &Keys, v: Vec<u8>) -> Result<Vec<u8>> {
    if !v.starts_with(MARK) {
        return Ok(v);
    }
    match BigRef::parse(&v) {
        Some(r) => read(conn, keys, &r),
        None => Ok(v),
    }
}

/// Drop what reference `r` names, which no record will hold: its chunks,
/// or its share of an offloaded file (`drop_value` in the scripts).
pub fn drop_ref(conn: &mut Connection, keys: &Keys, r: &BigRef) -> Result<()> {
    let v = r.encode();
    conn.run(|c| crate::scripts::invocation(crate::scripts::drop_ref(), keys).arg(&v).invoke::<()>(c))
}

/// Delete the chunks of `owner`'s `part`.
fn drop_chunks(conn: &mut Connection, keys: &Keys, owner: &str, part: &str, n: usize) -> Result<()> {
    let ks: Vec<String> = (0..n).map(|i| keys.chunk(owner, &format!("{part}{i}"))).collect();
    if ks.is_empty() {
        return Ok(());
    }
    conn.run(|c| redis::cmd("UNLINK").arg(&ks).query::<()>(c))
}

/// A value several tasks share (a bulk submission's common arguments),
/// ready to be stored once under the SHA-256 of its serialization.
#[derive(Debug, Clone)]
pub struct SharedObject {
    /// SHA-256 of the serialization, in hex: its address.
    pub sha: String,
    /// What the object's key holds: the sealed value, or a reference.
    pub stored: Vec<u8>,
    /// Its chunks, if it is over the inline limit.
    pub chunks: Option<BigRef>,
    /// True if the object was stored already and its new owners are
    /// counted (nothing uploaded: `stored` is empty).
    pub held: bool,
}

/// The address of a value: the SHA-256 of its bytes, in hex.
pub fn address(value: &[u8]) -> String {
    hex(&Sha256::digest(value))
}

/// A shared value for `owners` new owners (which expire, or not): if the
/// namespace holds its content already, the owners are counted now and
/// nothing is uploaded. Otherwise the value is sealed (signed with the
/// controller's secret, if any) and, over the inline limit, its chunks
/// written; `put_object.lua`, run in the owners' transaction, then keeps
/// the first upload of a content. The chunks of this upload have an owner
/// of their own, so that another upload of the same content never touches
/// them. If that transaction is refused, `give_back` undoes this.
pub fn prepare_shared(conn: &mut Connection, keys: &Keys, value: &[u8], owners: usize, expire: bool) -> Result<SharedObject> {
    let sha = address(value);
    if hold(conn, keys, &sha, owners as i64, expire)? {
        return Ok(SharedObject { sha, stored: Vec::new(), chunks: None, held: true });
    }
    let sealed = conn.config().seal(crate::signature::Purpose::Object, &sha, value);
    if is_big(conn.config(), sealed.len()) {
        let owner = format!("{sha}-{}", crate::id::new_id());
        let r = write(conn, keys, &owner, OBJECT, &[&sealed])?;
        Ok(SharedObject { sha, stored: r.encode(), chunks: Some(r), held: false })
    } else {
        Ok(SharedObject { sha, stored: sealed, chunks: None, held: false })
    }
}

/// Count `n` owners more (fewer, if negative) of the stored object `sha`;
/// false if there is none (only when counting more).
fn hold(conn: &mut Connection, keys: &Keys, sha: &str, n: i64, expire: bool) -> Result<bool> {
    let held: i64 = conn.run(|c| {
        crate::scripts::invocation(crate::scripts::hold_object(), keys)
            .arg(sha)
            .arg(n)
            .arg(if expire { "1" } else { "0" })
            .invoke(c)
    })?;
    Ok(held == 1)
}

/// The transaction that would have stored `o`'s `owners` owners was
/// refused: what `prepare_shared` wrote or counted goes (best effort).
pub fn give_back(conn: &mut Connection, keys: &Keys, o: &SharedObject, owners: usize) {
    if o.held {
        let _ = hold(conn, keys, &o.sha, -(owners as i64), true);
    } else if let Some(r) = &o.chunks {
        let _ = drop_ref(conn, keys, r);
    }
}

/// A shared object, as a worker receives it: fetched, its chunks checked,
/// its seal verified, and its content checked against its address.
pub fn read_shared(conn: &mut Connection, keys: &Keys, sha: &str) -> Result<Vec<u8>> {
    let k = keys.object(sha);
    let v: Option<Vec<u8>> = conn.run(|c| redis::cmd("GET").arg(&k).query(c))?;
    let v = v.ok_or_else(|| {
        Error::NotFound(format!("the shared object {sha} is gone (every task that used it ended, or it expired)"))
    })?;
    let v = resolve(conn, keys, v)?;
    let v = conn.config().open(crate::signature::Purpose::Object, sha, v)?;
    if address(&v) != sha {
        return Err(Error::Corrupt(format!("the shared object {sha} is not what was stored")));
    }
    Ok(v)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_round_trip_and_are_told_apart() {
        let r = BigRef { len: 123456789, chunks: 15, sha: "ab".repeat(32), owner: "t1:host-1".into(), part: "r".into() };
        assert_eq!(BigRef::parse(&r.encode()), Some(r));
        assert_eq!(BigRef::parse(b"X\n\0\0\0\x03"), None);
        assert_eq!(BigRef::parse(b"\0redq-big:12:x"), None);
    }
}
