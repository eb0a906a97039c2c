//! Hostile frames through the real object with BPF_PROG_TEST_RUN: 100,000 frames a run from a
//! seeded generator (valid packets, fragments and ICMP errors, then truncated at every offset,
//! with bad IHL and total lengths, IP options, stacked VLAN tags, random bytes, one bit
//! flipped), each judged by an oracle with its own parse and its own model of the flow and
//! fragment tables: a frame that is not a valid packet for a service is never sent out, a
//! passed or dropped frame is never modified, a forwarded one has only its MACs rewritten and
//! goes where its flow (datagram, quoted flow) went before, and the global counters add up
//! to the verdicts seen.

use std::{collections::HashMap, net::Ipv4Addr};

use lb_common::{
    state::tcp_flags::{ACK, FIN, RST, SYN},
    stats::Global,
};
use lb_userspace::{dataplane::DataPlane, maps::Maps};
use xdpvs_testbed::packets::{Frame, Ipv4, L4, ethernet, icmp, set_ipv4_checksum};

use crate::datapath::{
    DIRECTOR_MAC, RS_MACS, VIP, XDP_DROP, XDP_PASS, XDP_TX, dataplane_with, readdressed, run, tcp,
};

const FRAMES: usize = 100_000;
const SEED: u64 = 0x5eed_0014;
const ETH_HLEN: usize = 14;
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

/// splitmix64: small, seeded, good enough to spread cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// (client, VIP, client port, VIP port, protocol).
type Flow = (Ipv4Addr, Ipv4Addr, u16, u16, u8);
/// (source, destination, IP id, protocol): one datagram.
type Datagram = (Ipv4Addr, Ipv4Addr, u16, u8);

/// What a frame is, by the oracle's own parse.
#[derive(Debug)]
enum Class {
    /// Not a packet the balancer may forward.
    Other,
    /// A whole TCP or UDP packet of a service's flow, or a datagram's first fragment.
    Flow(Flow, Option<Datagram>),
    /// A later fragment: no ports.
    Later(Datagram),
    /// An ICMP error to the VIP about a service's flow (quoted reply reversed).
    Icmp(Flow),
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn addr(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn is_service(vip: Ipv4Addr, port: u16, proto: u8) -> bool {
    vip == VIP && matches!((proto, port), (6, 80) | (17, 53))
}

/// The oracle's parse: Ethernet with at most one 802.1Q tag, IPv4 version 4 with IHL 5, a
/// correct header checksum and a total length within the frame; then by fragment offset and
/// protocol.
fn classify(f: &[u8]) -> Class {
    if f.len() < 14 {
        return Class::Other;
    }
    let (mut l3, mut ether_type) = (14, be16(&f[12..]));
    if ether_type == 0x8100 {
        if f.len() < 18 {
            return Class::Other;
        }
        (l3, ether_type) = (18, be16(&f[16..]));
    }
    if ether_type != 0x0800 || f.len() < l3 + 20 {
        return Class::Other;
    }
    let ip = &f[l3..l3 + 20];
    let sum: u32 = ip.chunks(2).map(|w| u32::from(be16(w))).sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    if ip[0] != 0x45 || (folded & 0xffff) + (folded >> 16) != 0xffff {
        return Class::Other;
    }
    let total = usize::from(be16(&ip[2..]));
    if total < 20 || l3 + total > f.len() {
        return Class::Other;
    }
    let (src, dst, proto) = (addr(&ip[12..]), addr(&ip[16..]), ip[9]);
    let datagram = (src, dst, be16(&ip[4..]), proto);
    let flags_offset = be16(&ip[6..]);
    if flags_offset & 0x1fff != 0 {
        return Class::Later(datagram);
    }
    let first = flags_offset & 0x2000 != 0;
    let l4 = &f[l3 + 20..l3 + total];
    match proto {
        6 | 17 => {
            if l4.len() < if proto == 6 { 20 } else { 8 } {
                return Class::Other;
            }
            let (sport, dport) = (be16(l4), be16(&l4[2..]));
            if !is_service(dst, dport, proto) {
                return Class::Other;
            }
            Class::Flow((src, dst, sport, dport, proto), first.then_some(datagram))
        }
        1 if !first && l4.len() >= 8 && matches!(l4[0], 3 | 11) => {
            let q = &l4[8..];
            if q.len() < 20 || q[0] >> 4 != 4 || q[0] & 0x0f < 5 {
                return Class::Other;
            }
            let ihl = usize::from(q[0] & 0x0f) * 4;
            let (qproto, qsrc) = (q[9], addr(&q[12..]));
            if be16(&q[6..]) & 0x1fff != 0 || !matches!(qproto, 6 | 17) || q.len() < ihl + 8 {
                return Class::Other;
            }
            let (sport, dport) = (be16(&q[ihl..]), be16(&q[ihl + 2..]));
            if qsrc != dst || !is_service(qsrc, sport, qproto) {
                return Class::Other;
            }
            Class::Icmp((addr(&q[16..]), qsrc, dport, sport, qproto))
        }
        _ => Class::Other,
    }
}

/// What the oracle remembers the program decided: where flows and datagrams went.
#[derive(Default)]
struct Model {
    flows: HashMap<Flow, usize>,
    datagrams: HashMap<Datagram, usize>,
    counts: HashMap<&'static str, u64>,
}

impl Model {
    /// Checks the program's `verdict` and `out` for `frame`, and learns from them.
    fn judge(&mut self, frame: &[u8], verdict: u32, out: &[u8]) -> Result<(), String> {
        let class = classify(frame);
        let unchanged = out == frame;
        let sent_to = |rs: usize| out == readdressed(frame, RS_MACS[rs], DIRECTOR_MAC);
        let counter = match (&class, verdict) {
            (Class::Flow(flow, datagram), XDP_TX) => {
                let rs = *self
                    .flows
                    .entry(*flow)
                    .or_insert_with(|| RS_MACS.iter().position(|m| out[..6] == m[..]).unwrap_or(0));
                if !sent_to(rs) {
                    return Err(format!("{class:?} not sent to rs{} alone", rs + 1));
                }
                if let Some(d) = datagram {
                    self.datagrams.insert(*d, rs);
                }
                Global::Forwarded
            }
            (Class::Flow(..), XDP_DROP) if unchanged => Global::FlowTableFull,
            (Class::Later(d), XDP_TX) => match self.datagrams.get(d) {
                Some(rs) if sent_to(*rs) => Global::FragmentForwarded,
                _ => return Err(format!("{class:?} sent, not where its first fragment went")),
            },
            (Class::Later(d), XDP_PASS) if unchanged && !self.datagrams.contains_key(d) => {
                Global::FragmentUntracked
            }
            (Class::Icmp(flow), XDP_TX) => match self.flows.get(flow) {
                Some(rs) if sent_to(*rs) => Global::IcmpForwarded,
                _ => return Err(format!("{class:?} sent, not to its flow's server")),
            },
            (Class::Icmp(flow), XDP_PASS) if unchanged && !self.flows.contains_key(flow) => {
                Global::Passed
            }
            (Class::Other, XDP_PASS) if unchanged => Global::Passed,
            _ => {
                return Err(format!(
                    "{class:?}: verdict {verdict}, unchanged {unchanged}"
                ));
            }
        };
        *self.counts.entry(counter.name()).or_default() += 1;
        Ok(())
    }
}

/// Generates the frames: valid ones for and around the services, then damaged.
struct Generator {
    rng: Rng,
    n: usize,
}

impl Generator {
    fn client(&mut self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 1, 1 + self.rng.below(40) as u8)
    }

    fn vip_port(&mut self, udp: bool) -> u16 {
        match (self.rng.below(8), udp) {
            (0, _) => 81,
            (_, true) => 53,
            (_, false) => 80,
        }
    }

    /// A client's packet (or one fragment of its datagram) to a VIP port.
    fn client_frame(&mut self) -> Vec<u8> {
        let udp = self.rng.below(2) == 0;
        let sport = 1000 + self.rng.below(64) as u16;
        let dport = self.vip_port(udp);
        let l4 = if udp {
            L4::Udp { sport, dport }
        } else {
            let flags = [SYN, ACK, FIN | ACK, RST][self.rng.below(4)];
            L4::Tcp {
                sport,
                dport,
                flags,
            }
        };
        let frame = Frame {
            src: self.client(),
            vlan: (self.rng.below(8) == 0).then_some(7),
            l4,
            ..tcp(0, 0, 0)
        };
        let len = self.rng.below(400);
        let payload = self.rng.bytes(len);
        if self.rng.below(3) == 0 {
            let id = self.rng.below(16) as u16;
            let fragments = frame.fragments(&payload, id, 64 + self.rng.below(200));
            let i = self.rng.below(fragments.len());
            fragments[i].clone()
        } else {
            frame.build(&payload)
        }
    }

    /// An ICMP message to the VIP quoting a reply of a client's flow, sometimes garbled.
    fn icmp_frame(&mut self) -> Vec<u8> {
        let udp = self.rng.below(2) == 0;
        let (sport, dport) = (self.vip_port(udp), 1000 + self.rng.below(64) as u16);
        let l4 = if udp {
            L4::Udp { sport, dport }
        } else {
            L4::Tcp {
                sport,
                dport,
                flags: ACK,
            }
        };
        let reply = Frame {
            src: VIP,
            dst: self.client(),
            l4,
            ..tcp(0, 0, 0)
        }
        .build(&[0; 64]);
        let mut quote = reply[14..14 + 28 + self.rng.below(40)].to_vec();
        match self.rng.below(6) {
            0 => quote.truncate(self.rng.below(quote.len())),
            1 => quote[0] = self.rng.next() as u8,
            2 => quote[9] = self.rng.next() as u8,
            3 => {
                let at = self.rng.below(quote.len());
                quote[at] = self.rng.next() as u8;
            }
            _ => {}
        }
        let kind = [(3, 4), (3, 3), (3, 1), (11, 0), (8, 0), (0, 0), (5, 1)][self.rng.below(7)];
        let ip = Ipv4 {
            src: ROUTER,
            dst: VIP,
            proto: 1,
            id: self.rng.next() as u16,
            flags_offset: 0,
        };
        let message = icmp(kind.0, kind.1, [0, 0, 5, 0x78], &quote);
        ethernet(DIRECTOR_MAC, [2, 0, 0, 0, 0, 1], None, &ip.packet(&message))
    }

    fn frame(&mut self) -> Vec<u8> {
        self.n += 1;
        let mut f = if self.rng.below(4) == 0 {
            self.icmp_frame()
        } else {
            self.client_frame()
        };
        let l3 = if f.get(12..14) == Some(&[0x81, 0]) {
            18
        } else {
            14
        };
        match self.rng.below(10) {
            // Truncated, over the run at every offset of the frames it cuts from the end of
            // the Ethernet header on (BPF_PROG_TEST_RUN refuses shorter frames, as no NIC
            // delivers them).
            0 => f.truncate(ETH_HLEN + self.n % (f.len() - ETH_HLEN)),
            // Bad IHL (and version), checksum right.
            1 => {
                f[l3] = self.rng.next() as u8;
                let ihl = usize::from(f[l3] & 0x0f) * 4;
                if ihl >= 20 && l3 + ihl <= f.len() {
                    set_ipv4_checksum(&mut f[l3..]);
                }
            }
            // Any total length, checksum right.
            2 => {
                let len = self.rng.next() as u16;
                f[l3 + 2..l3 + 4].copy_from_slice(&len.to_be_bytes());
                set_ipv4_checksum(&mut f[l3..]);
            }
            // IP options (no-ops), lengths and checksum right.
            3 => {
                let words = 1 + self.rng.below(10);
                f.splice(l3 + 20..l3 + 20, vec![1; 4 * words]);
                f[l3] = 0x45 + words as u8;
                let len = be16(&f[l3 + 2..]) + 4 * words as u16;
                f[l3 + 2..l3 + 4].copy_from_slice(&len.to_be_bytes());
                set_ipv4_checksum(&mut f[l3..]);
            }
            // Stacked VLAN tags (802.1ad outer or a second 802.1Q).
            4 => {
                for _ in 0..1 + self.rng.below(2) {
                    let tpid: u16 = [0x8100, 0x88a8][self.rng.below(2)];
                    let tag = [tpid.to_be_bytes(), [0, 9]].concat();
                    f.splice(12..12, tag);
                }
            }
            // Random bytes, some behind a plausible IPv4 start.
            5 => {
                let len = ETH_HLEN + self.rng.below(120);
                f = self.rng.bytes(len);
                if len > 15 && self.rng.below(2) == 0 {
                    f[12..15].copy_from_slice(&[8, 0, 0x45]);
                }
            }
            // One bit flipped.
            6 | 7 => {
                let bit = self.rng.below(f.len() * 8);
                f[bit / 8] ^= 0x80 >> (bit % 8);
            }
            _ => {}
        }
        f
    }
}

#[test]
fn hostile_frames_are_never_forwarded_wrongly() {
    let dp: DataPlane = dataplane_with("rr", 0, &[1, 1, 1], true);
    let mut generator = Generator {
        rng: Rng(SEED),
        n: 0,
    };
    let mut model = Model::default();
    for i in 0..FRAMES {
        let frame = generator.frame();
        let (verdict, out) = run(&dp, &frame);
        if let Err(e) = model.judge(&frame, verdict, &out) {
            panic!("frame {i} (seed {SEED:#x}): {e}\n{frame:02x?}");
        }
    }
    let seen = |g: Global| model.counts.get(g.name()).copied().unwrap_or(0);
    for (g, counted) in dp.globals().unwrap() {
        assert_eq!(counted, seen(g), "{}", g.name());
    }
    println!(
        "{FRAMES} hostile frames: {} passed, {} forwarded, {} ICMP errors forwarded, {} later \
         fragments forwarded and {} passed, {} dropped",
        seen(Global::Passed),
        seen(Global::Forwarded),
        seen(Global::IcmpForwarded),
        seen(Global::FragmentForwarded),
        seen(Global::FragmentUntracked),
        seen(Global::FlowTableFull),
    );
    for g in [
        Global::Forwarded,
        Global::IcmpForwarded,
        Global::FragmentForwarded,
    ] {
        assert!(seen(g) > 100, "the corpus exercises {}", g.name());
    }
}
