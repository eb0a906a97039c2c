//! Prometheus text exposition of a listing, served on a loopback address when configured:
//! our own families, then node_exporter's IPVS ones ([`node_ipvs`]). Metric names and labels
//! are stable: scrapers and dashboards depend on them.

mod node_ipvs;

use std::fmt::Write;

use crate::{
    ha::Role,
    listing::{DestStatus, Listing, ServiceStatus},
};

/// A metric family: name, type, help, and the value it reads.
type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

const SERVICE_FAMILIES: [Family<ServiceStatus>; 3] = [
    (
        "xdpvs_service_connections_total",
        "counter",
        "Connections scheduled to the virtual service.",
        |s| s.traffic.conns,
    ),
    (
        "xdpvs_service_packets_total",
        "counter",
        "Packets forwarded for the virtual service.",
        |s| s.traffic.packets,
    ),
    (
        "xdpvs_service_bytes_total",
        "counter",
        "Bytes forwarded for the virtual service.",
        |s| s.traffic.bytes,
    ),
];

const DEST_FAMILIES: [Family<DestStatus>; 6] = [
    (
        "xdpvs_real_server_connections_total",
        "counter",
        "Connections scheduled to the real server.",
        |d| d.traffic.conns,
    ),
    (
        "xdpvs_real_server_packets_total",
        "counter",
        "Packets forwarded to the real server.",
        |d| d.traffic.packets,
    ),
    (
        "xdpvs_real_server_bytes_total",
        "counter",
        "Bytes forwarded to the real server.",
        |d| d.traffic.bytes,
    ),
    (
        "xdpvs_real_server_active_connections",
        "gauge",
        "Connections in ESTABLISHED (ipvsadm ActiveConn).",
        |d| d.active.into(),
    ),
    (
        "xdpvs_real_server_inactive_connections",
        "gauge",
        "Connections in any other state (ipvsadm InActConn).",
        |d| d.inactive.into(),
    ),
    (
        "xdpvs_real_server_weight",
        "gauge",
        "The real server's weight (0 = drained).",
        |d| d.weight.into(),
    ),
];

fn service_labels(s: &ServiceStatus) -> String {
    format!(
        "protocol=\"{}\",vip=\"{}\",port=\"{}\"",
        s.addr.protocol.label().to_lowercase(),
        s.addr.addr,
        s.addr.port
    )
}

fn family<V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: Vec<(String, V)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = if labels.is_empty() {
            writeln!(out, "{name} {v}")
        } else {
            writeln!(out, "{name}{{{labels}}} {v}")
        };
    }
}

/// The exposition (format 0.0.4) of `l`.
pub fn exposition(l: &Listing) -> String {
    let mut out = String::new();
    for (name, kind, help, value) in SERVICE_FAMILIES {
        let samples = l
            .services
            .iter()
            .map(|s| (service_labels(s), value(s)))
            .collect();
        family(&mut out, name, kind, help, samples);
    }
    for (name, kind, help, value) in DEST_FAMILIES {
        let samples = l
            .services
            .iter()
            .flat_map(|s| {
                s.dests.iter().map(move |d| {
                    (
                        format!("{},server=\"{}\"", service_labels(s), d.addr),
                        value(d),
                    )
                })
            })
            .collect();
        family(&mut out, name, kind, help, samples);
    }
    health(&mut out, l);
    let samples = l
        .counters
        .iter()
        .map(|(name, v)| (format!("result=\"{name}\""), *v))
        .collect();
    family(
        &mut out,
        "xdpvs_packets_total",
        "counter",
        "Packets seen by the XDP program by outcome.",
        samples,
    );
    if let Some(ha) = &l.ha {
        let samples = Role::ALL
            .iter()
            .map(|&r| (format!("role=\"{}\"", r.name()), u64::from(r == ha.role)))
            .collect();
        family(
            &mut out,
            "xdpvs_vrrp_role",
            "gauge",
            "keepalived's VRRP state of this director (1 for the current one).",
            samples,
        );
        let _ = writeln!(
            out,
            "# HELP xdpvs_director_healthy Whether every service has a usable real server (0 in the track file).\n\
# TYPE xdpvs_director_healthy gauge\nxdpvs_director_healthy {}",
            u64::from(ha.healthy)
        );
    }
    node_ipvs::write(&mut out, l);
    out
}

/// The health families: per checked real server, listed or removed.
fn health(out: &mut String, l: &Listing) {
    let servers = || {
        l.services.iter().flat_map(|s| {
            s.health.iter().flat_map(move |h| {
                h.real_servers
                    .iter()
                    .map(move |r| (format!("{},server=\"{}\"", service_labels(s), r.addr), r))
            })
        })
    };
    let samples = servers().map(|(l, r)| (l, u8::from(r.up))).collect();
    family(
        out,
        "xdpvs_real_server_up",
        "gauge",
        "Whether all the real server's health checks pass.",
        samples,
    );
    let samples = servers().map(|(l, r)| (l, r.transitions)).collect();
    family(
        out,
        "xdpvs_real_server_transitions_total",
        "counter",
        "Up and down transitions of the real server.",
        samples,
    );
    let samples = servers()
        .flat_map(|(l, r)| {
            r.latencies
                .iter()
                .enumerate()
                .filter_map(move |(i, s)| Some((format!("{l},check=\"{i}\""), (*s)?)))
        })
        .collect();
    family(
        out,
        "xdpvs_health_check_duration_seconds",
        "gauge",
        "Duration of the checker's last attempt.",
        samples,
    );
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{
        listing::{Rates, RealServerHealthStatus, ServiceHealthStatus, TrafficStatus},
        model::{Protocol, ServiceAddr},
    };

    #[test]
    fn names_and_labels_are_stable() {
        let traffic = TrafficStatus {
            conns: 3,
            packets: 30,
            bytes: 3000,
        };
        let l = Listing {
            flow_table_size: 16,
            services: vec![ServiceStatus {
                addr: ServiceAddr {
                    protocol: Protocol::Tcp,
                    addr: std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
                    port: 80,
                },
                scheduler: lb_common::sched::Scheduler::Rr,
                flags: 0,
                persistence: None,
                dests: vec![DestStatus {
                    addr: std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                    port: 80,
                    weight: 2,
                    u_threshold: 0,
                    l_threshold: 0,
                    persistent: 0,
                    active: 1,
                    inactive: 2,
                    mac: None,
                    traffic,
                    rates: Rates::default(),
                }],
                traffic,
                rates: Rates::default(),
                health: Some(ServiceHealthStatus {
                    quorum: true,
                    real_servers: vec![RealServerHealthStatus {
                        addr: std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)),
                        up: false,
                        reason: "TCP_CHECK failed 2 times: refused".into(),
                        since_secs: 4,
                        transitions: 1,
                        latencies: vec![Some(0.25)],
                    }],
                }),
            }],
            counters: vec![("passed".into(), 7)],
            total: traffic,
            ha: Some(crate::ha::HaStatus {
                role: Role::Backup,
                instance: Some("VI_1".into()),
                healthy: true,
            }),
        };
        let text = exposition(&l);
        for line in [
            "# TYPE xdpvs_service_connections_total counter",
            "xdpvs_service_bytes_total{protocol=\"tcp\",vip=\"10.0.0.100\",port=\"80\"} 3000",
            "xdpvs_real_server_active_connections{protocol=\"tcp\",vip=\"10.0.0.100\",port=\"80\",server=\"10.0.0.2\"} 1",
            "xdpvs_real_server_weight{protocol=\"tcp\",vip=\"10.0.0.100\",port=\"80\",server=\"10.0.0.2\"} 2",
            "xdpvs_packets_total{result=\"passed\"} 7",
            "xdpvs_vrrp_role{role=\"master\"} 0",
            "xdpvs_vrrp_role{role=\"backup\"} 1",
            "xdpvs_director_healthy 1",
            "node_ipvs_backend_weight{local_address=\"10.0.0.100\",local_mark=\"\",local_port=\"80\",proto=\"TCP\",remote_address=\"10.0.0.2\",remote_port=\"80\"} 2",
            "node_ipvs_incoming_bytes_total 3000",
            "xdpvs_real_server_up{protocol=\"tcp\",vip=\"10.0.0.100\",port=\"80\",server=\"10.0.0.3\"} 0",
            "xdpvs_real_server_transitions_total{protocol=\"tcp\",vip=\"10.0.0.100\",port=\"80\",server=\"10.0.0.3\"} 1",
            "xdpvs_health_check_duration_seconds{protocol=\"tcp\",vip=\"10.0.0.100\",port=\"80\",server=\"10.0.0.3\",check=\"0\"} 0.25",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
