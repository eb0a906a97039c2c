//! keepalived.conf's statements into services and their health checking, with keepalived's
//! defaults and its inheritance of timing options (virtual_server -> real_server -> checker).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
    time::Duration,
};

use lb_common::{sched::Scheduler, state::Timeouts};

use super::{Diagnostic, parser::Statement};
use crate::{
    config::{Config, Loaded},
    health::model::{
        Check, CheckKind, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DELAY_LOOP, DEFAULT_STATUS_CODES,
        HttpCheck, HttpProtocol, MiscCheck, RealServerHealth, ServiceHealth, UrlCheck,
    },
    model::{
        self, ClientMask, DEFAULT_SCHEDULER, DestSpec, MAX_WEIGHT, Persistence, Protocol,
        ServiceAddr, ServiceSpec,
    },
};

/// Top-level blocks of keepalived's VRRP side (and of its other non-checker parts): skipped.
const VRRP_KEYWORDS: &[&str] = &[
    "vrrp_instance",
    "vrrp_sync_group",
    "vrrp_script",
    "vrrp_track_file",
    "track_file",
    "vrrp_track_process",
    "track_process",
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "garp_group",
    "linkbeat_use_polling",
    "net_namespace",
    "net_namespace_ipvs",
    "namespace_with_ipsets",
    "instance",
    "use_pid_dir",
    "bfd_instance",
];

/// Checkers keepalived has and xdpvs does not.
const UNSUPPORTED_CHECKERS: &[&str] = &[
    "SMTP_CHECK",
    "DNS_CHECK",
    "PING_CHECK",
    "UDP_CHECK",
    "FILE_CHECK",
    "BFD_CHECK",
];

/// keepalived's `persistence_timeout` without a value: 6 minutes.
/// keepalived's largest `persistence_timeout` (31 days).
const MAX_PERSISTENCE: u32 = 2_678_400;

/// The configuration in `statements`, and what was tolerated.
pub fn convert(statements: &[Statement]) -> Result<Loaded, Diagnostic> {
    let mut c = Converter::default();
    for st in statements
        .iter()
        .filter(|s| s.keyword == "virtual_server_group")
    {
        c.group(st)?;
    }
    for st in statements {
        match st.keyword.as_str() {
            "virtual_server" => c.virtual_server(st)?,
            "virtual_server_group" => {}
            "global_defs" => c.global_defs(st)?,
            k if VRRP_KEYWORDS.contains(&k) => {}
            k if k.starts_with('$') => {
                return Err(unsupported(st, "configuration parameters are"));
            }
            _ => return Err(unknown(st)),
        }
    }
    let services: Vec<ServiceSpec> = c.services.iter().map(|s| s.spec.clone()).collect();
    model::validate(&services).map_err(|e| Diagnostic::plain(e.to_string()))?;
    let health = c
        .services
        .into_iter()
        .map(|s| s.health)
        .filter(|h| !h.real_servers.is_empty())
        .collect();
    Ok(Loaded {
        config: Config {
            interface: None,
            services,
            timeouts: c.timeouts,
            metrics: None,
            health,
        },
        warnings: c.warnings,
    })
}

/// A service as declared so far.
struct Declared {
    spec: ServiceSpec,
    health: ServiceHealth,
}

#[derive(Default)]
struct Converter {
    /// `virtual_server_group`s: their (address, port) entries.
    groups: HashMap<String, Vec<(IpAddr, u16)>>,
    services: Vec<Declared>,
    timeouts: Timeouts,
    warnings: Vec<Diagnostic>,
}

/// The timing options given at one level; None inherits from the level above.
#[derive(Clone, Copy, Default)]
struct Timing {
    delay_loop: Option<Duration>,
    connect_timeout: Option<Duration>,
    retry: Option<u32>,
    delay_before_retry: Option<Duration>,
    warmup: Option<Duration>,
}

impl Timing {
    /// Reads `st` if it is a timing option; whether it was one.
    fn read(&mut self, st: &Statement, warnings: &mut Vec<Diagnostic>) -> Result<bool, Diagnostic> {
        match st.keyword.as_str() {
            "delay_loop" => self.delay_loop = Some(seconds(st)?),
            "connect_timeout" => self.connect_timeout = Some(seconds(st)?),
            "delay_before_retry" => self.delay_before_retry = Some(seconds(st)?),
            "warmup" => self.warmup = Some(seconds(st)?),
            "retry" => self.retry = Some(one(st)?),
            "nb_get_retry" => {
                warnings.push(Diagnostic::at(
                    &st.at,
                    &st.keyword,
                    "deprecated, read as `retry`",
                ));
                self.retry = Some(one(st)?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// These options, with the outer level's where these have none.
    fn within(self, outer: Self) -> Self {
        Self {
            delay_loop: self.delay_loop.or(outer.delay_loop),
            connect_timeout: self.connect_timeout.or(outer.connect_timeout),
            retry: self.retry.or(outer.retry),
            delay_before_retry: self.delay_before_retry.or(outer.delay_before_retry),
            warmup: self.warmup.or(outer.warmup),
        }
    }
}

/// What a `virtual_server` gives its real servers by default.
struct ServiceDefaults {
    timing: Timing,
    virtualhost: Option<String>,
    inhibit_on_failure: bool,
}

/// A real server's settings for the service and its health checking.
struct RealServer {
    dest: DestSpec,
    port: Option<u16>,
    health: RealServerHealth,
}

impl Converter {
    fn warn(&mut self, st: &Statement, message: &str) {
        self.warnings
            .push(Diagnostic::at(&st.at, &st.keyword, message));
    }

    fn global_defs(&mut self, st: &Statement) -> Result<(), Diagnostic> {
        for s in block(st)? {
            match s.keyword.as_str() {
                "vrrp_strict" => self.warn(
                    s,
                    "keepalived's nftables rules in strict mode drop traffic to the VIPs: \
                     remove vrrp_strict for xdpvs to receive it",
                ),
                "lvs_timeouts" => self.lvs_timeouts(s)?,
                "lvs_sync_daemon" => self.warn(s, "ignored: xdpvs has no connection sync daemon"),
                _ => {}
            }
        }
        Ok(())
    }

    /// `lvs_timeouts [tcp S] [tcpfin S] [udp S]`.
    fn lvs_timeouts(&mut self, st: &Statement) -> Result<(), Diagnostic> {
        let [mut tcp, mut tcpfin, mut udp] = [0; 3];
        for pair in st.args.chunks(2) {
            let [name, value] = pair else {
                return Err(invalid(st, "takes `tcp|tcpfin|udp SECONDS` pairs"));
            };
            let value = value
                .parse()
                .map_err(|_| invalid(st, &format!("{value:?} is not a number of seconds")))?;
            match name.as_str() {
                "tcp" => tcp = value,
                "tcpfin" => tcpfin = value,
                "udp" => udp = value,
                _ => return Err(invalid(st, &format!("unknown timeout {name:?}"))),
            }
        }
        self.timeouts.set(tcp, tcpfin, udp);
        Ok(())
    }

    /// `virtual_server_group NAME { IP PORT | IP-RANGE PORT | CIDR PORT ... }`.
    fn group(&mut self, st: &Statement) -> Result<(), Diagnostic> {
        let [name] = &st.args[..] else {
            return Err(invalid(st, "takes a name"));
        };
        let mut entries = Vec::new();
        for e in block(st)? {
            if e.keyword == "fwmark" {
                return Err(unsupported(e, "firewall-mark services are"));
            }
            let [port] = &e.args[..] else {
                return Err(invalid(e, "a group entry is `IP PORT`"));
            };
            let port = parse(e, port, "port")?;
            entries.extend(addresses(e)?.into_iter().map(|a| (a, port)));
        }
        self.groups.insert(name.clone(), entries);
        Ok(())
    }

    fn virtual_server(&mut self, st: &Statement) -> Result<(), Diagnostic> {
        let addrs: Vec<(IpAddr, u16)> = match &st.args[..] {
            [kw, _] if kw == "fwmark" => {
                return Err(unsupported(st, "firewall-mark services are"));
            }
            [kw, name] if kw == "group" => self
                .groups
                .get(name)
                .cloned()
                .ok_or_else(|| invalid(st, &format!("no virtual_server_group {name:?}")))?,
            [ip, port] => vec![(address(st, ip)?, parse(st, port, "port")?)],
            _ => return Err(invalid(st, "takes `IP PORT`, `group NAME` or `fwmark N`")),
        };
        let mut protocol = Protocol::Tcp;
        let mut scheduler = None;
        let mut method_given = false;
        let mut persistence_timeout = None;
        let mut netmask = None;
        // The service-wide settings; each service of a group gets a copy with its address.
        let mut health = ServiceHealth::new(ServiceAddr {
            protocol,
            addr: Ipv4Addr::UNSPECIFIED.into(),
            port: 0,
        });
        let mut defaults = ServiceDefaults {
            timing: Timing::default(),
            virtualhost: None,
            inhibit_on_failure: false,
        };
        let mut real_servers = Vec::new();
        for s in block(st)? {
            if defaults.timing.read(s, &mut self.warnings)? {
                continue;
            }
            match s.keyword.as_str() {
                "lvs_sched" | "lb_algo" => {
                    let name = single(s)?;
                    scheduler = Some(Scheduler::from_name(name).ok_or_else(|| {
                        let known: Vec<&str> = Scheduler::ALL.iter().map(|s| s.name()).collect();
                        invalid(
                            s,
                            &format!(
                                "scheduler {name:?} not supported (one of {})",
                                known.join(", ")
                            ),
                        )
                    })?);
                }
                "lvs_method" | "lb_kind" => {
                    direct_routing(s)?;
                    method_given = true;
                }
                "protocol" => {
                    protocol = match single(s)? {
                        "TCP" => Protocol::Tcp,
                        "UDP" => Protocol::Udp,
                        "SCTP" => return Err(unsupported(s, "SCTP services are")),
                        p => return Err(invalid(s, &format!("unknown protocol {p:?}"))),
                    }
                }
                "persistence_timeout" => persistence_timeout = Some(self.persistence(s)?),
                "persistence_granularity" => netmask = Some(parse(s, single(s)?, "netmask")?),
                "nat_mask" => self.warn(s, "ignored (NAT only; keepalived no longer knows it)"),
                "virtualhost" => defaults.virtualhost = Some(single(s)?.to_owned()),
                "inhibit_on_failure" => defaults.inhibit_on_failure = flag(s)?,
                "sorry_server" => health.sorry_server = Some(sorry_server(s, &addrs)?),
                "sorry_server_lvs_method" => {
                    direct_routing(s)?;
                }
                "quorum" => health.quorum = one(s)?,
                "hysteresis" => health.hysteresis = one(s)?,
                "quorum_up" => health.quorum_up = Some(command(s)?),
                "quorum_down" => health.quorum_down = Some(command(s)?),
                "alpha" => health.alpha = flag(s)?,
                "omega" => health.omega = flag(s)?,
                "ip_family" if single(s)? == "inet" => {}
                "ip_family" => return Err(unsupported(s, "IPv6 services are")),
                "smtp_alert" | "ha_suspend" => {
                    self.warn(s, "ignored: xdpvs does not support it");
                }
                "real_server" => real_servers.push(self.real_server(s, &defaults)?),
                "persistence_engine" | "ops" | "sorry_server_inhibit" | "lvs_notify_fifo" => {
                    return Err(unsupported(s, "it is"));
                }
                _ => return Err(unknown(s)),
            }
        }
        if !method_given {
            self.warn(
                st,
                "no lvs_method/lb_kind: keepalived would use NAT; xdpvs uses direct routing (DR)",
            );
        }
        let persistence_timeout = match (persistence_timeout.flatten(), netmask) {
            (None, Some(_)) => {
                return Err(invalid(
                    st,
                    "persistence_granularity needs persistence_timeout",
                ));
            }
            (timeout, _) => timeout,
        };
        for (addr, port) in addrs {
            let addr = ServiceAddr {
                protocol,
                addr,
                port,
            };
            let mut spec = ServiceSpec {
                addr,
                scheduler: scheduler.unwrap_or(DEFAULT_SCHEDULER),
                flags: 0,
                persistence: persistence_timeout.map(|timeout| Persistence {
                    timeout,
                    netmask: netmask.unwrap_or(ClientMask::host(addr.addr)),
                }),
                dests: Vec::new(),
            };
            let mut health = ServiceHealth {
                addr,
                ..health.clone()
            };
            for (rs, at) in &real_servers {
                if let Some(p) = rs.port.filter(|p| *p != port) {
                    let message =
                        format!("port {p} ignored: direct routing keeps the service port {port}");
                    self.warn(at, &message);
                }
                spec.dests.push(rs.dest);
                if !rs.health.checks.is_empty() {
                    health.real_servers.push(rs.health.clone());
                }
            }
            self.declare(st, spec, health)?;
        }
        Ok(())
    }

    /// Adds a service, or merges a second declaration into the first as keepalived does.
    fn declare(
        &mut self,
        st: &Statement,
        spec: ServiceSpec,
        health: ServiceHealth,
    ) -> Result<(), Diagnostic> {
        let Some(first) = self.services.iter_mut().find(|d| d.spec.addr == spec.addr) else {
            self.services.push(Declared { spec, health });
            return Ok(());
        };
        for d in &spec.dests {
            if first.spec.dests.iter().any(|o| o.addr == d.addr) {
                return Err(invalid(
                    st,
                    &format!("service {} lists real server {} twice", spec.addr, d.addr),
                ));
            }
        }
        let same_settings =
            (first.spec.scheduler, first.spec.persistence) == (spec.scheduler, spec.persistence);
        first.spec.dests.extend(spec.dests);
        first.health.real_servers.extend(health.real_servers);
        let message = format!(
            "service {} declared again: its real servers are merged into the first declaration{}",
            spec.addr,
            if same_settings {
                ""
            } else {
                ", whose settings hold"
            }
        );
        self.warn(st, &message);
        Ok(())
    }

    /// `persistence_timeout [S]`: None for 0 (no persistence, with a warning).
    fn persistence(&mut self, st: &Statement) -> Result<Option<u32>, Diagnostic> {
        let timeout = match &st.args[..] {
            [] => crate::cli::DEFAULT_PERSISTENCE,
            [s] => parse(st, s, "number of seconds")?,
            _ => return Err(invalid(st, "takes at most one value")),
        };
        match timeout {
            0 => {
                self.warn(st, "0 (keepalived rejects it): no persistence");
                Ok(None)
            }
            1..=MAX_PERSISTENCE => Ok(Some(timeout)),
            _ => Err(invalid(st, &format!("outside 1..={MAX_PERSISTENCE}"))),
        }
    }

    /// `real_server IP [PORT] { ... }`, and the statement for errors about its port.
    fn real_server<'a>(
        &mut self,
        st: &'a Statement,
        defaults: &ServiceDefaults,
    ) -> Result<(RealServer, &'a Statement), Diagnostic> {
        let (addr, port) = match &st.args[..] {
            [ip] => (address(st, ip)?, None),
            [ip, port] => (address(st, ip)?, Some(parse(st, port, "port")?)),
            _ => return Err(invalid(st, "takes `IP [PORT]`")),
        };
        let mut dest = DestSpec {
            addr,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        };
        let mut health = RealServerHealth {
            addr,
            inhibit_on_failure: defaults.inhibit_on_failure,
            notify_up: None,
            notify_down: None,
            checks: Vec::new(),
        };
        let mut timing = Timing::default();
        let mut virtualhost = defaults.virtualhost.clone();
        let mut checkers = Vec::new();
        for s in block(st)? {
            if timing.read(s, &mut self.warnings)? {
                continue;
            }
            match s.keyword.as_str() {
                "weight" => {
                    dest.weight = one(s)?;
                    if dest.weight > MAX_WEIGHT {
                        return Err(invalid(s, &format!("outside 0..={MAX_WEIGHT}")));
                    }
                }
                "lvs_method" | "lb_kind" => {
                    direct_routing(s)?;
                }
                "uthreshold" => dest.u_threshold = one(s)?,
                "lthreshold" => dest.l_threshold = one(s)?,
                "inhibit_on_failure" => health.inhibit_on_failure = flag(s)?,
                "notify_up" => health.notify_up = Some(command(s)?),
                "notify_down" => health.notify_down = Some(command(s)?),
                "virtualhost" => virtualhost = Some(single(s)?.to_owned()),
                "smtp_alert" => self.warn(s, "ignored: xdpvs does not support it"),
                "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "MISC_CHECK" => checkers.push(s),
                k if UNSUPPORTED_CHECKERS.contains(&k) => {
                    return Err(unsupported(s, "this checker is"));
                }
                _ => return Err(unknown(s)),
            }
        }
        let timing = timing.within(defaults.timing);
        for s in checkers {
            health
                .checks
                .push(self.checker(s, timing, virtualhost.as_deref())?);
        }
        Ok((RealServer { dest, port, health }, st))
    }

    /// One checker block, its timing inherited from `outer`.
    fn checker(
        &mut self,
        st: &Statement,
        outer: Timing,
        virtualhost: Option<&str>,
    ) -> Result<Check, Diagnostic> {
        let mut timing = Timing::default();
        let mut connect_ip = None;
        let mut connect_port = None;
        let mut bindto = None;
        let mut http = HttpCheck {
            tls: st.keyword == "SSL_GET",
            virtualhost: virtualhost.map(str::to_owned),
            protocol: HttpProtocol::default(),
            urls: Vec::new(),
        };
        let mut misc = MiscCheck {
            path: String::new(),
            timeout: None,
            dynamic: false,
        };
        let is_http = matches!(st.keyword.as_str(), "HTTP_GET" | "SSL_GET");
        let is_misc = st.keyword == "MISC_CHECK";
        for s in block(st)? {
            if timing.read(s, &mut self.warnings)? {
                continue;
            }
            match s.keyword.as_str() {
                "connect_ip" if !is_misc => connect_ip = Some(address(s, single(s)?)?),
                "connect_port" if !is_misc => connect_port = Some(parse(s, single(s)?, "port")?),
                "bindto" if !is_misc => bindto = Some(address(s, single(s)?)?),
                "log_all_failures" => self.warn(s, "ignored: every transition is logged"),
                "bind_port" | "bind_if" | "fwmark" if !is_misc => {
                    return Err(unsupported(s, "it is"));
                }
                "url" if is_http => http.urls.push(url(s)?),
                "virtualhost" if is_http => http.virtualhost = Some(single(s)?.to_owned()),
                "http_protocol" if is_http => {
                    http.protocol = match single(s)? {
                        "1.0" => HttpProtocol::Http10,
                        "1.0C" => HttpProtocol::Http10Close,
                        "1.1" => HttpProtocol::Http11,
                        p => return Err(invalid(s, &format!("unknown HTTP version {p:?}"))),
                    }
                }
                "fast_recovery" | "enable_sni" if is_http => {
                    return Err(unsupported(s, "it is"));
                }
                "misc_path" if is_misc => misc.path = command(s)?,
                "misc_timeout" if is_misc => misc.timeout = Some(seconds(s)?),
                "misc_dynamic" if is_misc => misc.dynamic = flag(s)?,
                "user" if is_misc => {
                    return Err(unsupported(s, "running a script as another user is"));
                }
                _ => return Err(unknown(s)),
            }
        }
        let kind = match st.keyword.as_str() {
            "TCP_CHECK" => CheckKind::Tcp,
            "MISC_CHECK" if misc.path.is_empty() => {
                return Err(invalid(st, "needs misc_path"));
            }
            "MISC_CHECK" => CheckKind::Misc(misc),
            _ if http.urls.is_empty() => return Err(invalid(st, "needs a url block")),
            _ => CheckKind::Http(http),
        };
        let t = timing.within(outer);
        let check = Check {
            connect_ip,
            connect_port,
            bindto,
            delay_loop: t.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP),
            connect_timeout: t.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            retry: t.retry.unwrap_or(kind.default_retry()),
            delay_before_retry: t
                .delay_before_retry
                .unwrap_or(kind.default_delay_before_retry()),
            warmup: t.warmup,
            kind,
        };
        check.check_timing().map_err(|e| invalid(st, &e))?;
        Ok(check)
    }
}

/// `url { path P; digest D; status_code ...; virtualhost H }`.
fn url(st: &Statement) -> Result<UrlCheck, Diagnostic> {
    let mut url = UrlCheck {
        path: String::new(),
        status_codes: Vec::new(),
        digest: None,
        virtualhost: None,
    };
    for s in block(st)? {
        match s.keyword.as_str() {
            "path" => url.path = single(s)?.to_owned(),
            "digest" => {
                let d = single(s)?.to_ascii_lowercase();
                if d.len() != 32 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid(s, "an MD5 digest is 32 hex digits"));
                }
                url.digest = Some(d);
            }
            "status_code" => {
                for code in &s.args {
                    let (lo, hi) = code.split_once('-').unwrap_or((code, code));
                    let range = (parse(s, lo, "status code")?, parse(s, hi, "status code")?);
                    if !(100..=599).contains(&range.0) || range.0 > range.1 || range.1 > 599 {
                        return Err(invalid(s, &format!("{code:?} is not a range of 100..=599")));
                    }
                    url.status_codes.push(range);
                }
            }
            "virtualhost" => url.virtualhost = Some(single(s)?.to_owned()),
            "regex" | "regex_no_match" | "regex_options" | "regex_stack" | "regex_min_offset"
            | "regex_max_offset" => return Err(unsupported(s, "matching the body is")),
            _ => return Err(unknown(s)),
        }
    }
    if url.path.is_empty() {
        return Err(invalid(st, "needs a path"));
    }
    if url.status_codes.is_empty() {
        url.status_codes.push(DEFAULT_STATUS_CODES);
    }
    Ok(url)
}

/// `sorry_server IP [PORT]`: in direct routing the port is the service's.
fn sorry_server(st: &Statement, service: &[(IpAddr, u16)]) -> Result<IpAddr, Diagnostic> {
    let (ip, port) = match &st.args[..] {
        [ip] => (address(st, ip)?, None),
        [ip, port] => (address(st, ip)?, Some(parse::<u16>(st, port, "port")?)),
        _ => return Err(invalid(st, "takes `IP [PORT]`")),
    };
    if port.is_some_and(|p| service.iter().any(|(_, sp)| *sp != p)) {
        return Err(invalid(st, "direct routing keeps the service port"));
    }
    Ok(ip)
}

/// `lvs_method DR`; NAT and TUN are errors.
fn direct_routing(st: &Statement) -> Result<(), Diagnostic> {
    match single(st)? {
        "DR" => Ok(()),
        m @ ("NAT" | "TUN") => Err(invalid(
            st,
            &format!(
                "{m} forwarding is not supported by xdpvs, which does direct routing (DR) only"
            ),
        )),
        m => Err(invalid(st, &format!("unknown forwarding method {m:?}"))),
    }
}

/// The addresses of `IP`, `a.b.c.d-e`, `x:...:y-z` (the last group's range, in hex, as
/// keepalived reads it) or `a.b.c.d/len` (a group entry's keyword).
fn addresses(st: &Statement) -> Result<Vec<IpAddr>, Diagnostic> {
    let text = st.keyword.as_str();
    if let Some((first, last)) = text.split_once('-') {
        let range = |first: u16, last: u16| {
            (last >= first)
                .then_some(first..=last)
                .ok_or_else(|| invalid(st, "the range ends before it starts"))
        };
        return match address(st, first)? {
            IpAddr::V4(first) => {
                let [a, b, c, d] = first.octets();
                let last: u8 = parse(st, last, "range end")?;
                Ok(range(d.into(), last.into())?
                    .map(|x| Ipv4Addr::new(a, b, c, x as u8).into())
                    .collect())
            }
            IpAddr::V6(first) => {
                let mut groups = first.segments();
                let last = u16::from_str_radix(last, 16)
                    .map_err(|_| invalid(st, &format!("{last:?} is not a valid range end")))?;
                Ok(range(groups[7], last)?
                    .map(|x| {
                        groups[7] = x;
                        IpAddr::from(groups)
                    })
                    .collect())
            }
        };
    }
    if let Some((net, len)) = text.split_once('/') {
        let net: Ipv4Addr = parse(st, net, "IPv4 network")?;
        let len: u32 = parse(st, len, "prefix length")?;
        if !(16..=32).contains(&len) {
            return Err(invalid(st, "prefix length outside 16..=32"));
        }
        let first = u32::from(net) & !(u32::MAX.checked_shr(len).unwrap_or(0));
        return Ok((0..(1u32 << (32 - len)))
            .map(|i| Ipv4Addr::from(first + i).into())
            .collect());
    }
    Ok(vec![address(st, text)?])
}

/// An IPv4 or IPv6 address.
fn address(st: &Statement, text: &str) -> Result<IpAddr, Diagnostic> {
    parse(st, text, "IP address")
}

fn parse<T: FromStr>(st: &Statement, text: &str, what: &str) -> Result<T, Diagnostic> {
    text.parse()
        .map_err(|_| invalid(st, &format!("{text:?} is not a valid {what}")))
}

/// The statement's only argument.
fn single(st: &Statement) -> Result<&str, Diagnostic> {
    match &st.args[..] {
        [a] => Ok(a),
        _ => Err(invalid(st, "takes one value")),
    }
}

/// The statement's only argument, parsed.
fn one<T: FromStr>(st: &Statement) -> Result<T, Diagnostic> {
    parse(st, single(st)?, "value")
}

/// A duration in (possibly fractional) seconds.
fn seconds(st: &Statement) -> Result<Duration, Diagnostic> {
    let s: f64 = parse(st, single(st)?, "number of seconds")?;
    Duration::try_from_secs_f64(s).map_err(|_| invalid(st, "not a number of seconds"))
}

/// A flag: alone, or followed by true/false (as keepalived 2.x accepts).
fn flag(st: &Statement) -> Result<bool, Diagnostic> {
    match &st.args[..] {
        [] => Ok(true),
        [v] if matches!(v.as_str(), "true" | "on" | "yes") => Ok(true),
        [v] if matches!(v.as_str(), "false" | "off" | "no") => Ok(false),
        _ => Err(invalid(st, "takes no value, or true/false")),
    }
}

/// A command line: its words joined (a quoted one stays whole).
fn command(st: &Statement) -> Result<String, Diagnostic> {
    if st.args.is_empty() {
        return Err(invalid(st, "needs a command"));
    }
    Ok(st.args.join(" "))
}

/// The statement's block.
fn block(st: &Statement) -> Result<&[Statement], Diagnostic> {
    st.block
        .as_deref()
        .ok_or_else(|| invalid(st, "needs a { ... } block"))
}

fn invalid(st: &Statement, message: &str) -> Diagnostic {
    Diagnostic::at(&st.at, &st.keyword, message)
}

fn unsupported(st: &Statement, what: &str) -> Diagnostic {
    Diagnostic::at(
        &st.at,
        &st.keyword,
        format!("{what} not supported by xdpvs"),
    )
}

fn unknown(st: &Statement) -> Diagnostic {
    Diagnostic::at(&st.at, &st.keyword, "unknown keyword here")
}
