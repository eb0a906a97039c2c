//! Scheduler choice for a new flow, as a fold over the service's real servers in list order.
//! The XDP program and the host tests run this same code.

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
}

impl Scheduler {
    /// Every scheduler the data path implements.
    pub const ALL: [Scheduler; 5] = [Self::Rr, Self::Lc, Self::Wlc, Self::Sed, Self::Nq];

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
        }
    }

    /// Looks a scheduler up by its ipvsadm name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The list position the walk starts at: after the last pick for rr, the head otherwise.
    pub fn first_position(self, count: u32, last: u32) -> u32 {
        match self {
            Self::Rr => last.wrapping_add(1).checked_rem(count).unwrap_or(0),
            _ => 0,
        }
    }
}

/// What a scheduler needs to know about one real server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Candidate {
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

    /// IPVS's connection overhead: `(active << 8) + inactive`.
    pub const fn overhead(&self) -> u64 {
        ((self.active as u64) << 8) + self.inactive as u64
    }

    /// The shortest-expected-delay overhead: `active + 1`.
    pub const fn sed_overhead(&self) -> u64 {
        self.active as u64 + 1
    }
}

/// The fold state of one scheduling decision.
#[derive(Clone, Copy, Debug)]
pub struct Selection {
    scheduler: Scheduler,
    best: Option<(u32, Candidate)>,
}

impl Selection {
    /// Starts a decision for `scheduler`.
    pub const fn new(scheduler: Scheduler) -> Self {
        Self {
            scheduler,
            best: None,
        }
    }

    /// Offers the real server at list `position`, visited in walk order (see
    /// [`Scheduler::first_position`]). Returns true when the decision is final and the walk
    /// can stop.
    pub fn offer(&mut self, position: u32, c: Candidate) -> bool {
        if !c.usable() {
            return false;
        }
        let Some((_, least)) = self.best else {
            self.best = Some((position, c));
            return matches!(self.scheduler, Scheduler::Rr)
                || (self.scheduler == Scheduler::Nq && c.active == 0);
        };
        let better = match self.scheduler {
            Scheduler::Rr => false,
            Scheduler::Lc => c.overhead() < least.overhead(),
            Scheduler::Wlc => weighted_less(c.overhead(), c.weight, least.overhead(), least.weight),
            Scheduler::Nq if c.active == 0 => {
                self.best = Some((position, c));
                return true;
            }
            Scheduler::Sed | Scheduler::Nq => weighted_less(
                c.sed_overhead(),
                c.weight,
                least.sed_overhead(),
                least.weight,
            ),
        };
        if better {
            self.best = Some((position, c));
        }
        false
    }

    /// The chosen list position, if any server was usable.
    pub fn chosen(&self) -> Option<u32> {
        self.best.map(|(p, _)| p)
    }
}

/// `doh / dw < loh / lw` without division, as IPVS compares: `loh * dw > doh * lw`.
const fn weighted_less(doh: u64, dw: u32, loh: u64, lw: u32) -> bool {
    loh * dw as u64 > doh * lw as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(weight: u32, active: u32, inactive: u32) -> Candidate {
        Candidate {
            weight,
            active,
            inactive,
            reachable: true,
        }
    }

    fn pick(s: Scheduler, last: u32, servers: &[Candidate]) -> Option<u32> {
        let n = servers.len() as u32;
        let mut sel = Selection::new(s);
        let start = s.first_position(n, last);
        for i in 0..n {
            let pos = (start + i) % n;
            if sel.offer(pos, servers[pos as usize]) {
                break;
            }
        }
        sel.chosen()
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
        let mut last = u32::MAX;
        let mut seq = vec![];
        for _ in 0..4 {
            last = pick(Scheduler::Rr, last, &servers).unwrap();
            seq.push(last);
        }
        assert_eq!(seq, [0, 2, 0, 2]);
    }

    #[test]
    fn nothing_usable_gives_none() {
        for s in Scheduler::ALL {
            assert_eq!(pick(s, u32::MAX, &[c(0, 0, 0), c(0, 5, 0)]), None, "{s:?}");
            assert_eq!(pick(s, u32::MAX, &[]), None, "{s:?}");
        }
    }

    #[test]
    fn lc_smallest_overhead_first_on_tie() {
        // overheads: 1*256+0 = 256, 0*256+300 = 300, 256 (tie with the first).
        assert_eq!(
            pick(Scheduler::Lc, 0, &[c(1, 1, 0), c(1, 0, 300), c(1, 1, 0)]),
            Some(0)
        );
        assert_eq!(
            pick(Scheduler::Lc, 0, &[c(1, 2, 0), c(5, 1, 10), c(1, 1, 9)]),
            Some(2)
        );
    }

    #[test]
    fn wlc_cross_multiplies_and_keeps_earlier_on_tie() {
        // 256/1 vs 512/2: equal, keep the first.
        assert_eq!(pick(Scheduler::Wlc, 0, &[c(1, 1, 0), c(2, 2, 0)]), Some(0));
        // 256/1 vs 256/2: the second is better.
        assert_eq!(pick(Scheduler::Wlc, 0, &[c(1, 1, 0), c(2, 1, 0)]), Some(1));
        // Weight 0 is never picked even when idle.
        assert_eq!(pick(Scheduler::Wlc, 0, &[c(0, 0, 0), c(1, 9, 9)]), Some(1));
        // Inactive connections weigh 1/256 of an active one.
        assert_eq!(
            pick(Scheduler::Wlc, 0, &[c(1, 0, 255), c(1, 1, 0)]),
            Some(0)
        );
        assert_eq!(
            pick(Scheduler::Wlc, 0, &[c(1, 0, 257), c(1, 1, 0)]),
            Some(1)
        );
    }

    #[test]
    fn sed_ignores_inactive() {
        // (0+1)/1 vs (1+1)/3: the second is better although it has more connections.
        assert_eq!(pick(Scheduler::Sed, 0, &[c(1, 0, 0), c(3, 1, 0)]), Some(1));
        assert_eq!(
            pick(Scheduler::Sed, 0, &[c(1, 0, 1000), c(1, 0, 0)]),
            Some(0)
        );
    }

    #[test]
    fn nq_takes_an_idle_server_at_once() {
        // The sed choice would be the heavy-weight busy server; nq prefers the idle one.
        assert_eq!(pick(Scheduler::Nq, 0, &[c(10, 1, 0), c(1, 0, 0)]), Some(1));
        assert_eq!(pick(Scheduler::Nq, 0, &[c(10, 1, 0), c(1, 1, 0)]), Some(0));
    }
}
