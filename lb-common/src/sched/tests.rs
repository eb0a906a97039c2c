//! Hand-worked IPVS sequences for every scheduler.

use std::{cell::Cell, vec, vec::Vec};

use super::*;

/// The dest id of the server at list position `pos`: far from the positions, so that a pick
/// that returned a position would not pass for an id.
const fn id_of(pos: u32) -> u32 {
    1000 + pos
}

/// A plain list with its table of dest ids, as the daemon would write them.
struct List {
    servers: Vec<Cell<Candidate>>,
    table: Vec<Option<u32>>,
}

impl List {
    fn new(servers: &[Candidate], scheduler: Scheduler) -> Self {
        let weights: Vec<u32> = servers.iter().map(|c| c.weight).collect();
        let table = match scheduler {
            Scheduler::Dh => dh_table(servers.len()).to_vec(),
            Scheduler::Mh => {
                let backends: Vec<_> = weights
                    .iter()
                    .enumerate()
                    .map(|(i, w)| (i as u32 + 1, 80, *w))
                    .collect();
                let mut table = vec![None; crate::maglev::table_size(backends.len()) as usize];
                crate::maglev::populate(&backends, &mut table, &mut vec![0; backends.len()]);
                table
            }
            _ => sh_table(&weights).to_vec(),
        };
        Self {
            servers: servers.iter().copied().map(Cell::new).collect(),
            table: table.into_iter().map(|pos| pos.map(id_of)).collect(),
        }
    }

    /// The list position of the server with dest id `id`.
    fn position(&self, id: u32) -> u32 {
        (0..self.count())
            .find(|pos| id_of(*pos) == id)
            .unwrap_or_else(|| panic!("{id} is not a dest id of the list"))
    }

    /// A pick, as the list position of the server it chose.
    fn pick(&self, p: &Params, state: &mut SchedState, pkt: &Addresses) -> Option<u32> {
        pick(p, state, pkt, self).map(|id| self.position(id))
    }

    fn params(&self, scheduler: Scheduler, flags: u8) -> Params {
        let weights = || self.servers.iter().map(|c| c.get().weight);
        Params {
            scheduler,
            flags,
            max_weight: weights().max().unwrap_or(0),
            weight_gcd: weight_gcd(weights()),
            table_size: self.table.len() as u32,
        }
    }
}

impl Servers for List {
    fn count(&self) -> u32 {
        self.servers.len() as u32
    }
    fn candidate(&self, pos: u32) -> Option<Candidate> {
        let c = self.servers.get(pos as usize)?.get();
        Some(Candidate {
            id: id_of(pos),
            ..c
        })
    }
    fn bucket(&self, bucket: u32) -> Option<Candidate> {
        let id = self.table.get(bucket as usize).copied().flatten()?;
        self.candidate(self.position(id))
    }
    fn each<F: FnMut(u32) -> bool>(&self, n: u32, mut f: F) {
        for i in 0..n {
            if f(i) {
                break;
            }
        }
    }
}

fn c(weight: u32, active: u32, inactive: u32) -> Candidate {
    Candidate {
        id: 0,
        weight,
        active,
        inactive,
        reachable: true,
    }
}

fn seq(s: Scheduler, servers: &[Candidate], picks: usize) -> Vec<Option<u32>> {
    let list = List::new(servers, s);
    let p = list.params(s, 0);
    let mut state = SchedState::default();
    (0..picks)
        .map(|_| list.pick(&p, &mut state, &Addresses::default()))
        .collect()
}

fn once(s: Scheduler, servers: &[Candidate]) -> Option<u32> {
    seq(s, servers, 1)[0]
}

fn letters(picks: &[Option<u32>]) -> std::string::String {
    picks
        .iter()
        .map(|p| p.map_or('-', |p| (b'a' + p as u8) as char))
        .collect()
}

#[test]
fn names_round_trip() {
    for s in Scheduler::ALL {
        assert_eq!(Scheduler::from_name(s.name()), Some(s));
        assert_eq!(Scheduler::from_u8(s as u8), Some(s));
    }
    assert_eq!(Scheduler::from_name("xyz"), None);
}

#[test]
fn rr_cycles_and_skips_unusable() {
    let servers = [
        c(1, 0, 0),
        c(0, 0, 0),
        c(1, 0, 0),
        Candidate {
            reachable: false,
            ..c(1, 0, 0)
        },
    ];
    assert_eq!(letters(&seq(Scheduler::Rr, &servers, 4)), "acac");
}

#[test]
fn nothing_usable_gives_none() {
    for s in Scheduler::ALL {
        assert_eq!(once(s, &[c(0, 0, 0), c(0, 5, 0)]), None, "{s:?}");
        assert_eq!(once(s, &[]), None, "{s:?}");
    }
}

#[test]
fn lc_smallest_overhead_first_on_tie() {
    // overheads: 1*256+0 = 256, 0*256+300 = 300, 256 (tie with the first).
    assert_eq!(
        once(Scheduler::Lc, &[c(1, 1, 0), c(1, 0, 300), c(1, 1, 0)]),
        Some(0)
    );
    assert_eq!(
        once(Scheduler::Lc, &[c(1, 2, 0), c(5, 1, 10), c(1, 1, 9)]),
        Some(2)
    );
}

#[test]
fn wlc_cross_multiplies_and_keeps_earlier_on_tie() {
    // 256/1 vs 512/2: equal, keep the first.
    assert_eq!(once(Scheduler::Wlc, &[c(1, 1, 0), c(2, 2, 0)]), Some(0));
    // 256/1 vs 256/2: the second is better.
    assert_eq!(once(Scheduler::Wlc, &[c(1, 1, 0), c(2, 1, 0)]), Some(1));
    // Weight 0 is never picked even when idle.
    assert_eq!(once(Scheduler::Wlc, &[c(0, 0, 0), c(1, 9, 9)]), Some(1));
    // Inactive connections weigh 1/256 of an active one.
    assert_eq!(once(Scheduler::Wlc, &[c(1, 0, 255), c(1, 1, 0)]), Some(0));
    assert_eq!(once(Scheduler::Wlc, &[c(1, 0, 257), c(1, 1, 0)]), Some(1));
}

#[test]
fn sed_ignores_inactive() {
    // (0+1)/1 vs (1+1)/3: the second is better although it has more connections.
    assert_eq!(once(Scheduler::Sed, &[c(1, 0, 0), c(3, 1, 0)]), Some(1));
    assert_eq!(once(Scheduler::Sed, &[c(1, 0, 1000), c(1, 0, 0)]), Some(0));
}

#[test]
fn nq_takes_an_idle_server_at_once() {
    // The sed choice would be the heavy-weight busy server; nq prefers the idle one.
    assert_eq!(once(Scheduler::Nq, &[c(10, 1, 0), c(1, 0, 0)]), Some(1));
    assert_eq!(once(Scheduler::Nq, &[c(10, 1, 0), c(1, 1, 0)]), Some(0));
}

#[test]
fn wrr_interleaves_like_ipvs() {
    let abc = [c(4, 0, 0), c(3, 0, 0), c(2, 0, 0)];
    assert_eq!(
        letters(&seq(Scheduler::Wrr, &abc, 18)),
        "aababcabcaababcabc"
    );
    // A gcd above 1 gives the same shape.
    let scaled = [c(8, 0, 0), c(6, 0, 0), c(4, 0, 0)];
    assert_eq!(letters(&seq(Scheduler::Wrr, &scaled, 9)), "aababcabc");
    // Equal weights are plain round robin; weight 0 never appears.
    assert_eq!(
        letters(&seq(
            Scheduler::Wrr,
            &[c(2, 0, 0), c(0, 0, 0), c(2, 0, 0)],
            4
        )),
        "acac"
    );
    assert_eq!(
        letters(&seq(Scheduler::Wrr, &[c(1, 0, 0), c(5, 0, 0)], 6)),
        "bbbbab"
    );
}

#[test]
fn wrr_starts_where_ipvs_leaves_it_after_each_added_server() {
    // -a of weights 4, 3 and 2, each linked at the head. After the first, IPVS's round start
    // is 4 - (gcd 4 - 1) = 1 and so is cw; the next adds (gcd 1) keep cw 1: the first round
    // takes every server, newest first. The reference kernel ran rs3 rs2 rs1 rs1 rs2 rs1 ...
    let (mut weights, mut cw) = (Vec::new(), 0);
    for w in [4, 3, 2] {
        weights.insert(0, w);
        let max = weights.iter().copied().max().unwrap_or(0);
        cw = wrr_dests_changed(cw, max, weight_gcd(weights.iter().copied()));
    }
    assert_eq!(cw, 1);
    let servers: Vec<_> = weights.iter().map(|w| c(*w, 0, 0)).collect();
    let list = List::new(&servers, Scheduler::Wrr);
    let p = list.params(Scheduler::Wrr, 0);
    let mut state = SchedState { last: u32::MAX, cw };
    let picks: Vec<_> = (0..18)
        .map(|_| list.pick(&p, &mut state, &Addresses::default()))
        .collect();
    assert_eq!(letters(&picks), "abccbcabcabccbcabc");
    // A gcd above 1 moves cw to its step; above the new round start, cw restarts the round.
    assert_eq!(wrr_dests_changed(5, 8, 2), 5);
    assert_eq!(wrr_dests_changed(6, 8, 2), 7);
    assert_eq!(wrr_dests_changed(6, 4, 1), 4);
    assert_eq!(wrr_dests_changed(0, 0, 1), 0);
}

#[test]
fn wrr_skips_unusable_heaviest_server() {
    // The weight-4 server cannot take flows: levels 4 and 3 hold no usable server.
    let servers = [
        Candidate {
            reachable: false,
            ..c(4, 0, 0)
        },
        c(2, 0, 0),
        c(1, 0, 0),
    ];
    assert_eq!(letters(&seq(Scheduler::Wrr, &servers, 6)), "bbcbbc");
}

#[test]
fn sh_table_gives_weight_consecutive_buckets() {
    let t = sh_table(&[2, 0, 3]);
    let firsts: Vec<_> = t[..12].iter().map(|p| p.unwrap()).collect();
    assert_eq!(firsts, [0, 0, 1, 2, 2, 2, 0, 0, 1, 2, 2, 2]);
    assert!(sh_table(&[]).iter().all(Option::is_none));
    assert_eq!(
        dh_table(3)[..5],
        [Some(0), Some(1), Some(2), Some(0), Some(1)]
    );
}

#[test]
fn kernel_hashes() {
    // hash_32(x, 8) = (x * 0x61C88647) >> 24; dh = (x * 2654435761) & 255.
    let a = u32::from_be_bytes([10, 77, 0, 10]);
    assert_eq!(sh_bucket(a, 0, 0), a.wrapping_mul(0x61C8_8647) >> 24);
    assert_eq!(
        sh_bucket(a, 0, 3),
        ((a.wrapping_mul(0x61C8_8647) >> 24) + 3) & 255
    );
    assert_ne!(sh_bucket(a, 1000, 0), sh_bucket(a, 0, 0));
    assert_eq!(dh_bucket(a), a.wrapping_mul(2_654_435_761) & 255);
}

/// One pick by a hashing scheduler for client `addr`:`port`.
fn hash_pick(list: &List, s: Scheduler, flags: u8, addr: u32, port: u16) -> Option<u32> {
    let p = list.params(s, flags);
    list.pick(
        &p,
        &mut SchedState::default(),
        &Addresses {
            src_addr: addr,
            src_port: port,
            dst_addr: 0,
        },
    )
}

#[test]
fn sh_keeps_a_client_and_spreads_clients() {
    let list = List::new(&[c(1, 0, 0), c(1, 0, 0), c(1, 0, 0)], Scheduler::Sh);
    let addrs: Vec<u32> = (1..=60)
        .map(|i| u32::from_be_bytes([10, 0, 0, i]))
        .collect();
    let picks: Vec<_> = addrs
        .iter()
        .map(|a| hash_pick(&list, Scheduler::Sh, 0, *a, 1).unwrap())
        .collect();
    for (a, p) in addrs.iter().zip(&picks) {
        assert_eq!(
            hash_pick(&list, Scheduler::Sh, 0, *a, 2),
            Some(*p),
            "port must not matter without sh-port"
        );
        assert_eq!(Some(id_of(*p)), list.table[sh_bucket(*a, 0, 0) as usize]);
    }
    for s in 0..3 {
        assert!(picks.iter().filter(|p| **p == s).count() >= 10, "{picks:?}");
    }
    // With sh-port, ports spread one client.
    let by_port: Vec<_> = (0..30)
        .map(|port| hash_pick(&list, Scheduler::Sh, flags::SH_PORT, addrs[0], port).unwrap())
        .collect();
    assert!((0..3).all(|s| by_port.contains(&s)), "{by_port:?}");
}

#[test]
fn sh_unusable_server_gives_none_unless_fallback() {
    let list = List::new(&[c(1, 0, 0), c(1, 0, 0)], Scheduler::Sh);
    let addr = (0..)
        .map(|i: u32| i.wrapping_mul(7919))
        .find(|a| list.table[sh_bucket(*a, 0, 0) as usize] == Some(id_of(0)))
        .unwrap();
    list.servers[0].set(c(0, 0, 0));
    assert_eq!(hash_pick(&list, Scheduler::Sh, 0, addr, 0), None);
    assert_eq!(
        hash_pick(&list, Scheduler::Sh, flags::SH_FALLBACK, addr, 0),
        Some(1)
    );
}

#[test]
fn dh_hashes_the_destination() {
    let list = List::new(&[c(1, 0, 0), c(5, 0, 0), c(1, 0, 0)], Scheduler::Dh);
    let p = list.params(Scheduler::Dh, 0);
    let at = |dst: u32| {
        list.pick(
            &p,
            &mut SchedState::default(),
            &Addresses {
                src_addr: 1,
                src_port: 1,
                dst_addr: dst,
            },
        )
    };
    for dst in [1u32, 99, 12345, 0xdead_beef] {
        assert_eq!(at(dst), Some(dh_bucket(dst) % 3));
    }
}

#[test]
fn overload_has_hysteresis() {
    assert!(!overloaded(false, 100, 0, 0));
    assert!(overloaded(false, 10, 10, 0));
    assert!(overloaded(true, 8, 10, 0), "8*4 = 32 is not below 30");
    assert!(!overloaded(true, 7, 10, 0), "7*4 = 28 < 30");
    assert!(overloaded(true, 5, 10, 5));
    assert!(!overloaded(true, 4, 10, 5));
    assert!(!overloaded(false, 9, 10, 5));
}

#[test]
fn gcd_of_positive_weights() {
    assert_eq!(weight_gcd([8, 0, 6, 4].into_iter()), 2);
    assert_eq!(weight_gcd([0, 0].into_iter()), 1);
    assert_eq!(weight_gcd([7].into_iter()), 7);
}

#[test]
fn mh_keeps_clients_and_falls_back_only_when_asked() {
    let list = List::new(&[c(1, 0, 0), c(1, 0, 0), c(1, 0, 0)], Scheduler::Mh);
    let at = |flags, addr: u32, port| hash_pick(&list, Scheduler::Mh, flags, addr, port);
    let picks: Vec<_> = (1..=60u32).map(|a| at(0, a, 1).unwrap()).collect();
    assert!((0..3).all(|s| picks.contains(&s)));
    for a in 1..=60u32 {
        assert_eq!(
            at(0, a, 2),
            Some(picks[a as usize - 1]),
            "port ignored without mh-port"
        );
    }
    let home = picks[0];
    list.servers[home as usize].set(c(0, 0, 0));
    assert_eq!(at(0, 1, 1), None);
    let moved = at(flags::SH_FALLBACK, 1, 1).unwrap();
    assert_ne!(moved, home);
}

#[test]
fn hashing_schedulers_answer_a_client_alike_whatever_the_picks_and_counts() {
    let idle = [c(1, 0, 0), c(1, 0, 0), c(1, 0, 0)];
    let busy = [c(1, 50, 9), c(1, 0, 0), c(1, 7, 0)];
    for s in Scheduler::ALL {
        let picks = seq(s, &idle, 6);
        let alike = picks.iter().all(|p| *p == picks[0]) && once(s, &busy) == picks[0];
        assert_eq!(s.is_hashing(), alike, "{s:?}: {}", letters(&picks));
    }
}
