use std::{fs, path::PathBuf, time::Duration};

use super::*;
use crate::{
    health::model::{CheckKind, HttpProtocol},
    model::Protocol,
};

/// A directory of its own for one test's files.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kconf-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Loads `text` as keepalived.conf.
fn load_text(name: &str, text: &str) -> Result<Loaded, Diagnostic> {
    let path = dir(name).join("keepalived.conf");
    fs::write(&path, text).unwrap();
    load(&path)
}

fn error(name: &str, text: &str) -> String {
    load_text(name, text).unwrap_err().to_string()
}

fn warnings(l: &Loaded) -> Vec<String> {
    l.warnings
        .iter()
        .map(|w| format!("{}:{}", w.at.as_ref().map_or(0, |a| a.line), w.keyword))
        .collect()
}

#[test]
fn the_seed_loads_merged_with_its_warnings() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/keepalived/seed-master.conf");
    let l = load(&path).unwrap();
    let c = &l.config;
    assert_eq!(c.services.len(), 1);
    let s = &c.services[0];
    assert_eq!(s.addr.to_string(), "TCP 172.20.1.100:80");
    assert_eq!(s.scheduler.name(), "rr");
    assert_eq!(s.persistence, None);
    let dests: Vec<String> = s
        .dests
        .iter()
        .map(|d| format!("{}/{}", d.addr, d.weight))
        .collect();
    assert_eq!(dests, ["172.20.1.10/1", "172.20.1.11/1"]);
    assert_eq!(
        warnings(&l),
        [
            "15:vrrp_strict",
            "50:nat_mask",
            "52:persistence_timeout",
            "68:nb_get_retry",
            "78:nat_mask",
            "79:persistence_timeout",
            "89:nb_get_retry",
            "74:virtual_server"
        ]
    );
    let h = &c.health[0];
    assert_eq!(h.real_servers.len(), 2);
    let check = &h.real_servers[1].checks[0];
    assert_eq!(
        check.timing(),
        (
            Duration::from_secs(6),
            Duration::from_secs(3),
            3,
            Duration::from_secs(3),
            None
        )
    );
    let CheckKind::Http(http) = &check.kind else {
        panic!("{check:?}")
    };
    assert!(!http.tls);
    assert_eq!(
        (http.urls[0].path.as_str(), &http.urls[0].status_codes[..]),
        ("/", &[(200, 200)][..])
    );
}

#[test]
fn defaults_and_inheritance() {
    let l = load_text(
        "inherit",
        "virtual_server 10.0.0.1 80 {
            lvs_sched wlc
            lvs_method DR
            delay_loop 10
            retry 4
            virtualhost vs.example
            inhibit_on_failure
            real_server 10.0.0.2 80 {
                connect_timeout 2.5
                HTTP_GET {
                    url {
                        path /a
                    }
                    delay_loop 7
                }
                TCP_CHECK {
                }
                MISC_CHECK {
                    misc_path \"/bin/check -x\"
                    misc_dynamic
                    misc_timeout 4
                }
            }
            real_server 10.0.0.3 {
                weight 70000
                SSL_GET {
                    url {
                        path /
                    }
                    http_protocol 1.1
                    virtualhost rs.example
                    warmup 0
                }
            }
        }
        virtual_server 10.0.0.1 53 {
            lb_kind DR
            protocol UDP
            real_server 10.0.0.2 {
            }
        }",
    )
    .unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let c = &l.config;
    assert_eq!(c.services[1].addr.protocol, Protocol::Udp);
    assert_eq!(c.services[1].scheduler.name(), "wlc");
    assert_eq!(c.services[0].dests[1].weight, 70000, "as the kernel takes");
    assert_eq!(
        c.health.len(),
        1,
        "a service without checkers has no health entry"
    );
    let [rs2, rs3] = &c.health[0].real_servers[..] else {
        panic!("{:?}", c.health)
    };
    assert!(rs2.inhibit_on_failure && rs3.inhibit_on_failure);
    let [http, tcp, misc] = &rs2.checks[..] else {
        panic!("{rs2:?}")
    };
    // The checker's own delay_loop, the real server's connect_timeout, the service's retry.
    assert_eq!(
        http.timing(),
        (
            Duration::from_secs(7),
            Duration::from_millis(2500),
            4,
            Duration::from_secs(3),
            None
        )
    );
    let CheckKind::Http(h) = &http.kind else {
        panic!()
    };
    assert_eq!(h.virtualhost.as_deref(), Some("vs.example"));
    assert_eq!(h.urls[0].status_codes, [(200, 299)]);
    assert_eq!(h.protocol, HttpProtocol::Http10);
    assert_eq!(
        (tcp.delay_loop, tcp.retry, tcp.delay_before_retry),
        (Duration::from_secs(10), 4, Duration::from_secs(1))
    );
    assert_eq!(tcp.kind, CheckKind::Tcp);
    let CheckKind::Misc(m) = &misc.kind else {
        panic!()
    };
    assert_eq!(
        (m.path.as_str(), m.dynamic, m.timeout),
        ("/bin/check -x", true, Some(Duration::from_secs(4)))
    );
    let ssl = &rs3.checks[0];
    let CheckKind::Http(h) = &ssl.kind else {
        panic!()
    };
    assert!(h.tls);
    assert_eq!(
        (h.virtualhost.as_deref(), h.protocol),
        (Some("rs.example"), HttpProtocol::Http11)
    );
    assert_eq!(
        (ssl.connect_timeout, ssl.warmup),
        (Duration::from_secs(5), Some(Duration::ZERO))
    );

    // Nothing set: keepalived's defaults, and a warning that DR replaces keepalived's NAT.
    let l = load_text(
        "defaults",
        "virtual_server 10.0.0.1 80 {\nreal_server 10.0.0.2 80 {\nMISC_CHECK {\nmisc_path /bin/true\n}\n}\n}\n",
    )
    .unwrap();
    assert_eq!(warnings(&l), ["1:virtual_server"]);
    assert!(l.warnings[0].message.contains("NAT"));
    assert_eq!(l.config.services[0].scheduler.name(), "wlc");
    let misc = &l.config.health[0].real_servers[0].checks[0];
    assert_eq!(
        misc.timing(),
        (
            Duration::from_secs(60),
            Duration::from_secs(5),
            0,
            Duration::from_secs(1),
            None
        )
    );
}

#[test]
fn every_service_and_checker_keyword() {
    let l = load_text(
        "keywords",
        &"global_defs {
            router_id x
            lvs_timeouts tcp 100 tcpfin 10 udp 50
        }
        vrrp_instance VI_1 {
            state MASTER
        }
        virtual_server 10.0.0.1 80 {
            lb_algo mh;lb_kind DR;protocol TCP
            persistence_timeout;persistence_granularity 255.255.255.0
            quorum 2;hysteresis 1;quorum_up \"/bin/up 1\";quorum_down /bin/down;alpha;omega
            sorry_server 10.0.0.9 80;sorry_server_lvs_method DR;ip_family inet
            real_server 10.0.0.2 80 {
                weight 3;uthreshold 100;lthreshold 10;lvs_method DR
                notify_up /bin/nu;notify_down \"/bin/nd x\";inhibit_on_failure false
                TCP_CHECK {
                    connect_ip 10.0.1.2;connect_port 8080;bindto 10.0.0.5
                    connect_timeout 1;nb_get_retry 2;delay_before_retry 0.5;warmup 3
                }
                HTTP_GET {
                    http_protocol 1.0C
                    url {
                        path /h;digest 0123456789ABCDEF0123456789abcdef
                        status_code 200 301-302;virtualhost u.example
                    }
                }
            }
        }"
        .replace(';', "\n"),
    )
    .unwrap();
    assert_eq!(warnings(&l), ["36:nb_get_retry"]);
    let c = &l.config;
    assert_eq!(c.timeouts.of(lb_common::state::ConnState::Established), 100);
    let s = &c.services[0];
    assert_eq!(s.scheduler.name(), "mh");
    let p = s.persistence.unwrap();
    assert_eq!(
        (p.timeout, p.netmask.to_string().as_str()),
        (360, "255.255.255.0")
    );
    let d = s.dests[0];
    assert_eq!((d.weight, d.u_threshold, d.l_threshold), (3, 100, 10));
    let h = &c.health[0];
    assert_eq!(
        (h.quorum, h.hysteresis, h.alpha, h.omega),
        (2, 1, true, true)
    );
    assert_eq!(
        (h.quorum_up.as_deref(), h.quorum_down.as_deref()),
        (Some("/bin/up 1"), Some("/bin/down"))
    );
    assert_eq!(h.sorry_server, Some("10.0.0.9".parse().unwrap()));
    let rs = &h.real_servers[0];
    assert!(!rs.inhibit_on_failure);
    assert_eq!(
        (rs.notify_up.as_deref(), rs.notify_down.as_deref()),
        (Some("/bin/nu"), Some("/bin/nd x"))
    );
    let tcp = &rs.checks[0];
    assert_eq!(
        (tcp.connect_ip, tcp.connect_port, tcp.bindto),
        (
            Some("10.0.1.2".parse().unwrap()),
            Some(8080),
            Some("10.0.0.5".parse().unwrap())
        )
    );
    assert_eq!(
        (tcp.retry, tcp.delay_before_retry, tcp.warmup),
        (2, Duration::from_millis(500), Some(Duration::from_secs(3)))
    );
    let CheckKind::Http(http) = &rs.checks[1].kind else {
        panic!()
    };
    assert_eq!(http.protocol, HttpProtocol::Http10Close);
    let u = &http.urls[0];
    assert_eq!(
        u.digest.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(u.status_codes, [(200, 200), (301, 302)]);
    assert_eq!(u.virtualhost.as_deref(), Some("u.example"));
}

#[test]
fn groups_expand_to_services_sharing_the_checks() {
    let l = load_text(
        "group",
        "virtual_server_group G {\n10.0.0.1 80\n10.0.1.5-7 80\n10.0.2.0/30 80\n}
        virtual_server group G {\nlb_kind DR\nreal_server 10.0.0.9 80 {\nTCP_CHECK {\n}\n}\n}",
    )
    .unwrap();
    let addrs: Vec<String> = l
        .config
        .services
        .iter()
        .map(|s| s.addr.addr.to_string())
        .collect();
    assert_eq!(
        addrs,
        [
            "10.0.0.1", "10.0.1.5", "10.0.1.6", "10.0.1.7", "10.0.2.0", "10.0.2.1", "10.0.2.2",
            "10.0.2.3"
        ]
    );
    assert_eq!(l.config.health.len(), 8);
    assert_eq!(l.config.health[3].addr, l.config.services[3].addr);
    let l = load_text(
        "group-port",
        "virtual_server_group G {\n10.0.0.1 80\n10.0.0.2 81\n}\nvirtual_server group G {\nlb_kind DR\nreal_server 10.0.0.9 80 {\n}\n}",
    )
    .unwrap();
    assert_eq!(
        l.warnings[0].to_string().split_once(": `").unwrap().1,
        "real_server`: port 80 ignored: direct routing keeps the service port 81"
    );
}

#[test]
fn includes_are_relative_and_globbed() {
    let d = dir("include");
    fs::create_dir_all(d.join("conf.d")).unwrap();
    fs::write(
        d.join("main.conf"),
        "global_defs {\n}\ninclude conf.d/*.conf\n",
    )
    .unwrap();
    fs::write(
        d.join("conf.d/b.conf"),
        "virtual_server 10.0.0.2 80 {\nlb_kind DR\n}\n",
    )
    .unwrap();
    fs::write(d.join("conf.d/a.conf"), "include ../rs.inc\n").unwrap();
    fs::write(d.join("conf.d/skip.txt"), "garbage\n").unwrap();
    fs::write(
        d.join("rs.inc"),
        "virtual_server 10.0.0.1 80 {\nlb_kind NAT\n}\n",
    )
    .unwrap();
    let e = load(&d.join("main.conf")).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}:2: `lb_kind`: NAT forwarding is not supported by xdpvs, which does direct routing (DR) only",
            d.join("conf.d/../rs.inc").display()
        )
    );
    fs::write(
        d.join("rs.inc"),
        "virtual_server 10.0.0.1 80 {\nlb_kind DR\n}\n",
    )
    .unwrap();
    let l = load(&d.join("main.conf")).unwrap();
    let addrs: Vec<String> = l
        .config
        .services
        .iter()
        .map(|s| s.addr.addr.to_string())
        .collect();
    assert_eq!(addrs, ["10.0.0.1", "10.0.0.2"]);
}

#[test]
fn every_kernel_scheduler_is_taken() {
    let names = [
        "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
        "twos",
    ];
    for name in names {
        let text = format!("virtual_server 10.0.0.1 80 {{\nlb_kind DR\nlb_algo {name}\n}}\n");
        let l = load_text(&format!("sched-{name}"), &text).unwrap();
        assert_eq!(l.config.services[0].scheduler.name(), name);
    }
}

#[test]
fn unsupported_is_an_error_naming_line_and_keyword() {
    let vs = |body: &str| format!("virtual_server 10.0.0.1 80 {{\nlb_kind DR\n{body}\n}}\n");
    let rs = |check: &str| vs(&format!("real_server 10.0.0.2 80 {{\n{check}\n}}"));
    for (text, suffix) in [
        (
            vs("lb_kind TUN"),
            ":3: `lb_kind`: TUN forwarding is not supported",
        ),
        (
            vs("lvs_sched wfo"),
            ":3: `lvs_sched`: scheduler \"wfo\" not supported",
        ),
        (
            vs("protocol SCTP"),
            ":3: `protocol`: SCTP services are not supported",
        ),
        (
            vs("persistence_engine sip"),
            ":3: `persistence_engine`: it is not supported",
        ),
        (vs("bogus 1"), ":3: `bogus`: unknown keyword here"),
        (
            rs("TCP_CHECK {\ndelay_loop 0\n}"),
            ":4: `TCP_CHECK`: delay_loop must be above 0",
        ),
        (
            "virtual_server fwmark 1 { }".into(),
            ":1: `virtual_server`: firewall-mark services are not supported",
        ),
        (
            "virtual_server group nope { }".into(),
            ":1: `virtual_server`: no virtual_server_group \"nope\"",
        ),
        (
            "$X=1\n".into(),
            ":1: `$X=1`: configuration parameters are not supported",
        ),
        (
            "vrrp_nonsense { }".into(),
            ":1: `vrrp_nonsense`: unknown keyword here",
        ),
        (
            rs("SMTP_CHECK { }"),
            ":4: `SMTP_CHECK`: this checker is not supported",
        ),
        (
            rs("DNS_CHECK { }"),
            ":4: `DNS_CHECK`: this checker is not supported",
        ),
        (
            rs("PING_CHECK { }"),
            ":4: `PING_CHECK`: this checker is not supported",
        ),
        (
            rs("UDP_CHECK { }"),
            ":4: `UDP_CHECK`: this checker is not supported",
        ),
        (
            rs("FILE_CHECK { }"),
            ":4: `FILE_CHECK`: this checker is not supported",
        ),
        (
            rs("BFD_CHECK { }"),
            ":4: `BFD_CHECK`: this checker is not supported",
        ),
        (
            rs("lvs_method NAT"),
            ":4: `lvs_method`: NAT forwarding is not supported",
        ),
        (
            rs("weight 2147483648"),
            ":4: `weight`: outside 0..=2147483647",
        ),
        (
            rs("HTTP_GET {\nurl {\npath /\nregex x\n}\n}"),
            ":7: `regex`: matching the body is not supported",
        ),
        (
            rs("HTTP_GET {\nconnect_timeout 1\n}"),
            ":4: `HTTP_GET`: needs a url block",
        ),
        (
            rs("TCP_CHECK {\nbind_if eth0\n}"),
            ":5: `bind_if`: it is not supported",
        ),
        (
            rs("MISC_CHECK {\nmisc_path /x\nuser nobody\n}"),
            ":6: `user`: running a script as another user is not supported",
        ),
        (
            rs("TCP_CHECK {\nmisc_path /x\n}"),
            ":5: `misc_path`: unknown keyword here",
        ),
        (
            rs("HTTP_GET {\nurl {\npath /\nstatus_code 99\n}\n}"),
            ":7: `status_code`: \"99\" is not a range of 100..=599",
        ),
        (
            vs("persistence_timeout 3000000"),
            ":3: `persistence_timeout`: outside 1..=2678400",
        ),
        (
            vs("real_server 10.0.0.2 {\n}\nreal_server 10.0.0.2 {\n}"),
            "service TCP 10.0.0.1:80: real server 10.0.0.2 is listed twice",
        ),
        (
            "virtual_server 10.0.0.1 80 {\nlb_kind DR\n".into(),
            ":1: `{`: block not closed",
        ),
    ] {
        let e = error("unsupported", &text);
        assert!(e.contains(suffix), "{text}\n=> {e}");
        if suffix.starts_with(':') {
            assert!(e.contains("keepalived.conf:"), "{e}");
        }
    }
}

#[test]
fn vrrp_blocks_are_skipped_silently() {
    let l = load_text(
        "vrrp",
        "global_defs {\nnotification_email {\na@b\n}\n}
        vrrp_script chk {\nscript \"/bin/true\"\n}
        vrrp_sync_group G {\ngroup {\nVI_1\n}\n}
        vrrp_instance VI_1 {\ntrack_script {\nchk\n}\nunknown_to_xdpvs 1\n}
        static_ipaddress {\n10.0.0.1/24 dev eth0\n}
        track_file tf {\nfile /run/x\n}",
    )
    .unwrap();
    assert!(
        l.warnings.is_empty() && l.config.services.is_empty(),
        "{l:?}"
    );
}

/// Every LVS sample of Debian's keepalived package loads, or fails with an error naming its
/// file, line and keyword; with `lb_kind DR` in place of NAT (which they all use) more of
/// each sample is read and the same holds.
#[test]
fn debian_samples_load_or_fail_clearly() {
    let samples = PathBuf::from("/usr/share/doc/keepalived/samples");
    let mut files: Vec<PathBuf> = fs::read_dir(&samples)
        .expect("keepalived's samples (cargo xtask installs Debian's keepalived)")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("keepalived.conf.")
        })
        .collect();
    files.sort();
    let d = dir("samples");
    let mut loaded = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        if !text.contains("virtual_server") {
            let l = load(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(l.config.services.is_empty());
            continue;
        }
        let e = load(file).unwrap_err();
        assert!(e.at.as_ref().is_some_and(|a| *a.file == **file), "{e}");
        let dr = d.join(file.file_name().unwrap());
        fs::write(&dr, text.replace("lb_kind NAT", "lb_kind DR")).unwrap();
        match load(&dr) {
            Ok(l) => {
                assert!(!l.config.services.is_empty());
                loaded.push(file.file_name().unwrap().to_string_lossy().into_owned());
            }
            Err(e) => {
                let at = e.at.as_ref().unwrap_or_else(|| panic!("{e}"));
                assert!(
                    *at.file == *dr && e.message.contains("not supported"),
                    "{e}"
                );
            }
        }
    }
    // The samples with checkers xdpvs has load once NAT is replaced.
    for name in [
        "HTTP_GET.port",
        "SSL_GET",
        "inhibit",
        "misc_check",
        "misc_check_arg",
        "quorum",
        "sample",
        "status_code",
        "virtualhost",
        "vrrp.lvs_syncd",
    ] {
        assert!(
            loaded.contains(&format!("keepalived.conf.{name}")),
            "{name}: {loaded:?}"
        );
    }
}
