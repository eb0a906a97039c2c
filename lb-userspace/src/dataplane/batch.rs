//! Many entries of an array map in one system call: `BPF_MAP_LOOKUP_BATCH` over runs of
//! consecutive indices and `BPF_MAP_UPDATE_BATCH` at any indices (kernel 5.6 and later; aya
//! has neither). The kernel still reads or writes each entry on its own, so a batch is no more
//! atomic than the single writes it replaces: what an update batch wrote before a failure stays
//! written.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
};

use aya::{
    Pod,
    maps::{Array, IterableMap, MapData, PerCpuArray},
};

/// `enum bpf_cmd`.
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Runs one batch command; the number of entries it handled, with the error that stopped it.
///
/// # Safety
/// The buffers `attr` points at hold (or have room for) `count` keys and `count` entries of
/// the map's values.
unsafe fn batch(cmd: libc::c_long, attr: &mut BatchAttr) -> (u32, io::Result<()>) {
    // SAFETY: `attr` is a `bpf_attr` prefix of the size given, and the kernel touches only the
    // buffers it points at, within what the caller promised.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            size_of::<BatchAttr>(),
        )
    };
    let result = if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    };
    (attr.count, result)
}

/// Entries `ids` of an array map. One system call per run of consecutive ids.
pub fn lookup<V: Pod>(map: &Array<MapData, V>, ids: &[u32]) -> io::Result<Vec<V>> {
    // SAFETY: aya checked that the map's values are `V`s.
    unsafe { lookup_raw(map.map(), ids, 1) }
}

/// Entries `ids` of a per-CPU array map: the number of possible CPUs, and each entry's value
/// on every one of them, entry by entry. One system call per run of consecutive ids.
pub fn lookup_per_cpu<V: Pod>(
    map: &PerCpuArray<MapData, V>,
    ids: &[u32],
) -> io::Result<(usize, Vec<V>)> {
    // The kernel pads each CPU's value to 8 bytes.
    if !size_of::<V>().is_multiple_of(8) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
    // SAFETY: aya checked that the map's values are `V`s, which need no padding.
    Ok((cpus, unsafe { lookup_raw(map.map(), ids, cpus) }?))
}

/// Entries `ids` of an array map, each `per_id` values of `V`.
///
/// # Safety
/// Each entry of the map is `per_id` values of `V`, back to back.
unsafe fn lookup_raw<V: Pod>(map: &MapData, ids: &[u32], per_id: usize) -> io::Result<Vec<V>> {
    let mut values: Vec<V> = Vec::with_capacity(ids.len() * per_id);
    let mut keys = vec![0u32; ids.len()];
    let mut rest = ids;
    while let Some(&first) = rest.first() {
        let run = 1 + rest
            .windows(2)
            .take_while(|w| w[0].checked_add(1) == Some(w[1]))
            .count();
        // The batch starts after `in_batch`: the entry before the run, if there is one.
        let before = first.wrapping_sub(1);
        let mut last = 0u32;
        let done = values.len();
        let mut attr = BatchAttr {
            in_batch: if first == 0 {
                0
            } else {
                std::ptr::from_ref(&before) as u64
            },
            out_batch: std::ptr::from_mut(&mut last) as u64,
            keys: keys.as_mut_ptr() as u64,
            // Room for `run * per_id` more values is reserved.
            values: values.spare_capacity_mut().as_mut_ptr() as u64,
            count: run as u32,
            map_fd: map.fd().as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `keys` has room for `run` ids, `values` for `run` entries of `per_id` values
        // of `V`, which are the map's entries (the caller's promise).
        let (count, result) = unsafe { batch(BPF_MAP_LOOKUP_BATCH, &mut attr) };
        result?;
        if count as usize != run || last != first + (run as u32 - 1) {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        // SAFETY: the kernel wrote `run` whole entries of `per_id` values each after the first
        // `done`, and `V` is plain data.
        unsafe { values.set_len(done + run * per_id) };
        rest = &rest[run..];
    }
    Ok(values)
}

/// Writes `values[i]` into entry `ids[i]` of an array map, in one system call. On failure the
/// entries before the one that failed are written.
pub fn update<V: Pod>(map: &Array<MapData, V>, ids: &[u32], values: &[V]) -> io::Result<()> {
    if ids.len() != values.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    if ids.is_empty() {
        return Ok(());
    }
    let mut attr = BatchAttr {
        keys: ids.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: ids.len() as u32,
        map_fd: map.map().fd().as_fd().as_raw_fd() as u32,
        ..BatchAttr::default()
    };
    // SAFETY: aya checked that the map's values are `V`s; `ids` and `values` hold `count`.
    unsafe { batch(BPF_MAP_UPDATE_BATCH, &mut attr) }.1
}
