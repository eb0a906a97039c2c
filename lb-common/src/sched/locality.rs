//! lblc and lblcr, IPVS's locality-based schedulers, with their cache: per destination address,
//! the server (lblc) or the set of servers (lblcr) that took its flows. Both keep to their
//! servers until the lblc overload rule ([`locality_overloaded`]) sends a flow to the weighted
//! least-connection pick. The data path keeps one [`Locality`] per (service, destination) in a
//! map; the daemon removes entries unused for [`EXPIRATION_NS`]. The functions below that the
//! data path would otherwise keep out of line are `#[inline(always)]`: the verifier refuses
//! such a function of the object ("missing btf func_info").

use super::{Candidate, Servers, least_weighted};

/// Nanoseconds in a second.
const NS: u64 = 1_000_000_000;

/// How long an entry lives unused, and how long an lblcr set stays unchanged before it loses
/// its most loaded server: the default of IPVS's `lblc_expiration` and `lblcr_expiration`
/// sysctls (24 h), not adjustable here.
pub const EXPIRATION_NS: u64 = 24 * 3600 * NS;

/// Once the cache holds more than [`CROWDED`] entries, those unused for this long go too
/// (IPVS's `ENTRY_TIMEOUT`, 6 min).
pub const CROWDED_IDLE_NS: u64 = 6 * 60 * NS;

/// Entries above which the idle ones are collected early: IPVS's per-service `max_size`
/// (16 per bucket of its 1024-bucket table), here for the whole cache.
pub const CROWDED: usize = 16 * 1024;

/// Entries the cache map holds; when it is full a new destination is scheduled by wlc
/// without an entry, as IPVS when it cannot allocate one.
pub const CAPACITY: u32 = 1 << 16;

/// Most servers an lblcr set holds (IPVS's sets are unbounded): adding to a full set first
/// forgets its members that left the service, then its oldest member.
pub const SET_CAPACITY: usize = 4;

/// Key of a cache entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalityKey {
    /// Service id.
    pub service: u32,
    /// Destination address.
    pub addr: crate::addr::Addr,
}

/// A server of a cache entry: a slot and the generation it had when it was cached.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// Dest id.
    pub id: u32,
    /// Its slot's generation at the time.
    pub generation: u32,
}

impl Member {
    /// The server `c` as it is now: `None` if its slot is gone.
    fn of(c: &Candidate, servers: &impl Servers) -> Option<Self> {
        Some(Self {
            id: c.id,
            generation: servers.generation(c.id)?,
        })
    }
}

/// One destination's cache entry. The data path rewrites it whole when its servers change and
/// stores `last_used_ns` in place otherwise.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Locality {
    /// When a new flow to the destination last looked the entry up (monotonic ns).
    pub last_used_ns: u64,
    /// When its servers last changed (lblcr's `lastmod`).
    pub modified_ns: u64,
    /// Servers in `members` (0: no entry yet).
    pub len: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// The servers, newest first (lblc uses the first only).
    pub members: [Member; SET_CAPACITY],
}

/// What a locality pick chose, and whether the entry must be written back whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The dest id, `None` when no server is usable.
    pub dest: Option<u32>,
    /// The entry's servers changed (or it is new).
    pub changed: bool,
}

/// The lblc overload rule: `c` has more active connections than its weight while some server
/// of the service has fewer than half its weight.
pub fn locality_overloaded(c: &Candidate, servers: &impl Servers) -> bool {
    if c.active <= c.weight {
        return false;
    }
    let mut lighter = false;
    servers.each(servers.count(), |pos| {
        if servers
            .candidate(pos)
            .is_some_and(|d| (d.active as u64) * 2 < d.weight as u64)
        {
            lighter = true;
        }
        lighter
    });
    lighter
}

impl Locality {
    /// Member `i` as cached. The index is masked rather than compared: LLVM tests a copy of
    /// a compared index, which the verifier does not relate to the one used. It is compared
    /// with the raw `len`, not [`Self::count`]: against a count known to be at most
    /// [`SET_CAPACITY`] LLVM drops the mask as redundant, and kernel 6.1's verifier cannot
    /// bound an index by a register it was compared with.
    fn slot(&self, i: usize) -> Option<Member> {
        const { assert!(SET_CAPACITY.is_power_of_two()) };
        (i < self.len as usize).then(|| self.members[i % SET_CAPACITY])
    }

    /// Member `i` as it is now, `None` if it left the service.
    #[inline(always)]
    fn member(&self, i: usize, servers: &impl Servers) -> Option<Candidate> {
        let m = self.slot(i)?;
        servers.member(m.id, m.generation)
    }

    /// Number of members, bounded for the walks.
    fn count(&self) -> usize {
        (self.len as usize).min(SET_CAPACITY)
    }

    /// Calls `f(i, c)` for each member `i` still in the service, newest first. The walk goes
    /// through [`Servers::each`] (bpf_loop in the data path), so the verifier checks one
    /// visit rather than every path through the set.
    fn walk(&self, servers: &impl Servers, mut f: impl FnMut(usize, &Candidate)) {
        servers.each(self.count() as u32, |i| {
            if let Some(c) = self.member(i as usize, servers) {
                f(i as usize, &c);
            }
            false
        });
    }

    /// The member `beats` prefers over all others considered: `beats(c, w, oh)` says whether
    /// member `c` beats the best so far, of weight `w` and overhead `oh`, starting from
    /// `seed`, a (weight, overhead) that every considered member beats. No "found one yet"
    /// flag: verifiers before kernel 6.7 check a bpf_loop callback as if it ran once, from
    /// the state at the call, and drop the branches that state cannot take, so a flag false
    /// at the call would never be seen true (kernel 6.1 made lblcr choose its set's oldest
    /// member). Weights are at most `i32::MAX`, so the products fit an i64.
    fn best(
        &self,
        servers: &impl Servers,
        considered: impl Fn(&Candidate) -> bool,
        seed: (i64, i64),
        beats: impl Fn(&Candidate, i64, i64) -> bool,
    ) -> Option<usize> {
        let (mut at, (mut w, mut oh)) = (SET_CAPACITY, seed);
        self.walk(servers, |i, c| {
            if considered(c) && beats(c, w, oh) {
                (at, w, oh) = (i, c.weight.into(), c.overhead().into());
            }
        });
        (at < SET_CAPACITY).then_some(at)
    }

    /// The least loaded usable member (`ip_vs_dest_set_min`): overhead per weight, a tie keeps
    /// the newer one. `loh * dw > doh * lw`, as the kernel compares; usable members have a
    /// weight above 0, so each beats the seed's 1 / 0.
    fn least(&self, servers: &impl Servers) -> Option<Candidate> {
        let at = self.best(servers, Candidate::usable, (0, 1), |c, w, oh| {
            oh * i64::from(c.weight) > i64::from(c.overhead()) * w
        })?;
        self.member(at, servers)
    }

    /// The index of the most loaded member of weight above 0 (`ip_vs_dest_set_max`, which
    /// ignores thresholds): overhead per weight, a tie keeps the newer one. `moh * dw < doh *
    /// mw`, as the kernel compares; each member beats the seed's -1 / 1.
    fn most(&self, servers: &impl Servers) -> Option<usize> {
        self.best(
            servers,
            |c| c.weight > 0,
            (1, -1),
            |c, w, oh| oh * i64::from(c.weight) < i64::from(c.overhead()) * w,
        )
    }

    /// Makes `c` the newest member unless it is one; whether the set changed. Members that
    /// left the service are forgotten then, and the oldest one if the set is full. The walk
    /// only marks who stays: a bpf_loop callback must not branch on a count of its visits
    /// (see `Servers::each`), so the set is rebuilt after it.
    #[inline(always)]
    fn insert(&mut self, c: &Candidate, now: u64, servers: &impl Servers) -> bool {
        let Some(new) = Member::of(c, servers) else {
            return false;
        };
        if self.members.iter().take(self.count()).any(|m| *m == new) {
            return false;
        }
        let mut staying = 0u32;
        self.walk(servers, |i, _| staying |= 1 << i);
        let mut next = [new; SET_CAPACITY];
        let mut len = 1;
        for (i, m) in self.members.iter().enumerate() {
            if staying & (1 << i) != 0
                && let Some(slot) = next.get_mut(len)
            {
                *slot = *m;
                len += 1;
            }
        }
        self.set(next, len, now);
        true
    }

    /// Removes member `i`.
    fn erase(&mut self, i: usize, now: u64) {
        let mut next = self.members;
        let mut len = 0;
        for (j, m) in self.members.iter().take(self.count()).enumerate() {
            if j != i
                && let Some(slot) = next.get_mut(len)
            {
                *slot = *m;
                len += 1;
            }
        }
        self.set(next, len, now);
    }

    /// Replaces the members, changed at `now`.
    fn set(&mut self, members: [Member; SET_CAPACITY], len: usize, now: u64) {
        self.members = members;
        self.len = len as u32;
        self.modified_ns = now;
    }
}

/// lblc (`ip_vs_lblc.c`): the destination's cached server while it is reachable, of weight
/// above 0 and not overloaded by the lblc rule; otherwise the wlc pick, which replaces it.
/// `entry` is the destination's entry, a default one if it has none.
#[inline(always)]
pub fn lblc(entry: &mut Locality, now: u64, servers: &impl Servers) -> Outcome {
    entry.last_used_ns = now;
    if let Some(cached) = (entry.len > 0).then(|| entry.member(0, servers)).flatten()
        && cached.weight > 0
        && cached.reachable
        && !locality_overloaded(&cached, servers)
    {
        return Outcome {
            dest: Some(cached.id),
            changed: false,
        };
    }
    let Some(chosen) = least_weighted(servers) else {
        return Outcome {
            dest: None,
            changed: false,
        };
    };
    let member = Member::of(&chosen, servers);
    let changed = member.is_some_and(|m| entry.len == 0 || entry.members[0] != m);
    if let Some(member) = member.filter(|_| changed) {
        *entry = Locality {
            last_used_ns: now,
            modified_ns: now,
            len: 1,
            _pad: 0,
            members: [member; SET_CAPACITY],
        };
    }
    Outcome {
        dest: Some(chosen.id),
        changed,
    }
}

/// lblcr (`ip_vs_lblcr.c`): the least loaded usable member of the destination's set unless the
/// lblc rule finds it overloaded; otherwise (or with no usable member) the wlc pick, which
/// joins the set. A set of several members unchanged for [`EXPIRATION_NS`] first loses its
/// most loaded one. `entry` is the destination's entry, a default one if it has none.
#[inline(always)]
pub fn lblcr(entry: &mut Locality, now: u64, servers: &impl Servers) -> Outcome {
    entry.last_used_ns = now;
    let mut changed = false;
    if entry.len > 0 {
        // As the kernel: the least loaded member is chosen before the shrink, and is still
        // used if the shrink removed it.
        let least = entry.least(servers);
        if entry.len > 1
            && now > entry.modified_ns.saturating_add(EXPIRATION_NS)
            && let Some(i) = entry.most(servers)
        {
            entry.erase(i, now);
            changed = true;
        }
        if let Some(least) = least
            && !locality_overloaded(&least, servers)
        {
            return Outcome {
                dest: Some(least.id),
                changed,
            };
        }
    }
    let Some(chosen) = least_weighted(servers) else {
        return Outcome {
            dest: None,
            changed,
        };
    };
    changed |= entry.insert(&chosen, now, servers);
    Outcome {
        dest: Some(chosen.id),
        changed,
    }
}
