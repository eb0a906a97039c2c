//! ipvsadm's text formats, byte for byte: `-L` with its listing options, `-S`, `-Lc` and
//! `-L --timeout`. Addresses are always printed numerically (as with `-n`).

use std::{
    fmt::Write,
    net::{IpAddr, SocketAddr},
};

use crate::{
    cli::Format,
    listing::{Connection, DestStatus, Listing, ServiceStatus},
    model::{SchedFlag, ServiceAddr},
};

/// IPVS version printed in the header, for scripts that parse ipvsadm's output.
pub const IPVS_VERSION: &str = "1.2.1";

/// The header's `size=`: the kernel's `ip_vs_conn_tab_size`, the number of buckets of IPVS's
/// connection hash table (`1 << CONFIG_IP_VS_TAB_BITS`, 12 bits in distribution kernels). It
/// limits nothing, so it is printed whatever the flow table's capacity.
pub const CONN_TAB_SIZE: u32 = 4096;

/// `-L` of all services (`only` = None) or of one, in `format`.
pub fn list(l: &Listing, only: Option<&ServiceAddr>, format: &Format) -> String {
    let mut out = String::new();
    if only.is_none() {
        let _ = writeln!(
            out,
            "IP Virtual Server version {IPVS_VERSION} (size={CONN_TAB_SIZE})"
        );
    }
    out.push_str(title(format));
    for s in sorted(l, only, format) {
        service_entry(&mut out, s, format);
    }
    out
}

/// `-S`: the commands that rebuild the table, one per line.
pub fn rules(l: &Listing) -> String {
    let mut out = String::new();
    for s in sorted(l, None, &Format::default()) {
        let name = format!(
            "{} {}",
            switch(s),
            SocketAddr::new(s.addr.addr, s.addr.port)
        );
        let _ = write!(out, "-A {name} -s {}", s.scheduler.name());
        if let Some(p) = s.persistence {
            let _ = write!(out, " -p {}", p.timeout);
            if !p.netmask.is_host() {
                let _ = write!(out, " -M {}", p.netmask);
            }
        }
        // ipvsadm 1.31 writes the flags last.
        if let Some(flags) = flag_names(s) {
            let _ = write!(out, " -b {flags}");
        }
        out.push('\n');
        for d in sorted_dests(s, &Format::default()) {
            let rs = SocketAddr::new(d.addr, d.port);
            let _ = write!(out, "-a {name} -r {rs} -g -w {}", d.weight);
            // ipvsadm 1.26 leaves thresholds out of -S; they are kept so that -R restores them.
            if d.u_threshold != 0 {
                let _ = write!(out, " -x {}", d.u_threshold);
            }
            if d.l_threshold != 0 {
                let _ = write!(out, " -y {}", d.l_threshold);
            }
            out.push('\n');
        }
    }
    out
}

/// `-Lc`: the connection table.
pub fn connections(conns: &[Connection]) -> String {
    let mut out = String::from("IPVS connection entries\n");
    let _ = writeln!(
        out,
        "pro expire {:<11} {:<18} {:<18} destination",
        "state", "source", "virtual"
    );
    for c in conns {
        let _ = writeln!(
            out,
            "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
            c.protocol.label(),
            format!("{:02}:{:02}", c.expires / 60, c.expires % 60),
            c.state,
            c.client.to_string(),
            c.service.to_string(),
            c.dest
        );
    }
    out
}

/// `-L --timeout`.
pub fn timeouts([tcp, tcpfin, udp]: [u32; 3]) -> String {
    format!("Timeout (tcp tcpfin udp): {tcp} {tcpfin} {udp}\n")
}

fn title(f: &Format) -> &'static str {
    if f.stats {
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  -> RemoteAddress:Port\n"
    } else if f.rate {
        "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n  -> RemoteAddress:Port\n"
    } else if f.thresholds {
        "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n  -> RemoteAddress:Port\n"
    } else if f.persistent_conn {
        "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n  -> RemoteAddress:Port\n"
    } else {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    }
}

/// Services in ipvsadm's order (protocol, address, port) unless `--nosort`.
fn sorted<'a>(l: &'a Listing, only: Option<&ServiceAddr>, f: &Format) -> Vec<&'a ServiceStatus> {
    let mut v: Vec<_> = l
        .services
        .iter()
        .filter(|s| only.is_none_or(|a| s.addr == *a))
        .collect();
    if !f.nosort {
        v.sort_by_key(|s| s.addr);
    }
    v
}

fn sorted_dests<'a>(s: &'a ServiceStatus, f: &Format) -> Vec<&'a DestStatus> {
    let mut v: Vec<_> = s.dests.iter().collect();
    if !f.nosort {
        v.sort_by_key(|d| (d.addr, d.port));
    }
    v
}

fn switch(s: &ServiceStatus) -> &'static str {
    match s.addr.protocol {
        crate::model::Protocol::Tcp => "-t",
        crate::model::Protocol::Udp => "-u",
    }
}

/// ipvsadm's `print_sched_flags`: the names of the service's flags, comma-separated.
fn flag_names(s: &ServiceStatus) -> Option<String> {
    let names: Vec<&str> = SchedFlag::names(s.scheduler, s.flags).collect();
    (!names.is_empty()).then(|| names.join(","))
}

/// ipvsadm's `print_largenum`: 9 columns, K/M/G/T above 10^8 unless `--exact`.
fn largenum(out: &mut String, i: u64, exact: bool) {
    let _ = match i {
        _ if exact => {
            let width = i.to_string().len().max(8) + 1;
            write!(out, "{i:>width$}")
        }
        0..100_000_000 => write!(out, "{i:>9}"),
        100_000_000..1_000_000_000 => write!(out, "{:>8}K", i / 1_000),
        1_000_000_000..100_000_000_000 => write!(out, "{:>8}M", i / 1_000_000),
        100_000_000_000..100_000_000_000_000 => write!(out, "{:>8}G", i / 1_000_000_000),
        _ => write!(out, "{:>8}T", i / 1_000_000_000_000),
    };
}

/// Writes what `write` writes (ASCII), then spaces up to `width` columns: `{:<width}`
/// without a `String` of its own.
fn padded(out: &mut String, width: usize, write: impl FnOnce(&mut String)) {
    let start = out.len();
    write(out);
    let written = out.len() - start;
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(written)));
}

/// `addr:port` (`[addr]:port` for IPv6), an IPv4 address's numbers written through [`itoa`]
/// rather than the formatting machinery (up to 100,000 real server lines).
fn endpoint(out: &mut String, addr: IpAddr, port: u16) {
    let mut digits = itoa::Buffer::new();
    match addr {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "[{v6}]");
        }
    }
    out.push(':');
    out.push_str(digits.format(port));
}

/// ` {:<width}` of each `(width, value)`, then the end of the line.
fn columns(out: &mut String, values: &[(usize, u32)]) {
    let mut digits = itoa::Buffer::new();
    for (width, value) in values {
        out.push(' ');
        padded(out, *width, |out| out.push_str(digits.format(*value)));
    }
    out.push('\n');
}

fn service_entry(out: &mut String, s: &ServiceStatus, f: &Format) {
    let name = format!(
        "{}  {}",
        s.addr.protocol.label(),
        SocketAddr::new(s.addr.addr, s.addr.port)
    );
    if f.stats || f.rate {
        let _ = write!(out, "{name:<33}");
        let t = &s.traffic;
        let r = &s.rates;
        let values = if f.stats {
            [t.conns, t.packets, 0, t.bytes, 0]
        } else {
            [r.cps, r.pps, 0, r.bps, 0]
        };
        for v in values {
            largenum(out, v, f.exact);
        }
    } else {
        let _ = write!(out, "{name} {}", s.scheduler.name());
        if let Some(flags) = flag_names(s) {
            let _ = write!(out, " ({flags})");
        }
        if let Some(p) = s.persistence {
            let _ = write!(out, " persistent {}", p.timeout);
            if !p.netmask.is_host() {
                let _ = write!(out, " mask {}", p.netmask);
            }
        }
    }
    out.push('\n');
    for d in sorted_dests(s, f) {
        out.push_str("  -> ");
        padded(out, 28, |out| endpoint(out, d.addr, d.port));
        if f.stats {
            let t = &d.traffic;
            for v in [t.conns, t.packets, 0, t.bytes, 0] {
                largenum(out, v, f.exact);
            }
            out.push('\n');
        } else if f.rate {
            let r = &d.rates;
            let _ = write!(out, " {:>8} {:>8} {:>8}", r.cps, r.pps, 0);
            largenum(out, r.bps, f.exact);
            largenum(out, 0, f.exact);
            out.push('\n');
        } else if f.thresholds {
            let (u, l) = (d.u_threshold, d.l_threshold);
            columns(out, &[(10, u), (10, l), (10, d.active), (10, d.inactive)]);
        } else if f.persistent_conn {
            let (w, p) = (d.weight, d.persistent);
            columns(out, &[(9, w), (11, p), (10, d.active), (10, d.inactive)]);
        } else {
            out.push_str(" Route  ");
            columns(out, &[(6, d.weight), (10, d.active), (10, d.inactive)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use lb_common::sched::Scheduler;

    use super::*;
    use crate::{
        listing::{Rates, TrafficStatus},
        model::{Persistence, Protocol},
    };

    fn dest(last: u8, active: u32, inactive: u32) -> DestStatus {
        DestStatus {
            addr: Ipv4Addr::new(192, 168, 88, last).into(),
            port: 80,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            persistent: 0,
            active,
            inactive,
            mac: None,
            traffic: TrafficStatus::default(),
            rates: Rates::default(),
        }
    }

    fn service(protocol: Protocol, last: u8, port: u16, dests: Vec<DestStatus>) -> ServiceStatus {
        ServiceStatus {
            addr: ServiceAddr {
                protocol,
                addr: Ipv4Addr::new(192, 168, 88, last).into(),
                port,
            },
            scheduler: Scheduler::Rr,
            flags: 0,
            persistence: None,
            dests,
            traffic: TrafficStatus::default(),
            rates: Rates::default(),
            health: None,
        }
    }

    fn listing(services: Vec<ServiceStatus>) -> Listing {
        Listing {
            // The flow table's capacity, which the header's `size=` does not show.
            flow_table_size: 65536,
            services,
            counters: vec![],
            total: TrafficStatus::default(),
            ha: None,
        }
    }

    fn numeric() -> Format {
        Format {
            numeric: true,
            ..Format::default()
        }
    }

    #[test]
    fn numeric_matches_ipvsadm_byte_for_byte() {
        let l = listing(vec![service(
            Protocol::Tcp,
            20,
            80,
            vec![dest(15, 0, 12), dest(14, 3, 0)],
        )]);
        let expected = "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
TCP  192.168.88.20:80 rr\n\
\x20 -> 192.168.88.14:80             Route   1      3          0         \n\
\x20 -> 192.168.88.15:80             Route   1      0          12        \n";
        assert_eq!(list(&l, None, &numeric()), expected);
        let nosort = Format {
            nosort: true,
            ..numeric()
        };
        assert!(
            list(&l, None, &nosort).contains(
                "88.15:80             Route   1      0          12        \n\x20 -> 192.168.88.14"
            ),
            "--nosort keeps list order"
        );
    }

    #[test]
    fn services_sort_by_protocol_address_and_port() {
        let l = listing(vec![
            service(Protocol::Udp, 1, 53, vec![]),
            service(Protocol::Tcp, 20, 443, vec![]),
            service(Protocol::Tcp, 20, 80, vec![]),
            service(Protocol::Tcp, 3, 8080, vec![]),
        ]);
        let lines: Vec<String> = list(&l, None, &numeric())
            .lines()
            .skip(3)
            .map(str::to_owned)
            .collect();
        assert_eq!(
            lines,
            [
                "TCP  192.168.88.3:8080 rr",
                "TCP  192.168.88.20:80 rr",
                "TCP  192.168.88.20:443 rr",
                "UDP  192.168.88.1:53 rr"
            ]
        );
    }

    #[test]
    fn flags_and_persistence() {
        let mut s = service(Protocol::Udp, 3, 53, vec![]);
        s.scheduler = Scheduler::Sh;
        s.flags = 3;
        s.persistence = Some(Persistence {
            timeout: 20,
            netmask: crate::model::ClientMask::Netmask(Ipv4Addr::new(255, 255, 255, 0)),
        });
        let l = listing(vec![s]);
        assert_eq!(
            list(&l, None, &numeric()).lines().nth(3),
            Some("UDP  192.168.88.3:53 sh (sh-fallback,sh-port) persistent 20 mask 255.255.255.0")
        );
        assert_eq!(
            rules(&l),
            "-A -u 192.168.88.3:53 -s sh -p 20 -M 255.255.255.0 -b sh-fallback,sh-port\n"
        );
    }

    #[test]
    fn mh_flags_carry_mh_names() {
        let mut s = service(Protocol::Tcp, 3, 80, vec![]);
        s.scheduler = Scheduler::Mh;
        s.flags = 3;
        let l = listing(vec![s]);
        assert_eq!(
            list(&l, None, &numeric()).lines().nth(3),
            Some("TCP  192.168.88.3:80 mh (mh-fallback,mh-port)")
        );
        let saved = rules(&l);
        assert_eq!(
            saved,
            "-A -t 192.168.88.3:80 -s mh -b mh-fallback,mh-port\n"
        );
        let Some(crate::edit::Edit::AddService(spec)) = crate::cli::restore_line(&saved).unwrap()
        else {
            panic!("{saved}")
        };
        assert_eq!(
            (spec.addr, spec.scheduler, spec.flags),
            (l.services[0].addr, Scheduler::Mh, 3),
            "-S | -R keeps the mh flags"
        );
    }

    #[test]
    fn stats_use_ipvsadm_columns_and_suffixes() {
        let mut d = dest(14, 0, 0);
        d.traffic = TrafficStatus {
            conns: 12,
            packets: 123_456_789,
            bytes: 98_765_432_100,
        };
        let mut s = service(Protocol::Tcp, 20, 80, vec![d]);
        s.traffic = TrafficStatus {
            conns: 12,
            packets: 123_456_789,
            bytes: 198_765_432_100_000,
        };
        let l = listing(vec![s]);
        let stats = Format {
            stats: true,
            ..numeric()
        };
        let expected = "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n\
\x20 -> RemoteAddress:Port\n\
TCP  192.168.88.20:80                   12  123456K        0     198T        0\n\
\x20 -> 192.168.88.14:80                   12  123456K        0   98765M        0\n";
        assert_eq!(list(&l, None, &stats), expected);
        let exact = Format {
            exact: true,
            ..stats
        };
        assert!(
            list(&l, None, &exact).contains("12 123456789        0 198765432100000        0\n"),
            "{}",
            list(&l, None, &exact)
        );
    }

    #[test]
    fn rates_thresholds_and_persistent_conns() {
        let mut d = dest(14, 2, 1);
        d.rates = Rates {
            cps: 3,
            pps: 40,
            bps: 5000,
        };
        d.u_threshold = 100;
        d.l_threshold = 50;
        d.persistent = 4;
        let rates = d.rates;
        let mut s = service(Protocol::Tcp, 20, 80, vec![d]);
        s.rates = rates;
        let l = listing(vec![s]);
        let rate = Format {
            rate: true,
            ..numeric()
        };
        assert_eq!(
            list(&l, None, &rate),
            "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n\
\x20 -> RemoteAddress:Port\n\
TCP  192.168.88.20:80                    3       40        0     5000        0\n\
\x20 -> 192.168.88.14:80                    3       40        0     5000        0\n"
        );
        let thresholds = Format {
            thresholds: true,
            ..numeric()
        };
        assert_eq!(
            list(&l, Some(&l.services[0].addr), &thresholds),
            "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n\
\x20 -> RemoteAddress:Port\n\
TCP  192.168.88.20:80 rr\n\
\x20 -> 192.168.88.14:80             100        50         2          1         \n"
        );
        let pc = Format {
            persistent_conn: true,
            ..numeric()
        };
        assert!(list(&l, None, &pc).ends_with(
            "  -> 192.168.88.14:80             1         4           2          1         \n"
        ));
    }

    #[test]
    fn save_prints_restorable_commands() {
        let mut d = dest(14, 0, 0);
        d.weight = 3;
        d.u_threshold = 10;
        let l = listing(vec![service(
            Protocol::Tcp,
            20,
            80,
            vec![dest(15, 0, 0), d],
        )]);
        assert_eq!(
            rules(&l),
            "-A -t 192.168.88.20:80 -s rr\n\
-a -t 192.168.88.20:80 -r 192.168.88.14:80 -g -w 3 -x 10\n\
-a -t 192.168.88.20:80 -r 192.168.88.15:80 -g -w 1\n"
        );
    }

    #[test]
    fn connection_entries() {
        let c = Connection {
            protocol: Protocol::Tcp,
            client: SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 10), 51234).into(),
            service: SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 100), 80).into(),
            dest: SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 21), 80).into(),
            state: "ESTABLISHED".into(),
            expires: 899,
        };
        assert_eq!(
            connections(&[c]),
            "IPVS connection entries\n\
pro expire state       source             virtual            destination\n\
TCP 14:59  ESTABLISHED 10.77.0.10:51234   10.77.0.100:80     10.77.0.21:80\n"
        );
    }
}
