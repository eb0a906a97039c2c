//! The families of Prometheus node_exporter's `ipvs` collector (1.5.0, which reads
//! /proc/net/ip_vs_stats and /proc/net/ip_vs), rendered for a listing byte for byte as
//! node_exporter renders the same IPVS state: dashboards and alerts made for it work unchanged.

use std::collections::BTreeMap;

use super::family;
use crate::listing::{DestStatus, Listing, TrafficStatus};

/// A family of /proc/net/ip_vs_stats's totals, or of /proc/net/ip_vs's real server rows: name,
/// help, and the value it reads.
type Family<T> = (&'static str, &'static str, fn(&T) -> u64);

/// The real server families, in name order.
const BACKEND_FAMILIES: [Family<DestStatus>; 3] = [
    (
        "node_ipvs_backend_connections_active",
        "The current active connections by local and remote address.",
        |d| d.active.into(),
    ),
    (
        "node_ipvs_backend_connections_inactive",
        "The current inactive connections by local and remote address.",
        |d| d.inactive.into(),
    ),
    (
        "node_ipvs_backend_weight",
        "The current backend weight by local and remote address.",
        |d| d.weight.into(),
    ),
];

/// The labels of a real server's samples in the order client_golang writes them (by name).
const BACKEND_LABELS: [&str; 6] = [
    "local_address",
    "local_mark",
    "local_port",
    "proto",
    "remote_address",
    "remote_port",
];

/// The totals' families, in name order. In direct routing the director never sees replies:
/// outgoing stays 0, as in IPVS.
const TOTAL_FAMILIES: [Family<TrafficStatus>; 5] = [
    (
        "node_ipvs_connections_total",
        "The total number of connections made.",
        |t| t.conns,
    ),
    (
        "node_ipvs_incoming_bytes_total",
        "The total amount of incoming data.",
        |t| t.bytes,
    ),
    (
        "node_ipvs_incoming_packets_total",
        "The total number of incoming packets.",
        |t| t.packets,
    ),
    (
        "node_ipvs_outgoing_bytes_total",
        "The total amount of outgoing data.",
        |_| 0,
    ),
    (
        "node_ipvs_outgoing_packets_total",
        "The total number of outgoing packets.",
        |_| 0,
    ),
];

/// Appends the families of `l` to `out` as node_exporter serves them: families in name order,
/// the real server ones only when there is a real server, their samples in the order of their
/// label values.
pub(super) fn write(out: &mut String, l: &Listing) {
    // node_exporter sums the rows that share their labels (none do with all six); a TCP or
    // UDP service has no firewall mark, an empty `local_mark`.
    let mut backends: BTreeMap<[String; 6], [u64; 3]> = BTreeMap::new();
    for s in &l.services {
        for d in &s.dests {
            let labels = [
                s.addr.addr.to_string(),
                String::new(),
                s.addr.port.to_string(),
                s.addr.protocol.label().to_owned(),
                d.addr.to_string(),
                d.port.to_string(),
            ];
            let sums = backends.entry(labels).or_default();
            for (sum, (_, _, value)) in sums.iter_mut().zip(BACKEND_FAMILIES) {
                *sum += value(d);
            }
        }
    }
    for (i, (name, help, _)) in BACKEND_FAMILIES.into_iter().enumerate() {
        if backends.is_empty() {
            break;
        }
        let samples = backends
            .iter()
            .map(|(values, sums)| {
                let labels: Vec<String> = BACKEND_LABELS
                    .iter()
                    .zip(values)
                    .map(|(label, value)| format!("{label}=\"{value}\""))
                    .collect();
                (labels.join(","), go_float(sums[i]))
            })
            .collect();
        family(out, name, "gauge", help, samples);
    }
    for (name, help, value) in TOTAL_FAMILIES {
        family(
            out,
            name,
            "counter",
            help,
            vec![(String::new(), go_float(value(&l.total)))],
        );
    }
}

/// `v` as client_golang writes a sample value, Go's `strconv.FormatFloat(float64(v), 'g', -1,
/// 64)`: from 10^6 on in exponent form (`1.234567e+06`).
fn go_float(v: u64) -> String {
    if v < 1_000_000 {
        return v.to_string();
    }
    // Both languages print the shortest digits that read back as the same float; Go signs the
    // exponent and gives it at least two digits.
    let e = format!("{:e}", v as f64);
    match e.split_once('e') {
        Some((mantissa, exponent)) => format!("{mantissa}e+{exponent:0>2}"),
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{
        listing::{Rates, ServiceStatus},
        model::{Protocol, ServiceAddr},
    };

    fn service(protocol: Protocol, port: u16, dests: &[(u8, u32, u32, u32)]) -> ServiceStatus {
        ServiceStatus {
            addr: ServiceAddr {
                protocol,
                addr: std::net::IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100)),
                port,
            },
            scheduler: lb_common::sched::Scheduler::Rr,
            flags: 0,
            persistence: None,
            dests: dests
                .iter()
                .map(|&(host, weight, active, inactive)| DestStatus {
                    addr: std::net::IpAddr::V4(Ipv4Addr::new(10, 77, 0, host)),
                    port,
                    weight,
                    u_threshold: 0,
                    l_threshold: 0,
                    persistent: 0,
                    active,
                    inactive,
                    mac: None,
                    traffic: TrafficStatus::default(),
                    rates: Rates::default(),
                })
                .collect(),
            traffic: TrafficStatus::default(),
            rates: Rates::default(),
            health: None,
        }
    }

    /// What node_exporter 1.5.0 (`--collector.disable-defaults --collector.ipvs`) served for
    /// a /proc/net/ip_vs of these services and an ip_vs_stats of 10 connections, 60 packets
    /// and 1234567 bytes in, its node_ipvs_* lines.
    const NODE_EXPORTER: &str = r#"# HELP node_ipvs_backend_connections_active The current active connections by local and remote address.
# TYPE node_ipvs_backend_connections_active gauge
node_ipvs_backend_connections_active{local_address="10.77.0.100",local_mark="",local_port="443",proto="TCP",remote_address="10.77.0.22",remote_port="443"} 0
node_ipvs_backend_connections_active{local_address="10.77.0.100",local_mark="",local_port="53",proto="UDP",remote_address="10.77.0.22",remote_port="53"} 0
node_ipvs_backend_connections_active{local_address="10.77.0.100",local_mark="",local_port="80",proto="TCP",remote_address="10.77.0.21",remote_port="80"} 1
node_ipvs_backend_connections_active{local_address="10.77.0.100",local_mark="",local_port="80",proto="TCP",remote_address="10.77.0.23",remote_port="80"} 0
# HELP node_ipvs_backend_connections_inactive The current inactive connections by local and remote address.
# TYPE node_ipvs_backend_connections_inactive gauge
node_ipvs_backend_connections_inactive{local_address="10.77.0.100",local_mark="",local_port="443",proto="TCP",remote_address="10.77.0.22",remote_port="443"} 0
node_ipvs_backend_connections_inactive{local_address="10.77.0.100",local_mark="",local_port="53",proto="UDP",remote_address="10.77.0.22",remote_port="53"} 4
node_ipvs_backend_connections_inactive{local_address="10.77.0.100",local_mark="",local_port="80",proto="TCP",remote_address="10.77.0.21",remote_port="80"} 2
node_ipvs_backend_connections_inactive{local_address="10.77.0.100",local_mark="",local_port="80",proto="TCP",remote_address="10.77.0.23",remote_port="80"} 2
# HELP node_ipvs_backend_weight The current backend weight by local and remote address.
# TYPE node_ipvs_backend_weight gauge
node_ipvs_backend_weight{local_address="10.77.0.100",local_mark="",local_port="443",proto="TCP",remote_address="10.77.0.22",remote_port="443"} 1
node_ipvs_backend_weight{local_address="10.77.0.100",local_mark="",local_port="53",proto="UDP",remote_address="10.77.0.22",remote_port="53"} 3
node_ipvs_backend_weight{local_address="10.77.0.100",local_mark="",local_port="80",proto="TCP",remote_address="10.77.0.21",remote_port="80"} 0
node_ipvs_backend_weight{local_address="10.77.0.100",local_mark="",local_port="80",proto="TCP",remote_address="10.77.0.23",remote_port="80"} 1
# HELP node_ipvs_connections_total The total number of connections made.
# TYPE node_ipvs_connections_total counter
node_ipvs_connections_total 10
# HELP node_ipvs_incoming_bytes_total The total amount of incoming data.
# TYPE node_ipvs_incoming_bytes_total counter
node_ipvs_incoming_bytes_total 1.234567e+06
# HELP node_ipvs_incoming_packets_total The total number of incoming packets.
# TYPE node_ipvs_incoming_packets_total counter
node_ipvs_incoming_packets_total 60
# HELP node_ipvs_outgoing_bytes_total The total amount of outgoing data.
# TYPE node_ipvs_outgoing_bytes_total counter
node_ipvs_outgoing_bytes_total 0
# HELP node_ipvs_outgoing_packets_total The total number of outgoing packets.
# TYPE node_ipvs_outgoing_packets_total counter
node_ipvs_outgoing_packets_total 0
"#;

    #[test]
    fn renders_what_node_exporter_renders() {
        let l = Listing {
            flow_table_size: 4096,
            services: vec![
                // As the kernel lists them (newest real server first); the order is node_exporter's.
                service(Protocol::Tcp, 80, &[(23, 1, 0, 2), (21, 0, 1, 2)]),
                service(Protocol::Udp, 53, &[(22, 3, 0, 4)]),
                service(Protocol::Tcp, 443, &[(22, 1, 0, 0)]),
            ],
            counters: Vec::new(),
            total: TrafficStatus {
                conns: 10,
                packets: 60,
                bytes: 1_234_567,
            },
            ha: None,
        };
        let mut out = String::new();
        write(&mut out, &l);
        assert_eq!(out, NODE_EXPORTER);
    }

    #[test]
    fn without_real_servers_only_the_totals() {
        let mut l = Listing::configured(&[]);
        l.services.push(service(Protocol::Tcp, 80, &[]));
        let mut out = String::new();
        write(&mut out, &l);
        assert!(!out.contains("backend"), "{out}");
        assert!(out.contains("\nnode_ipvs_connections_total 0\n"), "{out}");
    }

    #[test]
    fn values_as_go_formats_floats() {
        for (v, go) in [
            (0, "0"),
            (999_999, "999999"),
            (1_000_000, "1e+06"),
            (1_234_567, "1.234567e+06"),
            (12_345_678_901, "1.2345678901e+10"),
            (u64::MAX, "1.8446744073709552e+19"),
        ] {
            assert_eq!(go_float(v), go);
        }
    }
}
