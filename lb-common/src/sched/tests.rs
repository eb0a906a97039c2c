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
    /// Slot generations by list position.
    generations: Vec<Cell<u32>>,
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
            generations: servers.iter().map(|_| Cell::new(0)).collect(),
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
        let no_draws = |bound| panic!("only twos draws (below {bound})");
        pick(p, state, pkt, self, no_draws).map(|id| self.position(id))
    }

    /// Adds an active connection to the server with dest id `id`, as a flow it took would.
    fn connect(&self, id: u32) {
        let cell = &self.servers[self.position(id) as usize];
        cell.set(Candidate {
            active: cell.get().active + 1,
            ..cell.get()
        });
    }

    /// Gives the slot of the server at `pos` to another server (a new generation).
    fn reassign(&self, pos: u32) {
        let g = &self.generations[pos as usize];
        g.set(g.get() + 1);
    }

    /// Changes the server at `pos` with `f`.
    fn update(&self, pos: u32, f: impl FnOnce(&mut Candidate)) {
        let cell = &self.servers[pos as usize];
        let mut c = cell.get();
        f(&mut c);
        cell.set(c);
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
    fn generation(&self, id: u32) -> Option<u32> {
        let pos = id.checked_sub(id_of(0))?;
        Some(self.generations.get(pos as usize)?.get())
    }
    fn member(&self, id: u32, generation: u32) -> Option<Candidate> {
        let pos = id.checked_sub(id_of(0))?;
        (self.generation(id)? == generation).then(|| self.candidate(pos))?
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
fn the_largest_weights_do_not_overflow() {
    // IPVS's largest weight with the most connections a counter holds.
    let heavy = i32::MAX as u32;
    let busiest = c(heavy, u32::MAX, u32::MAX);
    for s in [Scheduler::Wlc, Scheduler::Sed, Scheduler::Nq] {
        assert_eq!(once(s, &[busiest, c(heavy, 1, 0)]), Some(1), "{s:?}");
    }
    assert_eq!(
        letters(&seq(Scheduler::Wrr, &[c(70000, 0, 0), c(1, 0, 0)], 3)),
        "aaa"
    );
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
    // hash_32(x, 8) = (x * 0x61C88647) >> 24, for sh and dh alike.
    let a = u32::from_be_bytes([10, 77, 0, 10]);
    assert_eq!(sh_bucket(a, 0, 0), a.wrapping_mul(0x61C8_8647) >> 24);
    assert_eq!(
        sh_bucket(a, 0, 3),
        ((a.wrapping_mul(0x61C8_8647) >> 24) + 3) & 255
    );
    assert_ne!(sh_bucket(a, 1000, 0), sh_bucket(a, 0, 0));
    assert_eq!(dh_bucket(a), a.wrapping_mul(0x61C8_8647) >> 24);
    // The reference kernel (6.1) sent flows for 10.77.0.100 to the second of three servers.
    assert_eq!(dh_bucket(u32::from_be_bytes([10, 77, 0, 100])), 91);
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

/// Picks `n` flows in turn, each adding an active connection to the server it chose.
fn connecting(s: Scheduler, list: &List, n: usize) -> std::string::String {
    let p = list.params(s, 0);
    let mut state = SchedState::default();
    let picks: Vec<_> = (0..n)
        .map(|_| {
            let pos = list.pick(&p, &mut state, &Addresses::default());
            if let Some(pos) = pos {
                list.connect(id_of(pos));
            }
            pos
        })
        .collect();
    letters(&picks)
}

#[test]
fn fo_takes_the_first_heaviest_usable_server() {
    // ip_vs_fo.c keeps a server only when its weight is strictly above the best so far: of b
    // and c (both 3) b stays, however loaded.
    let list = List::new(
        &[c(1, 0, 0), c(3, 0, 0), c(3, 0, 0), c(2, 0, 0)],
        Scheduler::Fo,
    );
    assert_eq!(connecting(Scheduler::Fo, &list, 3), "bbb");
    // b drained: c; c over its thresholds too: d, the next weight down.
    list.update(1, |c| c.weight = 0);
    assert_eq!(connecting(Scheduler::Fo, &list, 1), "c");
    list.update(2, |c| c.reachable = false);
    assert_eq!(connecting(Scheduler::Fo, &list, 1), "d");
}

#[test]
fn ovf_fills_the_heaviest_server_up_to_its_weight_then_overflows() {
    // ip_vs_ovf.c passes over a server only when activeconns > weight, so a server takes
    // weight + 1 flows (at 0, 1, .., weight active): b (3) takes 4, then c (3, after b on the
    // tie) 4, then a (2) 3; then every server is over its weight and nothing is usable.
    let list = List::new(&[c(2, 0, 0), c(3, 0, 0), c(3, 0, 0)], Scheduler::Ovf);
    assert_eq!(connecting(Scheduler::Ovf, &list, 12), "bbbbccccaaa-");
    // A connection closing on b (4 -> 3 active) makes it the choice again.
    list.update(1, |c| c.active = 3);
    assert_eq!(connecting(Scheduler::Ovf, &list, 1), "b");
}

/// A twos pick with scripted draws; also checks the bound each draw is asked for.
fn twos_pick(list: &List, draws: [u32; 2], bound: u32) -> Option<u32> {
    let mut draws = draws.into_iter();
    let random = |b| {
        assert_eq!(b, bound, "draws are below the total weight + 1");
        draws.next().expect("two draws")
    };
    let p = list.params(Scheduler::Twos, 0);
    pick(
        &p,
        &mut SchedState::default(),
        &Addresses::default(),
        list,
        random,
    )
    .map(|id| list.position(id))
}

#[test]
fn twos_draws_two_weighted_servers_and_keeps_the_less_loaded() {
    // Weights a=1 b=2 c=3, a weight-0 server between them counting for nothing: total 6, draws
    // in [0, 6]. Running sums 1, 3, 6: draws 0-1 fall on a, 2-3 on b, 4-6 on c.
    // Loads (overhead = active << 8): a 0, b 256, c 0.
    let list = List::new(
        &[c(1, 0, 0), c(0, 0, 0), c(2, 1, 0), c(3, 0, 0)],
        Scheduler::Twos,
    );
    let (a, b, d) = (Some(0), Some(2), Some(3));
    // c (0/3) then b (256/2): the second is not less loaded.
    assert_eq!(twos_pick(&list, [5, 2], 7), d);
    // b (256/2) then a (0/1): the second wins.
    assert_eq!(twos_pick(&list, [2, 0], 7), a);
    // The same server twice.
    assert_eq!(twos_pick(&list, [3, 3], 7), b);
    // The edges: draw 1 is still a's, 6 is c's.
    assert_eq!(twos_pick(&list, [1, 6], 7), a);
    // Equal load per weight keeps the first choice: a at 256/1, b at 512/2.
    list.update(0, |c| c.active = 1);
    list.update(2, |c| c.active = 2);
    assert_eq!(twos_pick(&list, [0, 2], 7), a);
    assert_eq!(twos_pick(&list, [2, 0], 7), b);
    // An overloaded server leaves the draw: total 3 (a, b), bound 4.
    list.update(3, |c| c.reachable = false);
    assert_eq!(twos_pick(&list, [3, 3], 4), b);
}

/// A locality pick for destination `dst` with `entries` as the cache, and the flow's active
/// connection added to the chosen server; the list position.
fn local(
    list: &List,
    s: Scheduler,
    entries: &mut std::collections::BTreeMap<u32, locality::Locality>,
    dst: u32,
    now: u64,
) -> Option<u32> {
    let entry = entries.entry(dst).or_default();
    let outcome = match s {
        Scheduler::Lblc => locality::lblc(entry, now, list),
        _ => locality::lblcr(entry, now, list),
    };
    assert_eq!(entry.last_used_ns, now, "every lookup marks the entry used");
    let id = outcome.dest?;
    list.connect(id);
    Some(list.position(id))
}

/// The list positions of an entry's members, newest first.
fn members(e: &locality::Locality) -> Vec<u32> {
    e.members[..e.len as usize]
        .iter()
        .map(|m| m.id - id_of(0))
        .collect()
}

#[test]
fn lblc_keeps_a_destination_on_its_server_until_the_lblc_rule_moves_it() {
    use std::collections::BTreeMap;
    // Three servers of weight 1, destinations 1 and 2; each flow adds an active connection.
    let list = List::new(&[c(1, 0, 0), c(1, 0, 0), c(1, 0, 0)], Scheduler::Lblc);
    let mut cache = BTreeMap::new();
    let mut at = |dst| local(&list, Scheduler::Lblc, &mut cache, dst, 7);
    // 1: no entry, wlc takes a. 1: a has 1 active, not above its weight 1: a again.
    // 1: a has 2 > 1 and b has 0 * 2 < 1: overloaded, wlc (a 512, b 0, c 0) takes b.
    // 2: no entry, wlc (a 512, b 256, c 0) takes c.
    // 1: b (1 active) again. 1: b has 2 > 1 but no server is below half its weight (a 2,
    // c 1: 2 * 1 < 1 fails): b stays, however loaded.
    let picks: Vec<_> = [1, 1, 1, 2, 1, 1].into_iter().map(&mut at).collect();
    assert_eq!(letters(&picks), "aabcbb");
    assert_eq!(members(&cache[&1]), [1]);
    assert_eq!(members(&cache[&2]), [2]);
}

#[test]
fn lblc_replaces_a_drained_or_removed_server() {
    let list = List::new(&[c(1, 0, 0), c(1, 0, 0)], Scheduler::Lblc);
    let mut entry = locality::Locality::default();
    let first = locality::lblc(&mut entry, 1, &list);
    assert_eq!((first.dest, first.changed), (Some(id_of(0)), true));
    // A hit only marks the entry used.
    let hit = locality::lblc(&mut entry, 2, &list);
    assert_eq!((hit.dest, hit.changed), (Some(id_of(0)), false));
    assert_eq!((entry.last_used_ns, entry.modified_ns), (2, 1));
    // Weight 0: rescheduled to b, which replaces a.
    list.update(0, |c| c.weight = 0);
    let moved = locality::lblc(&mut entry, 3, &list);
    assert_eq!((moved.dest, moved.changed), (Some(id_of(1)), true));
    // b's slot given to another server (a new generation): the entry no longer holds it.
    list.update(0, |c| c.weight = 1);
    list.reassign(1);
    assert_eq!(locality::lblc(&mut entry, 4, &list).dest, Some(id_of(0)));
    assert_eq!(members(&entry), [0]);
}

#[test]
fn lblcr_grows_a_set_under_load_and_shrinks_it_when_it_stays_unchanged() {
    use std::collections::BTreeMap;
    let day = locality::EXPIRATION_NS;
    let list = List::new(&[c(1, 0, 0), c(1, 0, 0), c(1, 0, 0)], Scheduler::Lblcr);
    let mut cache = BTreeMap::new();
    let at = |cache: &mut BTreeMap<_, _>, now| local(&list, Scheduler::Lblcr, cache, 1, now);
    // t0: no entry, wlc takes a: {a}. t1: a (1 active, not above weight 1).
    // t2: a (2 > 1, b below half) overloaded: wlc takes b, which joins: {b, a}.
    // t3: the least loaded member, newest first: b (256) before a (512): b.
    // t4: b and a both at 512, the tie keeps the newer b; b is overloaded (c at 0): wlc
    //     (a 512, b 512, c 0) takes c: {c, b, a}.
    // t5: c (256). t6: c, b, a all at 512: c, the newest; overloaded, but nobody is below
    //     half their weight any more: c.
    let picks: Vec<_> = (0..7).map(|now| at(&mut cache, now)).collect();
    assert_eq!(letters(&picks), "aabbccc");
    assert_eq!(members(&cache[&1]), [2, 1, 0]);
    assert_eq!(cache[&1].modified_ns, 4);
    // Exactly a day after the last change the set stays: of c 768, b 512, a 512 the least
    // loaded is b (the newer of the tie).
    assert_eq!(at(&mut cache, 4 + day), Some(1));
    assert_eq!(members(&cache[&1]), [2, 1, 0]);
    // Past a day the most loaded member goes: c (768; b, now 768 too, is not above it). The
    // least loaded was chosen before that: a (512).
    assert_eq!(at(&mut cache, 5 + day), Some(0));
    assert_eq!(members(&cache[&1]), [1, 0]);
    assert_eq!(cache[&1].modified_ns, 5 + day);
}

#[test]
fn lblcr_sets_are_bounded_and_forget_removed_servers_first() {
    use locality::SET_CAPACITY as CAP;
    // CAP + 1 servers; the set holds the first CAP, all busy (2 active, weight 1), while the
    // last is idle: the set's least loaded member is overloaded and wlc takes the last.
    let servers: Vec<_> = (0..=CAP)
        .map(|i| c(1, if i < CAP { 2 } else { 0 }, 0))
        .collect();
    let full = || locality::Locality {
        len: CAP as u32,
        members: core::array::from_fn(|i| locality::Member {
            id: id_of(i as u32),
            generation: 0,
        }),
        ..locality::Locality::default()
    };
    let list = List::new(&servers, Scheduler::Lblcr);
    let mut entry = full();
    let outcome = locality::lblcr(&mut entry, 1, &list);
    assert_eq!(
        (outcome.dest, outcome.changed),
        (Some(id_of(CAP as u32)), true)
    );
    // Full: the oldest member (CAP - 1) made room.
    let expected: Vec<u32> = std::iter::once(CAP as u32)
        .chain(0..CAP as u32 - 1)
        .collect();
    assert_eq!(members(&entry), expected);
    // With server 1 removed meanwhile (new generation), it goes instead.
    let list = List::new(&servers, Scheduler::Lblcr);
    list.reassign(1);
    let mut entry = full();
    locality::lblcr(&mut entry, 1, &list);
    let expected: Vec<u32> = std::iter::once(CAP as u32)
        .chain((0..CAP as u32).filter(|p| *p != 1))
        .collect();
    assert_eq!(members(&entry), expected);
}

/// Picks for `clients` in turn on one list, with draws (twos) that differ from pick to pick.
fn picks_for(s: Scheduler, servers: &[Candidate], clients: &[Addresses]) -> Vec<Option<u32>> {
    let list = List::new(servers, s);
    let p = list.params(s, 0);
    let mut state = SchedState::default();
    let mut draws = 0u32..;
    let mut random = |bound: u32| draws.next().unwrap_or(0) % bound;
    clients
        .iter()
        .map(|pkt| pick(&p, &mut state, pkt, &list, &mut random).map(|id| list.position(id)))
        .collect()
}

#[test]
fn hashing_schedulers_answer_a_client_alike_whatever_the_picks_and_counts() {
    let idle = [c(1, 0, 0), c(1, 0, 0), c(1, 0, 0)];
    let busy = [c(1, 50, 9), c(1, 0, 0), c(1, 7, 0)];
    let client = Addresses::default();
    let clients: Vec<_> = (1..=8)
        .map(|i| Addresses {
            src_addr: 0x0a00_0100 + i,
            src_port: 1024 + i as u16,
            dst_addr: 0x0a00_0200 + i,
        })
        .collect();
    for s in Scheduler::ALL {
        let picks = picks_for(s, &idle, &[client; 6]);
        let alike =
            picks.iter().all(|p| *p == picks[0]) && picks_for(s, &busy, &[client]) == [picks[0]];
        // fo answers a client alike too, but every client alike: it hashes nothing.
        let spread = picks_for(s, &idle, &clients);
        let hashed = spread.iter().any(|p| *p != spread[0]);
        assert_eq!(
            s.is_hashing(),
            alike && hashed,
            "{s:?}: {} {}",
            letters(&picks),
            letters(&spread)
        );
    }
}
