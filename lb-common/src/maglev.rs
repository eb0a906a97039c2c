//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), as IPVS's `mh` scheduler uses it:
//! every backend walks its own permutation of a prime-sized table, taking `weight / gcd` free
//! slots per round until the table is full. Removing one of N backends moves about 1/N of
//! the clients. The hash functions are xdpvs's own (IPVS seeds siphash at random), so the same
//! client maps to a different slot than under IPVS, with the same properties.

use crate::sched::weight_gcd;

/// Table sizes: IPVS's list of primes.
pub const TABLE_PRIMES: [u32; 10] = [
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
];

/// The table size for `backends` servers: the smallest listed prime of at least 100 slots per
/// backend (keeping reassignment near 1/N), 251 at least, the largest listed beyond.
pub fn table_size(backends: usize) -> u32 {
    let wanted = (backends as u64 * 100).max(1);
    TABLE_PRIMES
        .into_iter()
        .find(|p| u64::from(*p) >= wanted)
        .unwrap_or(TABLE_PRIMES[9])
}

/// murmur3's 32-bit finalizer.
const fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The hash of a client (address, and port with mh-port; host byte order) that picks its slot.
pub const fn client_hash(addr: u32, port: u16) -> u32 {
    fmix(addr ^ fmix(port as u32 ^ 0x9e37_79b9))
}

/// A backend's permutation of a table of prime size `m`: (first slot, step).
pub const fn permutation(addr: u32, port: u16, m: u32) -> (u32, u32) {
    let h1 = fmix(addr ^ fmix(port as u32 ^ 0x7f4a_7c15));
    let h2 = fmix(h1 ^ addr.rotate_left(16) ^ 0x165_667b1);
    (h1 % m, h2 % (m - 1) + 1)
}

/// Fills `table` (its length a prime from [`TABLE_PRIMES`]) with list positions of `backends`
/// (address, port, weight; host byte order). Weight-0 backends get no slot; with none left the
/// table is empty. `cursor` needs one slot per backend.
pub fn populate(backends: &[(u32, u16, u32)], table: &mut [Option<u32>], cursor: &mut [u32]) {
    table.fill(None);
    let m = table.len() as u32;
    let gcd = weight_gcd(backends.iter().map(|b| b.2));
    if m < 2 || backends.iter().all(|b| b.2 == 0) {
        return;
    }
    for ((addr, port, _), c) in backends.iter().zip(cursor.iter_mut()) {
        *c = permutation(*addr, *port, m).0;
    }
    let mut filled = 0;
    loop {
        for (i, (addr, port, weight)) in backends.iter().enumerate() {
            let skip = permutation(*addr, *port, m).1;
            for _ in 0..weight / gcd {
                let mut slot = cursor[i];
                while table[slot as usize].is_some() {
                    slot = (slot + skip) % m;
                }
                table[slot as usize] = Some(i as u32);
                cursor[i] = (slot + skip) % m;
                filled += 1;
                if filled == m {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{vec, vec::Vec};

    use super::*;

    fn build(backends: &[(u32, u16, u32)]) -> Vec<Option<u32>> {
        let mut table = vec![None; table_size(backends.len()) as usize];
        populate(backends, &mut table, &mut vec![0; backends.len()]);
        table
    }

    fn backends(n: u32) -> Vec<(u32, u16, u32)> {
        (0..n).map(|i| (0x0a00_0000 + i + 1, 80, 1)).collect()
    }

    /// The backend address each of `keys` maps to.
    fn owners(backends: &[(u32, u16, u32)], table: &[Option<u32>], keys: &[u32]) -> Vec<u32> {
        keys.iter()
            .map(|k| {
                backends
                    [table[(client_hash(*k, 0) % table.len() as u32) as usize].unwrap() as usize]
                    .0
            })
            .collect()
    }

    #[test]
    fn sizes_are_primes_with_room_per_backend() {
        assert_eq!(table_size(1), 251);
        assert_eq!(table_size(3), 509);
        assert_eq!(table_size(10), 1021);
        assert_eq!(table_size(1000), 131071);
        assert_eq!(table_size(5000), 131071);
    }

    #[test]
    fn table_is_full_and_balanced() {
        let b = backends(10);
        let t = build(&b);
        assert!(t.iter().all(Option::is_some));
        for i in 0..10 {
            let share = t.iter().filter(|s| **s == Some(i)).count();
            assert!((101..=103).contains(&share), "backend {i}: {share} of 1021");
        }
    }

    #[test]
    fn weights_are_honoured() {
        let t = build(&[(1, 80, 1), (2, 80, 2), (3, 80, 0)]);
        let share = |i| t.iter().filter(|s| **s == Some(i)).count() as f64 / t.len() as f64;
        assert!((share(0) - 1.0 / 3.0).abs() < 0.01 && (share(1) - 2.0 / 3.0).abs() < 0.01);
        assert_eq!(share(2), 0.0);
        assert!(build(&[(1, 80, 0)]).iter().all(Option::is_none));
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth_of_1000_keys() {
        let keys: Vec<u32> = (0..1000).map(|i| 0xc0a8_0000 + i * 7).collect();
        let before = backends(10);
        let mut after = before.clone();
        let removed = after.remove(4).0;
        let (t1, t2) = (build(&before), build(&after));
        let (o1, o2) = (owners(&before, &t1, &keys), owners(&after, &t2, &keys));
        let moved = o1.iter().zip(&o2).filter(|(a, b)| a != b).count();
        let on_removed = o1.iter().filter(|a| **a == removed).count();
        // Every key of the removed backend moves; few others do.
        assert!(o1.iter().zip(&o2).all(|(a, b)| *a != removed || b != a));
        assert!(moved >= on_removed);
        let fraction = moved as f64 / 1000.0;
        assert!(
            (0.07..=0.14).contains(&fraction),
            "moved {moved} of 1000 (1/N = 100)"
        );
    }
}
