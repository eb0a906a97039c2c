//! Hostile frames through the real object with BPF_PROG_TEST_RUN: 100,000 frames a run from a
//! seeded generator (valid IPv4 and IPv6 packets, fragments and ICMP errors, IPv6 extension
//! chains, then truncated at every offset, with bad IHL, total and payload lengths, IP options,
//! stacked VLAN tags, random bytes, one bit flipped), each judged by an oracle with its own parse and its own model of the flow and
//! fragment tables: a frame that is not a valid packet for a service is never sent out, a
//! passed or dropped frame is never modified, a forwarded one has only its MACs rewritten and
//! goes where its flow (datagram, quoted flow) went before, and the global counters add up
//! to the verdicts seen.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use lb_common::{
    state::tcp_flags::{ACK, FIN, RST, SYN},
    stats::Global,
};
use lb_userspace::{
    dataplane::DataPlane,
    maps::Maps,
    model::{ServiceAddr, ServiceSpec},
};
use xdpvs_testbed::{
    direct,
    packets::{Frame, Frame6, Ipv4, L4, ethernet, icmp, set_ipv4_checksum},
};

use crate::datapath::{
    DIRECTOR_MAC, RS_MACS, VIP, XDP_DROP, XDP_PASS, XDP_TX, loaded, readdressed, run, services, tcp,
};

const FRAMES: usize = 100_000;
const SEED: u64 = 0x5eed_0014;
const ETH_HLEN: usize = 14;
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 0x100);
const ROUTER6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);

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
type Flow = (IpAddr, IpAddr, u16, u16, u8);
/// (source, destination, IP id, protocol; IPv6: the fragment header's id and next header):
/// one datagram.
type Datagram = (IpAddr, IpAddr, u32, u8);

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

fn addr(b: &[u8]) -> IpAddr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()
}

fn addr6(b: &[u8]) -> IpAddr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&b[..16]).unwrap()).into()
}

fn is_service(vip: IpAddr, port: u16, proto: u8) -> bool {
    (vip == VIP || vip == VIP6) && matches!((proto, port), (6, 80) | (17, 53))
}

/// The oracle's parse: Ethernet with at most one 802.1Q tag, then IPv4 or IPv6.
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
    match ether_type {
        0x0800 => classify_ipv4(f, l3),
        0x86dd => classify_ipv6(f, l3),
        _ => Class::Other,
    }
}

/// A whole TCP or UDP packet (or first fragment, of `datagram`) from `src` to `dst` with
/// transport bytes `l4`.
fn transport(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8], datagram: Option<Datagram>) -> Class {
    if l4.len() < if proto == 6 { 20 } else { 8 } {
        return Class::Other;
    }
    let (sport, dport) = (be16(l4), be16(&l4[2..]));
    if !is_service(dst, dport, proto) {
        return Class::Other;
    }
    Class::Flow((src, dst, sport, dport, proto), datagram)
}

/// The flow a quoted reply from `qsrc` to `qdst` with transport bytes `ql4` is about, if the
/// error was sent to `qsrc` and the reply came from a service.
fn quoted(dst: IpAddr, qsrc: IpAddr, qdst: IpAddr, qproto: u8, ql4: &[u8]) -> Class {
    if !matches!(qproto, 6 | 17) || ql4.len() < 8 {
        return Class::Other;
    }
    let (sport, dport) = (be16(ql4), be16(&ql4[2..]));
    if qsrc != dst || !is_service(qsrc, sport, qproto) {
        return Class::Other;
    }
    Class::Icmp((qdst, qsrc, dport, sport, qproto))
}

/// IPv6 with a payload length within the frame (not 0), no IPv4-mapped address, at most 4
/// extension headers among hop-by-hop, routing, fragment, authentication and destination
/// options before the transport; an ICMPv6 error's quoted header followed at once by TCP or
/// UDP.
fn classify_ipv6(f: &[u8], l3: usize) -> Class {
    if f.len() < l3 + 40 || f[l3] >> 4 != 6 {
        return Class::Other;
    }
    let payload = usize::from(be16(&f[l3 + 4..]));
    let end = l3 + 40 + payload;
    if payload == 0 || end > f.len() {
        return Class::Other;
    }
    let (src, dst) = (addr6(&f[l3 + 8..]), addr6(&f[l3 + 24..]));
    let mapped = |a: IpAddr| matches!(a, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
    if mapped(src) || mapped(dst) {
        return Class::Other;
    }
    let (mut next, mut at, mut datagram) = (f[l3 + 6], l3 + 40, None);
    for _ in 0..4 {
        if !matches!(next, 0 | 43 | 44 | 51 | 60) {
            break;
        }
        if at + 8 > end {
            return Class::Other;
        }
        let h = &f[at..at + 8];
        let len = match next {
            51 => (usize::from(h[1]) + 2) * 4,
            44 => {
                let offset_flags = be16(&h[2..]);
                let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                if offset_flags & 0xfff8 != 0 {
                    return Class::Later((src, dst, id, h[0]));
                }
                if offset_flags & 1 != 0 {
                    datagram = Some((src, dst, id, h[0]));
                }
                8
            }
            _ => (usize::from(h[1]) + 1) * 8,
        };
        (next, at) = (h[0], at + len);
        if at > end {
            return Class::Other;
        }
    }
    let l4 = &f[at..end];
    match next {
        6 | 17 => transport(src, dst, next, l4, datagram),
        58 if datagram.is_none() && l4.len() >= 8 && matches!(l4[0], 1..=3) => {
            let q = &l4[8..];
            if q.len() < 40 || q[0] >> 4 != 6 {
                return Class::Other;
            }
            quoted(dst, addr6(&q[8..]), addr6(&q[24..]), q[6], &q[40..])
        }
        _ => Class::Other,
    }
}

/// IPv4 version 4 with IHL 5, a correct header checksum and a total length within the frame;
/// then by fragment offset and protocol.
fn classify_ipv4(f: &[u8], l3: usize) -> Class {
    if f.len() < l3 + 20 {
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
    let datagram = (src, dst, u32::from(be16(&ip[4..])), proto);
    let flags_offset = be16(&ip[6..]);
    if flags_offset & 0x1fff != 0 {
        return Class::Later(datagram);
    }
    let first = flags_offset & 0x2000 != 0;
    let l4 = &f[l3 + 20..l3 + total];
    match proto {
        6 | 17 => transport(src, dst, proto, l4, first.then_some(datagram)),
        1 if !first && l4.len() >= 8 && matches!(l4[0], 3 | 11) => {
            let q = &l4[8..];
            if q.len() < 20 || q[0] >> 4 != 4 || q[0] & 0x0f < 5 {
                return Class::Other;
            }
            let ihl = usize::from(q[0] & 0x0f) * 4;
            if be16(&q[6..]) & 0x1fff != 0 || q.len() < ihl {
                return Class::Other;
            }
            quoted(dst, addr(&q[12..]), addr(&q[16..]), q[9], &q[ihl..])
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
    /// IPv6 frames sent to a real server.
    ipv6_sent: u64,
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
        let client = match class {
            Class::Flow((client, ..), _)
            | Class::Later((client, ..))
            | Class::Icmp((client, ..)) => Some(client),
            Class::Other => None,
        };
        if verdict == XDP_TX && client.is_some_and(|c| c.is_ipv6()) {
            self.ipv6_sent += 1;
        }
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

    fn client6(&mut self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd77, 1, 0, 0, 0, 0, 0, 1 + self.rng.below(40) as u16)
    }

    /// A client's or a reply's transport header: UDP or TCP with some flags.
    fn l4(&mut self, sport: u16, dport: u16, udp: bool) -> L4 {
        if udp {
            L4::Udp { sport, dport }
        } else {
            let flags = [SYN, ACK, FIN | ACK, RST][self.rng.below(4)];
            L4::Tcp {
                sport,
                dport,
                flags,
            }
        }
    }

    /// Up to 5 IPv6 extension headers, mostly ones IPVS looks through, some of other kinds
    /// (ESP, "no next header") or odd lengths.
    fn ext_headers(&mut self) -> Vec<(u8, Vec<u8>)> {
        (0..self.rng.below(6))
            .map(|_| {
                let kind = [0, 60, 43, 51, 60, 0, 50, 59][self.rng.below(8)];
                let len = [6, 14, 22, 6, 3][self.rng.below(5)];
                (kind, vec![0; len])
            })
            .collect()
    }

    /// An IPv6 client's packet, or one fragment of its datagram, to an IPv6 VIP port.
    fn client6_frame(&mut self) -> Vec<u8> {
        let udp = self.rng.below(2) == 0;
        let sport = 1000 + self.rng.below(64) as u16;
        let dport = self.vip_port(udp);
        let frame = Frame6 {
            dst_mac: DIRECTOR_MAC,
            src_mac: [2, 0, 0, 0, 0, 0x10],
            src: self.client6(),
            dst: VIP6,
            ext: if self.rng.below(3) == 0 {
                self.ext_headers()
            } else {
                Vec::new()
            },
            l4: self.l4(sport, dport, udp),
        };
        self.whole_or_fragment(
            |payload| frame.build(payload),
            |payload, id, size| frame.fragments(payload, id.into(), size),
        )
    }

    /// An ICMPv6 message to the IPv6 VIP quoting a reply of a client's flow, sometimes garbled.
    fn icmp6_frame(&mut self) -> Vec<u8> {
        let udp = self.rng.below(2) == 0;
        let (sport, dport) = (self.vip_port(udp), 1000 + self.rng.below(64) as u16);
        let reply = Frame6 {
            dst_mac: DIRECTOR_MAC,
            src_mac: DIRECTOR_MAC,
            src: VIP6,
            dst: self.client6(),
            ext: Vec::new(),
            l4: self.l4(sport, dport, udp),
        }
        .build(&[0; 64]);
        let quote = self.quote(&reply, 48, 6);
        let kind = [(2, 0), (1, 4), (1, 0), (3, 0), (128, 0), (135, 0), (4, 1)][self.rng.below(7)];
        let message = icmp(kind.0, kind.1, [0, 0, 5, 0x00], &quote);
        Frame6 {
            src: ROUTER6,
            dst: VIP6,
            ext: Vec::new(),
            l4: L4::Udp { sport: 0, dport: 0 },
            dst_mac: DIRECTOR_MAC,
            src_mac: [2, 0, 0, 0, 0, 1],
        }
        .frame(58, &message)
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
        let l4 = self.l4(sport, dport, udp);
        let frame = Frame {
            src: self.client(),
            vlan: (self.rng.below(8) == 0).then_some(7),
            l4,
            ..tcp(0, 0, 0)
        };
        self.whole_or_fragment(
            |payload| frame.build(payload),
            |payload, id, size| frame.fragments(payload, id, size),
        )
    }

    /// The start of the IP packet in `reply`, at least `len` bytes, as an ICMP error quotes it;
    /// sometimes truncated, or with its version, its protocol byte (at `proto_at`) or any byte
    /// garbled.
    fn quote(&mut self, reply: &[u8], len: usize, proto_at: usize) -> Vec<u8> {
        let mut quote = reply[14..14 + len + self.rng.below(40)].to_vec();
        match self.rng.below(6) {
            0 => quote.truncate(self.rng.below(quote.len())),
            1 => quote[0] = self.rng.next() as u8,
            2 => quote[proto_at] = self.rng.next() as u8,
            3 => {
                let at = self.rng.below(quote.len());
                quote[at] = self.rng.next() as u8;
            }
            _ => {}
        }
        quote
    }

    /// A random payload in the whole packet `build` makes, or one random fragment of it from
    /// `split` (payload, id, fragment size).
    fn whole_or_fragment(
        &mut self,
        build: impl FnOnce(&[u8]) -> Vec<u8>,
        split: impl FnOnce(&[u8], u16, usize) -> Vec<Vec<u8>>,
    ) -> Vec<u8> {
        let len = self.rng.below(400);
        let payload = self.rng.bytes(len);
        if self.rng.below(3) == 0 {
            let id = self.rng.below(16) as u16;
            let fragments = split(&payload, id, 64 + self.rng.below(200));
            let i = self.rng.below(fragments.len());
            fragments[i].clone()
        } else {
            build(&payload)
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
        let quote = self.quote(&reply, 28, 9);
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
        let mut f = match self.rng.below(8) {
            0 => self.icmp_frame(),
            1 => self.icmp6_frame(),
            2..=4 => self.client6_frame(),
            _ => self.client_frame(),
        };
        let l3 = if f.get(12..14) == Some(&[0x81, 0]) {
            18
        } else {
            14
        };
        if f.get(l3 - 2..l3) == Some(&[0x86, 0xdd]) {
            return self.damage_ipv6(f, l3);
        }
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

    /// An IPv6 frame as it is, or damaged: truncated, any payload length, stacked tags,
    /// random bytes behind an IPv6 start, one bit flipped.
    fn damage_ipv6(&mut self, mut f: Vec<u8>, l3: usize) -> Vec<u8> {
        match self.rng.below(8) {
            0 => f.truncate(ETH_HLEN + self.n % (f.len() - ETH_HLEN)),
            1 => {
                let len = self.rng.next() as u16;
                f[l3 + 4..l3 + 6].copy_from_slice(&len.to_be_bytes());
            }
            2 => {
                let tag = [0x88a8u16.to_be_bytes(), [0, 9]].concat();
                f.splice(12..12, tag);
            }
            3 => {
                let keep = l3 + self.rng.below(60);
                f.truncate(keep.min(f.len()));
                let extra = 1 + self.rng.below(80);
                f.extend(self.rng.bytes(extra));
                f[l3] = 0x60 | (f[l3] & 0x0f);
            }
            4 | 5 => {
                let bit = self.rng.below(f.len() * 8);
                f[bit / 8] ^= 0x80 >> (bit % 8);
            }
            _ => {}
        }
        f
    }
}

/// The data plane the corpus runs against: TCP on VIP:80 and [VIP6]:80, UDP on VIP:53 and
/// [VIP6]:53, rr over three real servers each.
fn dataplane() -> DataPlane {
    let mut specs = services("rr", 0, None, &[1, 1, 1]);
    let v6: Vec<ServiceSpec> = specs
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.addr = ServiceAddr {
                addr: VIP6.into(),
                ..s.addr
            };
            for (i, d) in s.dests.iter_mut().enumerate() {
                d.addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 0x21 + i as u16).into();
            }
            s
        })
        .collect();
    specs.extend(v6);
    direct::install(loaded(), &specs, |i| Some(RS_MACS[i])).unwrap()
}

#[test]
fn hostile_frames_are_never_forwarded_wrongly() {
    let dp = dataplane();
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
         fragments forwarded and {} passed, {} dropped; {} IPv6 frames sent",
        seen(Global::Passed),
        seen(Global::Forwarded),
        seen(Global::IcmpForwarded),
        seen(Global::FragmentForwarded),
        seen(Global::FragmentUntracked),
        seen(Global::FlowTableFull),
        model.ipv6_sent,
    );
    assert!(model.ipv6_sent > 1000, "the corpus exercises IPv6");
    for g in [
        Global::Forwarded,
        Global::IcmpForwarded,
        Global::FragmentForwarded,
    ] {
        assert!(seen(g) > 100, "the corpus exercises {}", g.name());
    }
}
