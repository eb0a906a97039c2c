//! Choosing a real server for a new flow, with the semantics of the kernel's IPVS schedulers.
//! One implementation serves the XDP program (which walks the list under `bpf_loop`) and the
//! host tests (which walk it with a plain loop), through [`Servers`]. lblc and lblcr add a
//! cache per destination address ([`locality`]).

use crate::service::SchedState;

pub mod locality;

/// The IPVS schedulers, numbered as stored in [`crate::service::Service::scheduler`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduler {
    /// Round robin.
    Rr = 0,
    /// Least connections.
    Lc = 1,
    /// Weighted least connections (ipvsadm's default).
    Wlc = 2,
    /// Shortest expected delay.
    Sed = 3,
    /// Never queue.
    Nq = 4,
    /// Weighted round robin.
    Wrr = 5,
    /// Source hashing.
    Sh = 6,
    /// Destination hashing.
    Dh = 7,
    /// Maglev hashing.
    Mh = 8,
    /// Locality-based least connections.
    Lblc = 9,
    /// Locality-based least connections with replication.
    Lblcr = 10,
    /// Weighted failover.
    Fo = 11,
    /// Weighted overflow.
    Ovf = 12,
    /// Power of two choices.
    Twos = 13,
}

/// Scheduler flags (ipvsadm `-b`); the same bits serve sh and mh, as in IPVS.
pub mod flags {
    /// When the hashed server is unusable, probe further buckets (`sh-fallback`/`mh-fallback`,
    /// flag-1).
    pub const SH_FALLBACK: u8 = 1;
    /// Hash the source port too (`sh-port`/`mh-port`, flag-2).
    pub const SH_PORT: u8 = 2;
}

/// Buckets in an sh or dh table.
pub const TABLE_SIZE: u32 = 256;

impl Scheduler {
    /// Every scheduler the data path implements.
    pub const ALL: [Scheduler; 14] = [
        Self::Rr,
        Self::Lc,
        Self::Wlc,
        Self::Sed,
        Self::Nq,
        Self::Wrr,
        Self::Sh,
        Self::Dh,
        Self::Mh,
        Self::Lblc,
        Self::Lblcr,
        Self::Fo,
        Self::Ovf,
        Self::Twos,
    ];

    /// Decodes a stored scheduler byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as u8 == v)
    }

    /// The name ipvsadm uses (`-s NAME`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Rr => "rr",
            Self::Lc => "lc",
            Self::Wlc => "wlc",
            Self::Sed => "sed",
            Self::Nq => "nq",
            Self::Wrr => "wrr",
            Self::Sh => "sh",
            Self::Dh => "dh",
            Self::Mh => "mh",
            Self::Lblc => "lblc",
            Self::Lblcr => "lblcr",
            Self::Fo => "fo",
            Self::Ovf => "ovf",
            Self::Twos => "twos",
        }
    }

    /// Whether it keeps a cache per destination address ([`locality`]).
    pub const fn caches_destinations(self) -> bool {
        matches!(self, Self::Lblc | Self::Lblcr)
    }

    /// Whether a pick depends only on the packet's addresses and the service's table (sh, dh,
    /// mh), not on earlier picks or connection counts: asked again for the same client, the
    /// scheduler gives the same server while it stays usable.
    pub const fn is_hashing(self) -> bool {
        matches!(self, Self::Sh | Self::Dh | Self::Mh)
    }

    /// Looks a scheduler up by its ipvsadm name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What a scheduler needs to know about one real server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Candidate {
    /// The real server's dest id: what a pick returns.
    pub id: u32,
    /// IPVS weight.
    pub weight: u32,
    /// ActiveConn.
    pub active: u32,
    /// InActConn.
    pub inactive: u32,
    /// False when the server cannot take new flows (MAC unknown, overloaded).
    pub reachable: bool,
}

impl Candidate {
    /// Whether IPVS would consider this server at all: weight above 0 and reachable.
    pub const fn usable(&self) -> bool {
        self.weight > 0 && self.reachable
    }

    /// IPVS's connection overhead: `(active << 8) + inactive`, 32 bits wide as the kernel's
    /// `int` (saturating where the kernel's would wrap), so that its product with a weight
    /// (up to `i32::MAX`) fits in 64 bits.
    pub const fn overhead(&self) -> u32 {
        self.active
            .saturating_mul(256)
            .saturating_add(self.inactive)
    }

    /// The shortest-expected-delay overhead: `active + 1` (saturating, as [`Self::overhead`]).
    pub const fn sed_overhead(&self) -> u32 {
        self.active.saturating_add(1)
    }
}

/// IPVS's overload rule with hysteresis: with an upper threshold `upper` (0 = none) a server
/// becomes overloaded at `total >= upper` connections and recovers below `lower`, or below 3/4
/// of `upper` when `lower` is 0.
pub const fn overloaded(was: bool, total: u32, upper: u32, lower: u32) -> bool {
    if upper == 0 {
        return false;
    }
    if total >= upper {
        return true;
    }
    let recovered = if lower != 0 {
        total < lower
    } else {
        (total as u64) * 4 < (upper as u64) * 3
    };
    was && !recovered
}

/// The real servers of one service, as a scheduler reads them.
pub trait Servers {
    /// Length of the list.
    fn count(&self) -> u32;
    /// The real server at list position `pos`.
    fn candidate(&self, pos: u32) -> Option<Candidate>;
    /// The real server whose dest id bucket `bucket` of the service's table holds, `None` if
    /// the bucket is empty or beyond the table.
    fn bucket(&self, bucket: u32) -> Option<Candidate>;
    /// The generation of slot `id` ([`crate::dest::Dest::generation`]), which a cache records.
    fn generation(&self, id: u32) -> Option<u32>;
    /// The real server in slot `id` while the slot still holds `generation`: while it is the
    /// same real server of this service (a removed server's slot gets a new generation).
    fn member(&self, id: u32, generation: u32) -> Option<Candidate>;
    /// Calls `f(i)` for `i` in `0..n`, in order, until it returns true.
    fn each<F: FnMut(u32) -> bool>(&self, n: u32, f: F);
}

/// The service settings a pick reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Scheduler.
    pub scheduler: Scheduler,
    /// [`flags`].
    pub flags: u8,
    /// Largest weight (wrr).
    pub max_weight: u32,
    /// GCD of the positive weights (wrr).
    pub weight_gcd: u32,
    /// Buckets in the service's table (sh, dh: [`TABLE_SIZE`]; mh: a prime).
    pub table_size: u32,
}

/// The addresses of the packet being scheduled, host byte order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Addresses {
    /// Client address.
    pub src_addr: u32,
    /// Client port.
    pub src_port: u16,
    /// Destination (virtual) address.
    pub dst_addr: u32,
}

/// Chooses a real server for a new flow: its dest id, or `None` when no server is usable.
/// Updates the rr/wrr state in `state` (list positions). `random(n)` is a uniformly random
/// number below `n` (twos). lblc and lblcr give the weighted least-connection pick they fall
/// back to; [`locality`] adds their cache.
pub fn pick(
    p: &Params,
    state: &mut SchedState,
    pkt: &Addresses,
    servers: &impl Servers,
    random: impl FnMut(u32) -> u32,
) -> Option<u32> {
    match p.scheduler {
        Scheduler::Wrr => wrr(p, state, servers),
        Scheduler::Sh => sh(p.flags, pkt, servers),
        Scheduler::Mh => mh(p, pkt, servers),
        Scheduler::Dh => servers
            .bucket(dh_bucket(pkt.dst_addr))
            .filter(Candidate::usable)
            .map(|c| c.id),
        Scheduler::Twos => twos(servers, random),
        Scheduler::Rr => {
            let start = state.last.wrapping_add(1);
            let (pos, chosen) = walk(Scheduler::Rr, start, servers)?;
            state.last = pos;
            Some(chosen.id)
        }
        s => walk(s, 0, servers).map(|(_, c)| c.id),
    }
}

/// Offers the servers to a [`Selection`] in list order from position `start` (wrapping):
/// the chosen one and its position.
fn walk(s: Scheduler, start: u32, servers: &impl Servers) -> Option<(u32, Candidate)> {
    let n = servers.count();
    let start = start.checked_rem(n).unwrap_or(0);
    let mut selection = Selection::new(s);
    servers.each(n, |i| {
        let pos = if start + i >= n {
            start + i - n
        } else {
            start + i
        };
        servers
            .candidate(pos)
            .is_some_and(|c| selection.offer(pos, c))
    });
    selection
        .found
        .then_some((selection.position, selection.best))
}

/// The weighted least-connection pick (wlc, and lblc/lblcr without a usable cache entry).
fn least_weighted(servers: &impl Servers) -> Option<Candidate> {
    walk(Scheduler::Wlc, 0, servers).map(|(_, c)| c)
}

/// The fold state of a connection-count or rr decision over the list in walk order. Every
/// field is defined from the start: with an `Option`, whose `None` leaves the payload
/// undefined, the data path read back stack bytes another value had left there after the
/// walk, which the verifier refuses.
#[derive(Clone, Copy, Debug)]
struct Selection {
    scheduler: Scheduler,
    found: bool,
    position: u32,
    best: Candidate,
}

impl Selection {
    const fn new(scheduler: Scheduler) -> Self {
        Self {
            scheduler,
            found: false,
            position: 0,
            best: Candidate {
                id: 0,
                weight: 0,
                active: 0,
                inactive: 0,
                reachable: false,
            },
        }
    }

    fn choose(&mut self, position: u32, c: Candidate) {
        (self.found, self.position, self.best) = (true, position, c);
    }

    /// Offers the server at `position`; true when the decision is final.
    fn offer(&mut self, position: u32, c: Candidate) -> bool {
        // ovf passes over a server with more active connections than its weight.
        if !c.usable() || (self.scheduler == Scheduler::Ovf && c.active > c.weight) {
            return false;
        }
        if !self.found {
            self.choose(position, c);
            return self.scheduler == Scheduler::Rr
                || (self.scheduler == Scheduler::Nq && c.active == 0);
        }
        let least = self.best;
        let better = match self.scheduler {
            Scheduler::Lc => c.overhead() < least.overhead(),
            Scheduler::Wlc | Scheduler::Lblc | Scheduler::Lblcr => {
                weighted_less(c.overhead(), c.weight, least.overhead(), least.weight)
            }
            // The highest weight; a tie keeps the earlier server.
            Scheduler::Fo | Scheduler::Ovf => c.weight > least.weight,
            Scheduler::Nq if c.active == 0 => {
                self.choose(position, c);
                return true;
            }
            Scheduler::Sed | Scheduler::Nq => weighted_less(
                c.sed_overhead(),
                c.weight,
                least.sed_overhead(),
                least.weight,
            ),
            _ => false,
        };
        if better {
            self.choose(position, c);
        }
        false
    }
}

/// `doh / dw < loh / lw` without division, as IPVS compares: `loh * dw > doh * lw`.
const fn weighted_less(doh: u32, dw: u32, loh: u32, lw: u32) -> bool {
    loh as u64 * dw as u64 > doh as u64 * lw as u64
}

/// Power of two choices (`ip_vs_twos.c`, kernel 6.7): two servers drawn at random in
/// proportion to their weights; the second wins only when its overhead per weight is lower.
fn twos(servers: &impl Servers, mut random: impl FnMut(u32) -> u32) -> Option<u32> {
    let n = servers.count();
    let mut total = 0u32;
    servers.each(n, |pos| {
        if let Some(c) = servers.candidate(pos).filter(Candidate::usable) {
            total = total.saturating_add(c.weight);
        }
        false
    });
    if total == 0 {
        return None;
    }
    // Draws in [0, total]: the first server whose running weight sum reaches a draw is that
    // choice, so the first server also takes draw 0 (the kernel's `rweight -= weight` until
    // `rweight <= 0`), as it takes 1.
    let bound = total.saturating_add(1);
    let draws = [random(bound).max(1), random(bound).max(1)];
    // Each choice as (dest id, weight, overhead), weight 0 while open: plain numbers, defined
    // from the start (see `Selection`). A server is a draw's choice when the sum crosses the
    // draw at it, not when no choice was made yet: verifiers before kernel 6.7 check a
    // bpf_loop callback as if it ran once, from the state at the call, and would take "no
    // choice yet" for always true.
    let (mut sum, mut first, mut w1, mut oh1) = (0u32, 0u32, 0u32, 0u32);
    let (mut second, mut w2, mut oh2) = (0u32, 0u32, 0u32);
    servers.each(n, |pos| {
        let Some(c) = servers.candidate(pos).filter(Candidate::usable) else {
            return false;
        };
        let before = sum;
        sum = sum.saturating_add(c.weight);
        if before < draws[0] && sum >= draws[0] {
            (first, w1, oh1) = (c.id, c.weight, c.overhead());
        }
        if before < draws[1] && sum >= draws[1] {
            (second, w2, oh2) = (c.id, c.weight, c.overhead());
        }
        sum >= draws[0] && sum >= draws[1]
    });
    // A choice stays open only if weights changed between the walks: no server this time.
    if w1 == 0 || w2 == 0 {
        return None;
    }
    Some(if weighted_less(oh2, w2, oh1, w1) {
        second
    } else {
        first
    })
}

// The walks below assign their result only when they find one: an assigned `None` may carry
// an undefined payload that the verifier refuses to see stored.

/// Interleaved weighted round robin. The next server after the last pick with weight >= cw;
/// at the end of the list cw drops by the weights' gcd (back to the largest weight below 1).
/// Levels no usable server reaches are skipped at once, which gives IPVS's sequence in at most
/// three walks of the list.
fn wrr(p: &Params, state: &mut SchedState, servers: &impl Servers) -> Option<u32> {
    let n = servers.count();
    let from = if state.last < n { state.last + 1 } else { 0 };
    let cw = state.cw;
    let first_at = |from: u32, level: u32| {
        let mut found = None;
        servers.each(n - from, |i| {
            let c = servers.candidate(from + i);
            if let Some(c) = c.filter(|c| c.usable() && c.weight >= level) {
                found = Some((from + i, c.id));
            }
            found.is_some()
        });
        found
    };
    let (pos, id) = match (cw != 0).then(|| first_at(from, cw)).flatten() {
        Some(found) => found,
        None => {
            let mut max_usable = 0;
            servers.each(n, |pos| {
                if let Some(c) = servers.candidate(pos).filter(Candidate::usable) {
                    max_usable = max_usable.max(c.weight);
                }
                false
            });
            if max_usable == 0 {
                return None;
            }
            let next = if cw <= p.weight_gcd {
                wrr_round_start(p.max_weight, p.weight_gcd)
            } else {
                cw - p.weight_gcd
            };
            state.cw = next.min(max_usable);
            first_at(0, state.cw)?
        }
    };
    state.last = pos;
    Some(id)
}

/// wrr's current weight at the start of a round, IPVS's `mw`: the largest weight less the
/// gcd plus one, so that the last round (cw 1) also catches weights below the gcd.
const fn wrr_round_start(max_weight: u32, weight_gcd: u32) -> u32 {
    (max_weight + 1).saturating_sub(weight_gcd)
}

/// wrr's current weight after the real servers changed, as `ip_vs_wrr_dest_changed` keeps it:
/// unset or above the new round start, it starts a round; with a gcd above 1 it moves to the
/// gcd's step (plus one) at or below it.
pub const fn wrr_dests_changed(cw: u32, max_weight: u32, weight_gcd: u32) -> u32 {
    let start = wrr_round_start(max_weight, weight_gcd);
    if cw == 0 || cw > start {
        start
    } else if weight_gcd > 1 {
        cw / weight_gcd * weight_gcd + 1
    } else {
        cw
    }
}

/// The kernel's `hash_32(value, 8)`.
const fn hash_32_8(value: u32) -> u32 {
    value.wrapping_mul(0x61C8_8647) >> 24
}

/// sh's bucket for a client (port 0 unless sh-port), as `ip_vs_sh_hashkey`.
pub const fn sh_bucket(addr: u32, port: u16, offset: u32) -> u32 {
    offset.wrapping_add(hash_32_8((port as u32).wrapping_add(addr))) & (TABLE_SIZE - 1)
}

/// dh's bucket for a destination, as `ip_vs_dh_hashkey`: `hash_32(addr, 8)`.
pub const fn dh_bucket(addr: u32) -> u32 {
    hash_32_8(addr)
}

fn sh(flags: u8, pkt: &Addresses, servers: &impl Servers) -> Option<u32> {
    let port = if flags & self::flags::SH_PORT != 0 {
        pkt.src_port
    } else {
        0
    };
    let ihash = sh_bucket(pkt.src_addr, port, 0);
    let home = servers.bucket(ihash)?;
    if home.usable() {
        return Some(home.id);
    }
    if flags & self::flags::SH_FALLBACK == 0 {
        return None;
    }
    // As the kernel: probe bucket hashkey(offset = (ihash + i) % size) for i in 0..size.
    let mut found = None;
    servers.each(TABLE_SIZE, |i| {
        let offset = (ihash + i) & (TABLE_SIZE - 1);
        match servers.bucket(sh_bucket(pkt.src_addr, port, offset)) {
            None => true,
            Some(c) => {
                if c.usable() {
                    found = Some(c.id);
                }
                found.is_some()
            }
        }
    });
    found
}

/// Maglev: the client's bucket in the table; with mh-fallback, an unusable server's clients
/// take the next buckets in turn.
fn mh(p: &Params, pkt: &Addresses, servers: &impl Servers) -> Option<u32> {
    let port = if p.flags & flags::SH_PORT != 0 {
        pkt.src_port
    } else {
        0
    };
    let home = crate::maglev::client_hash(pkt.src_addr, port).checked_rem(p.table_size)?;
    let at_home = servers.bucket(home)?;
    if at_home.usable() {
        return Some(at_home.id);
    }
    if p.flags & flags::SH_FALLBACK == 0 {
        return None;
    }
    let mut found = None;
    servers.each(p.table_size, |i| {
        let bucket = home + i;
        let bucket = if bucket >= p.table_size {
            bucket - p.table_size
        } else {
            bucket
        };
        if let Some(c) = servers.bucket(bucket).filter(Candidate::usable) {
            found = Some(c.id);
        }
        found.is_some()
    });
    found
}

/// The sh table for servers with `weights` in list order: walking the list cyclically, each
/// server takes `weight` consecutive buckets (at least one). Entries are list positions (the
/// maps hold the dest ids at those positions).
pub fn sh_table(weights: &[u32]) -> [Option<u32>; TABLE_SIZE as usize] {
    let mut table = [None; TABLE_SIZE as usize];
    if weights.is_empty() {
        return table;
    }
    let (mut pos, mut taken) = (0usize, 0u32);
    for slot in table.iter_mut() {
        *slot = Some(pos as u32);
        taken += 1;
        if taken >= weights[pos] {
            pos = (pos + 1) % weights.len();
            taken = 0;
        }
    }
    table
}

/// The dh table for `n` servers: one bucket each in turn, weights ignored. Entries are list
/// positions, as in [`sh_table`].
pub fn dh_table(n: usize) -> [Option<u32>; TABLE_SIZE as usize] {
    core::array::from_fn(|i| (n > 0).then(|| (i % n) as u32))
}

/// Greatest common divisor of the positive weights (1 if there are none).
pub fn weight_gcd(weights: impl Iterator<Item = u32>) -> u32 {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    weights.filter(|w| *w > 0).fold(0, gcd).max(1)
}

#[cfg(test)]
mod tests;
