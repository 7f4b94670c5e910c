//! The `bpf()` system call, the few commands the accounting uses: create a
//! map (hash or array), load a program (with the verifier's log when it
//! refuses), link it to a cgroup, read (or take) a hash map in batches,
//! write and delete keys of any size; and the memory mapping of an array
//! map, which user space reads with no call at all. Each command's
//! attributes are a zeroed buffer with its fields written at the offsets
//! of the kernel's `union bpf_attr`; the kernel accepts a buffer larger
//! than it knows as long as the rest is zero.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const MAP_CREATE: libc::c_long = 0;
const MAP_UPDATE_ELEM: libc::c_long = 2;
const MAP_DELETE_ELEM: libc::c_long = 3;
const PROG_LOAD: libc::c_long = 5;
const MAP_LOOKUP_BATCH: libc::c_long = 24;
const MAP_LOOKUP_AND_DELETE_BATCH: libc::c_long = 25;
const LINK_CREATE: libc::c_long = 28;
const LINK_UPDATE: libc::c_long = 29;
/// `map_update_elem`'s flag: only a key that is there.
pub const EXIST: u64 = 2;

const MAP_TYPE_HASH: u32 = 1;
const MAP_TYPE_ARRAY: u32 = 2;
/// An array map user space may `mmap`.
const F_MMAPABLE: u32 = 1 << 10;
/// A hash map whose entries are allocated as they are inserted and freed
/// after the programs that may hold them are done (so a key deleted under
/// a counting program is never reused for another key meanwhile).
pub const F_NO_PREALLOC: u32 = 1;
const PROG_TYPE_CGROUP_SKB: u32 = 8;

/// Where a cgroup_skb program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ingress = 0,
    Egress = 1,
}

/// The verifier's log, at most this long.
const LOG_SIZE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("bpf({command}): {source}")]
    Call {
        command: &'static str,
        source: io::Error,
    },
    #[error("the kernel's verifier refused the {direction:?} program ({source}); its log:\n{log}")]
    Refused {
        direction: Direction,
        source: io::Error,
        log: String,
    },
}

/// A `union bpf_attr`, as bytes.
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }

    fn u32(mut self, offset: usize, value: u32) -> Attr {
        self.0[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
        self
    }

    fn u64(mut self, offset: usize, value: u64) -> Attr {
        self.0[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
        self
    }

    fn read_u32(&self, offset: usize) -> u32 {
        let mut b = [0; 4];
        b.copy_from_slice(&self.0[offset..offset + 4]);
        u32::from_ne_bytes(b)
    }
}

fn ptr<T>(p: *const T) -> u64 {
    p as usize as u64
}

/// One `bpf()` call; its result, or the errno as an error.
fn call(command: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live buffer of the length given; every pointer
    // written into it points into a buffer that outlives the call, with the
    // size the attribute next to it says.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr.0.as_mut_ptr(),
            attr.0.len() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A file descriptor the kernel returned.
fn owned(rc: libc::c_long) -> OwnedFd {
    // SAFETY: the bpf commands that return a value return a new fd, ours
    // alone from now on.
    unsafe { OwnedFd::from_raw_fd(rc as i32) }
}

/// A hash map of `max_entries` keys of `key_size` bytes to values of
/// `value_size`.
pub fn hash_map(
    name: &str,
    key_size: usize,
    value_size: usize,
    max_entries: u32,
) -> Result<OwnedFd, BpfError> {
    hash_map_with(name, key_size, value_size, max_entries, 0)
}

/// [`hash_map`], with map flags (such as [`F_NO_PREALLOC`]).
pub fn hash_map_with(
    name: &str,
    key_size: usize,
    value_size: usize,
    max_entries: u32,
    flags: u32,
) -> Result<OwnedFd, BpfError> {
    map_create(
        MAP_TYPE_HASH,
        flags,
        name,
        key_size,
        value_size,
        max_entries,
    )
}

/// An array map of `max_entries` values of `value_size` bytes (4-byte
/// keys), zeroed.
pub fn array_map(name: &str, value_size: usize, max_entries: u32) -> Result<OwnedFd, BpfError> {
    map_create(MAP_TYPE_ARRAY, 0, name, 4, value_size, max_entries)
}

fn map_create(
    kind: u32,
    flags: u32,
    name: &str,
    key_size: usize,
    value_size: usize,
    max_entries: u32,
) -> Result<OwnedFd, BpfError> {
    let mut attr = Attr::new()
        .u32(0, kind)
        .u32(4, key_size as u32)
        .u32(8, value_size as u32)
        .u32(12, max_entries)
        .u32(16, flags);
    let name = name.as_bytes();
    let len = name.len().min(15);
    attr.0[28..28 + len].copy_from_slice(&name[..len]);
    call(MAP_CREATE, &mut attr)
        .map(owned)
        .map_err(|source| BpfError::Call {
            command: "map create",
            source,
        })
}

/// Loads a cgroup_skb program for `direction`; a refusal carries the
/// verifier's log.
pub fn load_cgroup_skb(
    name: &str,
    direction: Direction,
    instructions: &[u8],
) -> Result<OwnedFd, BpfError> {
    // Only helpers open to any licence are used; the string is still required.
    let license = CString::new("MIT").unwrap_or_default();
    let mut log = vec![0u8; LOG_SIZE];
    let load = |log: &mut [u8], level: u32| {
        let mut attr = Attr::new()
            .u32(0, PROG_TYPE_CGROUP_SKB)
            .u32(4, (instructions.len() / 8) as u32)
            .u64(8, ptr(instructions.as_ptr()))
            .u64(16, ptr(license.as_ptr()))
            .u32(24, level)
            .u32(28, if level > 0 { log.len() as u32 } else { 0 })
            .u64(32, if level > 0 { ptr(log.as_ptr()) } else { 0 })
            .u32(68, direction as u32);
        let name = name.as_bytes();
        let len = name.len().min(15);
        attr.0[48..48 + len].copy_from_slice(&name[..len]);
        call(PROG_LOAD, &mut attr)
    };
    match load(&mut log, 0) {
        Ok(fd) => Ok(owned(fd)),
        Err(source) => {
            // Again with the log on, to say why.
            let _ = load(&mut log, 1);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(BpfError::Refused {
                direction,
                source,
                log: String::from_utf8_lossy(&log[..end]).trim_end().to_owned(),
            })
        }
    }
}

/// Links `program` to the cgroup open as `cgroup`; the link, and with it
/// the attachment, lasts as long as the returned fd (so a crash leaves
/// nothing behind). Links always coexist with other programs there.
pub fn link_cgroup(
    program: &OwnedFd,
    cgroup: &impl AsRawFd,
    direction: Direction,
) -> Result<OwnedFd, BpfError> {
    let mut attr = Attr::new()
        .u32(0, program.as_raw_fd() as u32)
        .u32(4, cgroup.as_raw_fd() as u32)
        .u32(8, direction as u32);
    call(LINK_CREATE, &mut attr)
        .map(owned)
        .map_err(|source| BpfError::Call {
            command: "link create",
            source,
        })
}

/// Swaps the program `link` runs for `program` (same type and hook), in
/// one step: each packet runs the one or the other, none both or neither.
pub fn link_update(link: &OwnedFd, program: &OwnedFd) -> Result<(), BpfError> {
    let mut attr = Attr::new()
        .u32(0, link.as_raw_fd() as u32)
        .u32(4, program.as_raw_fd() as u32);
    call(LINK_UPDATE, &mut attr)
        .map(drop)
        .map_err(|source| BpfError::Call {
            command: "link update",
            source,
        })
}

/// Every entry of `map` (8-byte keys, values of four u64), `chunk` at a
/// time: one call per chunk. With `take`, each entry read is deleted in
/// the same call, so nothing added between a read and a delete is lost.
pub fn read_all(map: &OwnedFd, chunk: usize, take: bool) -> Result<Vec<(u64, [u64; 4])>, BpfError> {
    Ok(read_keyed::<8, 4>(map, chunk, take)?
        .into_iter()
        .map(|(key, value)| (u64::from_ne_bytes(key), value))
        .collect())
}

/// A map entry read: its key's bytes, and its value's `V` u64s.
pub type Entry<const K: usize, const V: usize> = ([u8; K], [u64; V]);

/// [`read_all`] for a map whose keys are `K` bytes, returned as bytes. The
/// map's keys must be `K` bytes and its values `8 * V`: the kernel writes
/// that much per entry.
pub fn read_keyed<const K: usize, const V: usize>(
    map: &OwnedFd,
    chunk: usize,
    take: bool,
) -> Result<Vec<Entry<K, V>>, BpfError> {
    let (command, name) = if take {
        (MAP_LOOKUP_AND_DELETE_BATCH, "map lookup and delete batch")
    } else {
        (MAP_LOOKUP_BATCH, "map lookup batch")
    };
    let chunk = chunk.max(1);
    let mut entries = Vec::new();
    let mut keys = vec![[0u8; K]; chunk];
    let mut values = vec![[0u64; V]; chunk];
    // The batch token: a bucket index for a hash map.
    let mut token = [0u64; 1];
    let mut first = true;
    loop {
        let mut attr = Attr::new()
            .u64(0, if first { 0 } else { ptr(token.as_ptr()) })
            .u64(8, ptr(token.as_mut_ptr()))
            .u64(16, ptr(keys.as_mut_ptr()))
            .u64(24, ptr(values.as_mut_ptr()))
            .u32(32, keys.len() as u32)
            .u32(36, map.as_raw_fd() as u32);
        let result = call(command, &mut attr);
        let count = (attr.read_u32(32) as usize).min(keys.len());
        match result {
            Ok(_) => {}
            // One bucket holds more than a chunk: again, with room for it.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && keys.len() < 1 << 20 => {
                keys.resize(keys.len() * 2, [0; K]);
                values.resize(keys.len(), [0; V]);
                continue;
            }
            // The end: this last batch may still hold entries.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                entries.extend(
                    keys[..count]
                        .iter()
                        .copied()
                        .zip(values[..count].iter().copied()),
                );
                return Ok(entries);
            }
            Err(source) => {
                return Err(BpfError::Call {
                    command: name,
                    source,
                });
            }
        }
        entries.extend(
            keys[..count]
                .iter()
                .copied()
                .zip(values[..count].iter().copied()),
        );
        first = false;
    }
}

/// Removes `key` from `map`; a key already gone is not an error.
pub fn delete(map: &OwnedFd, key: u64) -> Result<(), BpfError> {
    delete_key(map, &key.to_ne_bytes()).map(drop)
}

/// Removes `key` (the map's key size) from `map`: whether it was there.
pub fn delete_key(map: &OwnedFd, key: &[u8]) -> Result<bool, BpfError> {
    let mut attr = Attr::new()
        .u32(0, map.as_raw_fd() as u32)
        .u64(8, ptr(key.as_ptr()));
    match call(MAP_DELETE_ELEM, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(source) => Err(BpfError::Call {
            command: "map delete",
            source,
        }),
    }
}

/// Sets `key` of a map with 8-byte keys to `value` (created or replaced).
pub fn update(map: &OwnedFd, key: u64, value: &[u8]) -> Result<(), BpfError> {
    update_key(map, &key.to_ne_bytes(), value)
}

/// Sets `key` to `value`, each the size the map was made with (created or
/// replaced).
pub fn update_key(map: &OwnedFd, key: &[u8], value: &[u8]) -> Result<(), BpfError> {
    update_key_with(map, key, value, 0)
}

/// [`update_key`] with the command's `flags` ([`EXIST`]: only a key that
/// is there; one that is not is an `ENOENT` error).
pub fn update_key_with(
    map: &OwnedFd,
    key: &[u8],
    value: &[u8],
    flags: u64,
) -> Result<(), BpfError> {
    let mut attr = Attr::new()
        .u32(0, map.as_raw_fd() as u32)
        .u64(8, ptr(key.as_ptr()))
        .u64(16, ptr(value.as_ptr()))
        .u64(24, flags);
    call(MAP_UPDATE_ELEM, &mut attr)
        .map(drop)
        .map_err(|source| BpfError::Call {
            command: "map update",
            source,
        })
}

/// An array map of `u64` quadruples, mapped into this process: the kernel's
/// programs and user space both add to its entries atomically, and user
/// space reads them with plain loads.
pub struct MappedArray {
    map: OwnedFd,
    base: std::ptr::NonNull<u64>,
    len: usize,
    entries: usize,
}

// SAFETY: the mapping is shared memory only ever accessed through atomics,
// and lives as long as the value.
unsafe impl Send for MappedArray {}
// SAFETY: as above: every access is an atomic operation.
unsafe impl Sync for MappedArray {}

impl MappedArray {
    /// An array of `entries` quadruples (4-byte keys), created mappable and
    /// mapped.
    pub fn create(name: &str, entries: u32) -> Result<MappedArray, BpfError> {
        let map = map_create(MAP_TYPE_ARRAY, F_MMAPABLE, name, 4, 32, entries)?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let len = (entries as usize * 32).div_ceil(page) * page;
        // SAFETY: a fresh shared mapping of the map's data, which the kernel
        // sizes to whole pages; checked for failure below.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(BpfError::Call {
                command: "mmap of the array map",
                source: io::Error::last_os_error(),
            });
        }
        let base = std::ptr::NonNull::new(at.cast::<u64>()).ok_or(BpfError::Call {
            command: "mmap of the array map",
            source: io::Error::from(io::ErrorKind::AddrNotAvailable),
        })?;
        Ok(MappedArray {
            map,
            base,
            len,
            entries: entries as usize,
        })
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.map
    }

    /// Field `field` of entry `entry`; none past the end.
    fn cell(&self, entry: usize, field: usize) -> Option<&std::sync::atomic::AtomicU64> {
        (entry < self.entries && field < 4).then(|| {
            // SAFETY: in bounds (checked above) of a live mapping, 8-byte
            // aligned (page-aligned base, 32-byte entries); the kernel's
            // programs only change it with atomic instructions.
            unsafe {
                std::sync::atomic::AtomicU64::from_ptr(self.base.as_ptr().add(entry * 4 + field))
            }
        })
    }

    /// Entry `entry`, each field loaded atomically (zeros past the end).
    pub fn get(&self, entry: usize) -> [u64; 4] {
        use std::sync::atomic::Ordering::Relaxed;
        std::array::from_fn(|f| self.cell(entry, f).map_or(0, |c| c.load(Relaxed)))
    }

    /// Adds to entry `entry`, as the programs do.
    pub fn add(&self, entry: usize, value: [u64; 4]) {
        use std::sync::atomic::Ordering::Relaxed;
        for (f, v) in value.into_iter().enumerate() {
            if let Some(c) = self.cell(entry, f).filter(|_| v != 0) {
                c.fetch_add(v, Relaxed);
            }
        }
    }

    /// Zeroes entry `entry`; only for an entry no program adds to anymore.
    pub fn clear(&self, entry: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        for c in (0..4).filter_map(|f| self.cell(entry, f)) {
            c.store(0, Relaxed);
        }
    }
}

impl Drop for MappedArray {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `create`, unmapped once; nothing
        // borrowed from it outlives `self`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}
