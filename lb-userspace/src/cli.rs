//! ipvsadm's command line, parsed as ipvsadm parses it (popt: bundled short options, `--long`,
//! `--long=value`, `-p` with an optional value), checked against ipvsadm's table of legal
//! command/option pairs, with its messages. Pure: xdpvsadm turns the result into requests.

use std::net::{IpAddr, Ipv4Addr};

use lb_common::sched::Scheduler;

use crate::{
    edit::Edit,
    model::{
        ClientMask, DEFAULT_SCHEDULER, DestSpec, MAX_WEIGHT, Persistence, Protocol, SchedFlag,
        ServiceAddr, ServiceSpec,
    },
};

/// What one command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// The command.
    pub action: Action,
    /// Listing options.
    pub format: Format,
    /// Print listings as JSON (xdpvs).
    pub json: bool,
}

/// The command of an invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `-A -E -D -a -e -d -C`.
    Edit(Edit),
    /// `-L` (all services, or one with `-t`/`-u`).
    List(Option<ServiceAddr>),
    /// `-L -c`.
    ListConnections,
    /// `-L --timeout`.
    ListTimeouts,
    /// `-S`.
    Save,
    /// `-R`.
    Restore,
    /// `-Z` (all services, or one).
    Zero(Option<ServiceAddr>),
    /// `--set tcp tcpfin udp`.
    SetTimeouts([u32; 3]),
    /// `--reload` (xdpvs): re-read the daemon's configuration file.
    Reload,
    /// `-h`.
    Help,
    /// `-v`.
    Version,
}

/// Listing options (`--stats`, `--rate`, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Format {
    /// `-n`.
    pub numeric: bool,
    /// `--stats`.
    pub stats: bool,
    /// `--rate`.
    pub rate: bool,
    /// `--thresholds`.
    pub thresholds: bool,
    /// `--persistent-conn`.
    pub persistent_conn: bool,
    /// `--nosort`.
    pub nosort: bool,
    /// `--exact`.
    pub exact: bool,
}

/// A command line xdpvsadm will not run: the message for stderr and the exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliError {
    /// 2 for a malformed command line, 255 for one xdpvs refuses.
    pub code: u8,
    /// What to print.
    pub message: String,
}

fn malformed(message: impl Into<String>) -> CliError {
    CliError {
        code: 2,
        message: message.into(),
    }
}

fn unsupported(message: impl Into<String>) -> CliError {
    CliError {
        code: 255,
        message: message.into(),
    }
}

/// popt's refusal of argument `arg`, which ipvsadm prints as `poptBadOption: poptStrerror`
/// and, returning -1 from `parse_options`, exits 255 with.
fn popt_error(arg: &str, what: &str) -> CliError {
    unsupported(format!("{arg}: {what}"))
}

/// ipvsadm's `tryhelp_exit(-1)` for a command line that does not start with a command.
fn try_help() -> CliError {
    unsupported("Try `xdpvsadm -h' or 'xdpvsadm --help' for more information.")
}

/// Seconds a persistent service's template lives when `-p` gives none (ipvsadm 1.31's 360,
/// seen on the reference kernel).
pub const DEFAULT_PERSISTENCE: u32 = 360;
const MAX_TIMEOUT: u32 = 86400 * 31;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    Restore,
    Save,
    Zero,
    Reload,
}

impl Cmd {
    const fn name(self) -> &'static str {
        match self {
            Self::Add => "add-service",
            Self::Edit => "edit-service",
            Self::Del => "delete-service",
            Self::Flush => "flush",
            Self::List => "list",
            Self::AddDest => "add-server",
            Self::DelDest => "delete-server",
            Self::EditDest => "edit-server",
            Self::Timeout => "set",
            Self::Restore => "restore",
            Self::Save => "save",
            Self::Zero => "zero",
            Self::Reload => "reload",
        }
    }

    /// ipvsadm's legality row over [`Opt::ALL`]: '+' required, 'x' illegal, '1' exclusive.
    const fn legality(self) -> &'static [u8; 15] {
        // Columns: -n -c service -s -p -M -r forward -w -x -y --timeout --stats --rate
        // --thresholds/--persistent-conn.
        match self {
            Self::Add | Self::Edit => b"xx+   xxxxxxxxx",
            Self::Del => b"xx+xxxxxxxxxxxx",
            Self::Flush | Self::Timeout | Self::Restore | Self::Reload => b"xxxxxxxxxxxxxxx",
            Self::List => b" 11xxxxxxxx1   ",
            Self::AddDest | Self::EditDest => b"xx+xxx+    xxxx",
            Self::DelDest => b"xx+xxx+xxxxxxxx",
            Self::Save => b" xxxxxxxxxxxxxx",
            Self::Zero => b"xx xxxxxxxxxxxx",
        }
    }
}

/// Options in the order of ipvsadm's legality table (`--nosort`, `--exact`, `--sort` and `-b`
/// are not checked against it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Opt {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    Timeout,
    Stats,
    Rate,
    ListFormat,
}

impl Opt {
    const fn name(self) -> &'static str {
        match self {
            Self::Numeric => "numeric",
            Self::Connection => "connection",
            Self::Service => "service-address",
            Self::Scheduler => "scheduler",
            Self::Persistent => "persistent",
            Self::Netmask => "netmask",
            Self::Server => "real-server",
            Self::Forward => "forwarding-method",
            Self::Weight => "weight",
            Self::UThreshold => "u-threshold",
            Self::LThreshold => "l-threshold",
            Self::Timeout => "timeout",
            Self::Stats => "stats",
            Self::Rate => "rate",
            Self::ListFormat => "thresholds",
        }
    }
}

/// How an option takes its value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arg {
    None,
    Required,
    Optional,
}

/// What an option of [`OPTIONS`] stands for: [`parse`] handles each in one exhaustive `match`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Switch {
    /// A command of ipvsadm's legality table (`-A`, `-L`, `--set`, ...).
    Command(Cmd),
    Help,
    Version,
    /// `--start-daemon`, `--stop-daemon`.
    SyncDaemon,
    TcpService,
    UdpService,
    FwmarkService,
    Scheduler,
    Persistent,
    Netmask,
    SchedFlags,
    RealServer,
    Masquerading,
    Ipip,
    Gatewaying,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    McastInterface,
    SyncId,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    Ops,
    Json,
}

/// (option, long name, short letter, value) of every option xdpvsadm knows, as ipvsadm's
/// popt table has them.
const OPTIONS: &[(Switch, &str, char, Arg)] = &[
    (Switch::Command(Cmd::Add), "add-service", 'A', Arg::None),
    (Switch::Command(Cmd::Edit), "edit-service", 'E', Arg::None),
    (Switch::Command(Cmd::Del), "delete-service", 'D', Arg::None),
    (Switch::Command(Cmd::Flush), "clear", 'C', Arg::None),
    (Switch::Command(Cmd::List), "list", 'L', Arg::None),
    (Switch::Command(Cmd::List), "list", 'l', Arg::None),
    (Switch::Command(Cmd::Zero), "zero", 'Z', Arg::None),
    (Switch::Command(Cmd::AddDest), "add-server", 'a', Arg::None),
    (
        Switch::Command(Cmd::EditDest),
        "edit-server",
        'e',
        Arg::None,
    ),
    (
        Switch::Command(Cmd::DelDest),
        "delete-server",
        'd',
        Arg::None,
    ),
    (Switch::Command(Cmd::Timeout), "set", '\0', Arg::None),
    (Switch::Help, "help", 'h', Arg::None),
    (Switch::Version, "version", 'v', Arg::None),
    (Switch::Command(Cmd::Restore), "restore", 'R', Arg::None),
    (Switch::Command(Cmd::Save), "save", 'S', Arg::None),
    (Switch::SyncDaemon, "start-daemon", '\0', Arg::Required),
    (Switch::SyncDaemon, "stop-daemon", '\0', Arg::Required),
    (Switch::TcpService, "tcp-service", 't', Arg::Required),
    (Switch::UdpService, "udp-service", 'u', Arg::Required),
    (Switch::FwmarkService, "fwmark-service", 'f', Arg::Required),
    (Switch::Scheduler, "scheduler", 's', Arg::Required),
    (Switch::Persistent, "persistent", 'p', Arg::Optional),
    (Switch::Netmask, "netmask", 'M', Arg::Required),
    (Switch::SchedFlags, "sched-flags", 'b', Arg::Required),
    (Switch::RealServer, "real-server", 'r', Arg::Required),
    (Switch::Masquerading, "masquerading", 'm', Arg::None),
    (Switch::Ipip, "ipip", 'i', Arg::None),
    (Switch::Gatewaying, "gatewaying", 'g', Arg::None),
    (Switch::Weight, "weight", 'w', Arg::Required),
    (Switch::UThreshold, "u-threshold", 'x', Arg::Required),
    (Switch::LThreshold, "l-threshold", 'y', Arg::Required),
    (Switch::Numeric, "numeric", 'n', Arg::None),
    (Switch::Connection, "connection", 'c', Arg::None),
    (
        Switch::McastInterface,
        "mcast-interface",
        '\0',
        Arg::Required,
    ),
    (Switch::SyncId, "syncid", '\0', Arg::Required),
    (Switch::Timeout, "timeout", '\0', Arg::None),
    (Switch::Daemon, "daemon", '\0', Arg::None),
    (Switch::Stats, "stats", '\0', Arg::None),
    (Switch::Rate, "rate", '\0', Arg::None),
    (Switch::Thresholds, "thresholds", '\0', Arg::None),
    (Switch::PersistentConn, "persistent-conn", '\0', Arg::None),
    (Switch::NoSort, "nosort", '\0', Arg::None),
    (Switch::Sort, "sort", '\0', Arg::None),
    (Switch::Exact, "exact", 'X', Arg::None),
    (Switch::Ipv6, "ipv6", '6', Arg::None),
    (Switch::Ops, "ops", 'o', Arg::None),
    (Switch::Json, "json", '\0', Arg::None),
    (Switch::Command(Cmd::Reload), "reload", '\0', Arg::None),
];

/// One option as popt returns it.
struct Token<'a> {
    switch: Switch,
    value: Option<String>,
    /// The argument it came in, which popt's `poptBadOption` names in messages.
    arg: &'a str,
}

/// A command line split as popt splits it.
struct Tokens<'a> {
    /// Options in command-line order, up to the first that popt refuses.
    opts: Vec<Token<'a>>,
    positional: Vec<String>,
    /// popt's refusal (`--bogus: unknown option`), which ipvsadm reports only once it has
    /// handled the options before it.
    refused: Option<CliError>,
}

/// Splits the arguments into options and positional arguments, as popt does.
fn tokenize(args: &[String]) -> Tokens<'_> {
    let mut tokens = Tokens {
        opts: Vec::new(),
        positional: Vec::new(),
        refused: None,
    };
    let mut i = 0;
    let next_value = |i: &mut usize, arg: Arg| -> Option<String> {
        let v = args.get(*i + 1)?;
        if arg == Arg::Optional && v.starts_with('-') {
            return None;
        }
        *i += 1;
        Some(v.clone())
    };
    while i < args.len() {
        let a = args[i].as_str();
        let mut push = |switch, arg: Arg, value: Option<String>| {
            if arg == Arg::Required && value.is_none() {
                return Err(popt_error(a, "missing argument"));
            }
            tokens.opts.push(Token {
                switch,
                value,
                arg: a,
            });
            Ok(())
        };
        let pushed = if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            match OPTIONS.iter().find(|(_, n, _, _)| *n == name) {
                None => Err(popt_error(a, "unknown option")),
                Some(&(_, _, _, Arg::None)) if inline.is_some() => {
                    Err(popt_error(a, "option does not take an argument"))
                }
                Some(&(switch, _, _, arg)) => {
                    let value = match inline {
                        Some(v) => Some(v),
                        None if arg == Arg::None => None,
                        None => next_value(&mut i, arg),
                    };
                    push(switch, arg, value)
                }
            }
        } else if let Some(shorts) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            let mut pushed = Ok(());
            for (at, c) in shorts.char_indices() {
                let Some(&(switch, _, _, arg)) = OPTIONS.iter().find(|(_, _, s, _)| *s == c) else {
                    pushed = Err(popt_error(a, "unknown option"));
                    break;
                };
                if arg == Arg::None {
                    pushed = push(switch, arg, None);
                    continue;
                }
                let rest = &shorts[at + c.len_utf8()..];
                let value = if rest.is_empty() {
                    next_value(&mut i, arg)
                } else {
                    Some(rest.to_owned())
                };
                pushed = push(switch, arg, value);
                break;
            }
            pushed
        } else {
            tokens.positional.push(a.to_owned());
            Ok(())
        };
        if let Err(e) = pushed {
            tokens.refused = Some(e);
            break;
        }
        i += 1;
    }
    tokens
}

fn number(s: &str, min: u32, max: u32) -> Option<u32> {
    s.parse::<u32>().ok().filter(|n| (min..=max).contains(n))
}

fn timeout(s: &str, min: u32) -> Result<u32, CliError> {
    number(s, min, MAX_TIMEOUT)
        .ok_or_else(|| malformed(format!("invalid timeout value `{s}' specified")))
}

/// `addr[:port]` (numeric IPv4) or `[addr]:port` (numeric IPv6, the port required, as
/// ipvsadm 1.31 requires it): the address and the port if given.
fn address(s: &str) -> Option<(IpAddr, Option<u16>)> {
    let (addr, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let (a, port) = rest.split_once("]:")?;
            (IpAddr::V6(a.parse().ok()?), Some(port))
        }
        None => {
            let (a, port) = s.rsplit_once(':').map_or((s, None), |(a, p)| (a, Some(p)));
            (IpAddr::V4(a.parse().ok()?), port)
        }
    };
    let port = port.map(str::parse).transpose().ok()?;
    Some((addr, port))
}

/// ipvsadm's `-M` for a service of `addr`'s family: a netmask for IPv4, a prefix length
/// (1..=128) for IPv6. As ipvsadm, the family is the one of the service given before `-M`,
/// IPv4 if none was.
fn client_mask(value: &str, addr: IpAddr) -> Result<ClientMask, CliError> {
    match addr {
        IpAddr::V4(_) => value
            .parse()
            .map(ClientMask::Netmask)
            .map_err(|_| malformed("illegal virtual server persistent mask specified")),
        IpAddr::V6(_) => number(value, 1, 128)
            .map(|p| ClientMask::Prefix(p as u8))
            .ok_or_else(|| malformed("illegal ipv6 netmask specified")),
    }
}

/// The options seen so far, for ipvsadm's legality checks.
#[derive(Default)]
struct Seen(Vec<Opt>);

impl Seen {
    fn set(&mut self, o: Opt) -> Result<(), CliError> {
        if self.0.contains(&o) {
            return Err(malformed(format!(
                "multiple '{}' options specified",
                o.name()
            )));
        }
        self.0.push(o);
        Ok(())
    }

    fn has(&self, o: Opt) -> bool {
        self.0.contains(&o)
    }

    /// ipvsadm's `generic_opt_check`.
    fn check(&self, cmd: Cmd) -> Result<(), CliError> {
        const ALL: [Opt; 15] = [
            Opt::Numeric,
            Opt::Connection,
            Opt::Service,
            Opt::Scheduler,
            Opt::Persistent,
            Opt::Netmask,
            Opt::Server,
            Opt::Forward,
            Opt::Weight,
            Opt::UThreshold,
            Opt::LThreshold,
            Opt::Timeout,
            Opt::Stats,
            Opt::Rate,
            Opt::ListFormat,
        ];
        let mut exclusive: Option<Opt> = None;
        for (o, rule) in ALL.iter().zip(cmd.legality()) {
            match (self.has(*o), rule) {
                (false, b'+') => {
                    return Err(malformed(format!(
                        "You need to supply the '{}' option for the '{}' command",
                        o.name(),
                        cmd.name()
                    )));
                }
                (true, b'x') => {
                    return Err(malformed(format!(
                        "Illegal '{}' option with the '{}' command",
                        o.name(),
                        cmd.name()
                    )));
                }
                (true, b'1') => match exclusive {
                    None => exclusive = Some(*o),
                    Some(first) => {
                        return Err(malformed(format!(
                            "The option '{}' conflicts with the '{}' option in the '{}' command",
                            o.name(),
                            first.name(),
                            cmd.name()
                        )));
                    }
                },
                _ => {}
            }
        }
        Ok(())
    }
}

/// Parses xdpvsadm's arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Invocation, CliError> {
    // As ipvsadm: no arguments lists the table.
    if args.is_empty() {
        return Ok(plain(Action::List(None)));
    }
    let Tokens {
        opts,
        positional,
        refused,
    } = tokenize(args);
    // popt's first option is the command.
    let Some((first, opts)) = opts.split_first() else {
        return Err(try_help());
    };
    let cmd = match first.switch {
        Switch::Command(c) => c,
        Switch::Help => return Ok(plain(Action::Help)),
        Switch::Version => return Ok(plain(Action::Version)),
        Switch::SyncDaemon => return Err(sync_daemons()),
        _ => return Err(try_help()),
    };
    let mut seen = Seen::default();
    let mut format = Format::default();
    let mut json = false;
    let mut protocol = Protocol::Tcp;
    let mut service: Option<(IpAddr, Option<u16>)> = None;
    let mut scheduler: Option<&str> = None;
    let mut persistent: Option<u32> = None;
    let mut netmask: Option<ClientMask> = None;
    let mut flag_names: Vec<&str> = Vec::new();
    let mut server: Option<IpAddr> = None;
    let mut dest = DestSpec {
        addr: Ipv4Addr::UNSPECIFIED.into(),
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
    };
    for token in opts {
        let value = token.value.as_deref().unwrap_or_default();
        match token.switch {
            // ipvsadm takes a command only first.
            Switch::Command(_) | Switch::Help | Switch::Version | Switch::SyncDaemon => {
                return Err(malformed(format!("invalid option `{}'", token.arg)));
            }
            Switch::Daemon | Switch::McastInterface | Switch::SyncId => {
                return Err(sync_daemons());
            }
            Switch::TcpService | Switch::UdpService => {
                seen.set(Opt::Service)?;
                protocol = match token.switch {
                    Switch::UdpService => Protocol::Udp,
                    _ => Protocol::Tcp,
                };
                service =
                    Some(address(value).ok_or_else(|| {
                        malformed("illegal virtual server address[:port] specified")
                    })?);
            }
            Switch::Scheduler => {
                seen.set(Opt::Scheduler)?;
                scheduler = Some(value);
            }
            Switch::Persistent => {
                seen.set(Opt::Persistent)?;
                persistent = Some(match value {
                    "" => DEFAULT_PERSISTENCE,
                    v => timeout(v, 1)?,
                });
            }
            Switch::Netmask => {
                seen.set(Opt::Netmask)?;
                let family = service.map_or(Ipv4Addr::UNSPECIFIED.into(), |(a, _)| a);
                netmask = Some(client_mask(value, family)?);
            }
            Switch::SchedFlags => flag_names.extend(value.split(',')),
            Switch::RealServer => {
                seen.set(Opt::Server)?;
                server = Some(
                    address(value)
                        .ok_or_else(|| malformed("illegal real server address[:port] specified"))?
                        .0,
                );
            }
            Switch::Gatewaying => seen.set(Opt::Forward)?,
            Switch::Masquerading => return Err(direct_routing_only("masquerading")),
            Switch::Ipip => return Err(direct_routing_only("ipip")),
            Switch::Weight => {
                seen.set(Opt::Weight)?;
                dest.weight = number(value, 0, MAX_WEIGHT)
                    .ok_or_else(|| malformed("illegal weight specified"))?;
            }
            Switch::UThreshold => {
                seen.set(Opt::UThreshold)?;
                dest.u_threshold = number(value, 0, i32::MAX as u32)
                    .ok_or_else(|| malformed("illegal u_threshold specified"))?;
            }
            Switch::LThreshold => {
                seen.set(Opt::LThreshold)?;
                dest.l_threshold = number(value, 0, i32::MAX as u32)
                    .ok_or_else(|| malformed("illegal l_threshold specified"))?;
            }
            Switch::Numeric => {
                seen.set(Opt::Numeric)?;
                format.numeric = true;
            }
            Switch::Connection => seen.set(Opt::Connection)?,
            Switch::Timeout => seen.set(Opt::Timeout)?,
            Switch::Stats => {
                seen.set(Opt::Stats)?;
                format.stats = true;
            }
            Switch::Rate => {
                seen.set(Opt::Rate)?;
                format.rate = true;
            }
            Switch::Thresholds => {
                seen.set(Opt::ListFormat)?;
                format.thresholds = true;
            }
            Switch::PersistentConn => {
                seen.set(Opt::ListFormat)?;
                format.persistent_conn = true;
            }
            Switch::NoSort => format.nosort = true,
            Switch::Exact => format.exact = true,
            Switch::Sort => {}
            Switch::Json => json = true,
            Switch::FwmarkService | Switch::Ipv6 => {
                return Err(unsupported(
                    "firewall-mark services (-f, -6) are not supported by xdpvs",
                ));
            }
            Switch::Ops => {
                return Err(unsupported(
                    "one-packet scheduling is not supported by xdpvs",
                ));
            }
        }
    }
    if let Some(e) = refused {
        return Err(e);
    }
    let flags = sched_flags(&flag_names, scheduler)?;
    seen.check(cmd)?;
    let mut positional = positional.into_iter();
    let timeouts = if cmd == Cmd::Timeout {
        let mut t = [0; 3];
        for v in &mut t {
            let arg = positional
                .next()
                .ok_or_else(|| malformed("--set option requires 3 timeout values"))?;
            *v = timeout(&arg, 0)?;
        }
        t
    } else {
        [0; 3]
    };
    if let Some(extra) = positional.next() {
        return Err(malformed(format!("unexpected argument {extra}")));
    }
    let svc_addr = service.map(|(addr, port)| ServiceAddr {
        protocol,
        addr,
        port: port.unwrap_or(0),
    });
    let settings = || -> Result<ServiceSpec, CliError> {
        let addr = svc_addr.expect("checked: the service is required");
        if addr.port == 0 && persistent.is_none() {
            return Err(malformed("Zero port specified for non-persistent service"));
        }
        let scheduler = match scheduler {
            None => DEFAULT_SCHEDULER,
            // The kernel's refusal, which ipvsadm passes on.
            Some(name) => Scheduler::from_name(name)
                .ok_or_else(|| unsupported("Scheduler or persistence engine not found"))?,
        };
        Ok(ServiceSpec {
            addr,
            scheduler,
            flags,
            persistence: persistent.map(|timeout| Persistence {
                timeout,
                netmask: netmask.unwrap_or(ClientMask::host(addr.addr)),
            }),
            dests: Vec::new(),
        })
    };
    let dest = DestSpec {
        addr: server.unwrap_or(Ipv4Addr::UNSPECIFIED.into()),
        ..dest
    };
    let action = match cmd {
        Cmd::Add => Action::Edit(Edit::AddService(settings()?)),
        Cmd::Edit => Action::Edit(Edit::EditService(settings()?)),
        Cmd::Del => Action::Edit(Edit::DeleteService(svc_addr.expect("required"))),
        Cmd::Flush => Action::Edit(Edit::Clear),
        Cmd::AddDest => Action::Edit(Edit::AddDest(svc_addr.expect("required"), dest)),
        Cmd::EditDest => Action::Edit(Edit::EditDest(svc_addr.expect("required"), dest)),
        Cmd::DelDest => Action::Edit(Edit::DeleteDest(svc_addr.expect("required"), dest.addr)),
        Cmd::List => {
            if (seen.has(Opt::Connection) || seen.has(Opt::Timeout))
                && (seen.has(Opt::Stats) || seen.has(Opt::Rate) || seen.has(Opt::ListFormat))
            {
                return Err(malformed("options conflicts in the list command"));
            }
            if seen.has(Opt::Connection) {
                Action::ListConnections
            } else if seen.has(Opt::Timeout) {
                Action::ListTimeouts
            } else {
                Action::List(svc_addr)
            }
        }
        Cmd::Timeout => Action::SetTimeouts(timeouts),
        Cmd::Restore => Action::Restore,
        Cmd::Save => Action::Save,
        Cmd::Zero => Action::Zero(svc_addr),
        Cmd::Reload => Action::Reload,
    };
    Ok(Invocation {
        action,
        format,
        json,
    })
}

fn sync_daemons() -> CliError {
    unsupported("connection synchronization daemons are not supported by xdpvs")
}

fn direct_routing_only(option: &str) -> CliError {
    unsupported(format!(
        "xdpvs forwards by direct routing (-g) only: --{option} is not supported"
    ))
}

/// ipvsadm's `parse_sched_flags`: the bits of the `-b` flag names, each of which must be one
/// of the scheduler's (by name, `wlc` if none is given).
fn sched_flags(names: &[&str], scheduler: Option<&str>) -> Result<u8, CliError> {
    let scheduler = scheduler.unwrap_or(DEFAULT_SCHEDULER.name());
    names.iter().try_fold(0, |flags, name| {
        let flag = SchedFlag::from_name(name)
            .ok_or_else(|| malformed(format!("invalid scheduler flag `{name}'")))?;
        if flag.scheduler.name() != scheduler {
            return Err(malformed(format!("incompatible scheduler flag `{name}'")));
        }
        Ok(flags | flag.bit)
    })
}

fn plain(action: Action) -> Invocation {
    Invocation {
        action,
        format: Format::default(),
        json: false,
    }
}

/// Parses one line of `-R` input (`-S` output, optionally starting with `ipvsadm`): an edit,
/// or `None` for a blank or comment line.
pub fn restore_line(line: &str) -> Result<Option<Edit>, CliError> {
    let mut words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    if words.first().is_some_and(|w| w.ends_with("ipvsadm")) {
        words.remove(0);
    }
    if words.is_empty() || words[0].starts_with('#') {
        return Ok(None);
    }
    match parse(&words)?.action {
        Action::Edit(e) => Ok(Some(e)),
        _ => Err(malformed(format!(
            "only -A -E -D -a -e -d -C can be restored: {line}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Invocation, CliError> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        parse(&args)
    }

    fn err(line: &str) -> (u8, String) {
        let e = p(line).unwrap_err();
        (e.code, e.message)
    }

    fn vip(port: u16) -> ServiceAddr {
        ServiceAddr {
            protocol: Protocol::Tcp,
            addr: std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            port,
        }
    }

    #[test]
    fn parses_ipvsadm_commands() {
        let a = p("-A -t 10.0.0.1:80 -s wrr -p 20 -M 255.255.255.0").unwrap();
        let Action::Edit(Edit::AddService(s)) = a.action else {
            panic!("{a:?}")
        };
        assert_eq!((s.addr, s.scheduler), (vip(80), Scheduler::Wrr));
        assert_eq!(
            s.persistence,
            Some(Persistence {
                timeout: 20,
                netmask: crate::model::ClientMask::Netmask(Ipv4Addr::new(255, 255, 255, 0))
            })
        );
        let a = p("-A -t 10.0.0.1:80 -p").unwrap().action;
        let Action::Edit(Edit::AddService(s)) = a else {
            panic!()
        };
        assert_eq!(
            (s.scheduler, s.persistence.unwrap().timeout),
            (Scheduler::Wlc, DEFAULT_PERSISTENCE)
        );
        assert_eq!(
            p("-a -t 10.0.0.1:80 -r 10.0.0.7:8080 -g -w 3 -x 10 -y 5")
                .unwrap()
                .action,
            Action::Edit(Edit::AddDest(
                vip(80),
                DestSpec {
                    addr: std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
                    weight: 3,
                    u_threshold: 10,
                    l_threshold: 5
                }
            ))
        );
        assert_eq!(
            p("-d -t 10.0.0.1:80 -r 10.0.0.7").unwrap().action,
            Action::Edit(Edit::DeleteDest(
                vip(80),
                std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))
            ))
        );
        assert_eq!(p("-C").unwrap().action, Action::Edit(Edit::Clear));
        assert_eq!(p("").unwrap().action, Action::List(None));
        let l = p("-Ln --stats --exact").unwrap();
        assert_eq!(l.action, Action::List(None));
        assert!(l.format.numeric && l.format.stats && l.format.exact);
        assert_eq!(
            p("-L -n -t 10.0.0.1:80").unwrap().action,
            Action::List(Some(vip(80)))
        );
        assert_eq!(p("-lnc").unwrap().action, Action::ListConnections);
        assert_eq!(p("-L --timeout").unwrap().action, Action::ListTimeouts);
        assert_eq!(
            p("--set 10 20 30").unwrap().action,
            Action::SetTimeouts([10, 20, 30])
        );
        assert_eq!(p("-Z").unwrap().action, Action::Zero(None));
        assert_eq!(
            p("-Z -u 10.0.0.1:53").unwrap().action,
            Action::Zero(Some(ServiceAddr {
                protocol: Protocol::Udp,
                port: 53,
                ..vip(0)
            }))
        );
        assert_eq!(p("-Sn").unwrap().action, Action::Save);
        assert!(p("--list --numeric --json").unwrap().json);
        assert_eq!(
            p("-At10.0.0.1:80 -srr").unwrap().action,
            p("-A -t 10.0.0.1:80 -s rr").unwrap().action
        );
    }

    #[test]
    fn malformed_lines_exit_2_with_ipvsadm_messages() {
        let cases = [
            ("-A -t 10.0.0.1:80 -D", "invalid option `-D'"),
            ("-A -a -t 10.0.0.1:83", "invalid option `-a'"),
            ("-L --help", "invalid option `--help'"),
            ("-Lv", "invalid option `-Lv'"),
            (
                "-A -s rr",
                "You need to supply the 'service-address' option for the 'add-service' command",
            ),
            (
                "-a -t 10.0.0.1:80",
                "You need to supply the 'real-server' option for the 'add-server' command",
            ),
            (
                "-A -t 10.0.0.1:80 -w 3",
                "Illegal 'weight' option with the 'add-service' command",
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.0.2 -w 2147483648",
                "illegal weight specified",
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.0.2 -w -1",
                "illegal weight specified",
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.0.2 -w 1 -w 2",
                "multiple 'weight' options specified",
            ),
            (
                "-A -t 10.0.0.1",
                "Zero port specified for non-persistent service",
            ),
            (
                "-A -t 10.0.0.1:http",
                "illegal virtual server address[:port] specified",
            ),
            (
                "-a -t 10.0.0.1:80 -r nonsense",
                "illegal real server address[:port] specified",
            ),
            (
                "-A -t 10.0.0.1:80 -p 0",
                "invalid timeout value `0' specified",
            ),
            ("--set 1 2", "--set option requires 3 timeout values"),
            ("-L -c --stats", "options conflicts in the list command"),
            (
                "-L -c -t 10.0.0.1:80",
                "The option 'service-address' conflicts with the 'connection' option in the 'list' command",
            ),
            ("-L extra", "unexpected argument extra"),
            (
                "-E -t 10.0.0.1:0 -s rr",
                "Zero port specified for non-persistent service",
            ),
        ];
        for (line, message) in cases {
            assert_eq!(err(line), (2, message.to_owned()), "{line}");
        }
    }

    #[test]
    fn popt_refusals_exit_255() {
        let try_help = "Try `xdpvsadm -h' or 'xdpvsadm --help' for more information.";
        let cases = [
            ("-A -t 10.0.0.1:87 -s rr --bogus", "--bogus: unknown option"),
            ("-Lq", "-Lq: unknown option"),
            ("-A -t", "-t: missing argument"),
            (
                "-L --numeric=yes",
                "--numeric=yes: option does not take an argument",
            ),
            // popt refuses the first option, or finds none: ipvsadm's `tryhelp_exit(-1)`.
            ("--bogus -L", try_help),
            ("-n -L", try_help),
            ("list", try_help),
        ];
        for (line, message) in cases {
            assert_eq!(err(line), (255, message.to_owned()), "{line}");
        }
        // ipvsadm handles the options before popt's refusal, in order.
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.0.2 -w x --bogus"),
            (2, "illegal weight specified".to_owned())
        );
    }

    #[test]
    fn ipv6_services_take_bracketed_addresses_and_a_prefix_length() {
        let a = p("-A -u [2001:db8::1]:53 -s sh -p 60 -M 64").unwrap();
        let Action::Edit(Edit::AddService(s)) = a.action else {
            panic!("{a:?}")
        };
        assert_eq!(s.addr.addr, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!((s.addr.protocol, s.addr.port), (Protocol::Udp, 53));
        assert_eq!(
            s.persistence.map(|p| p.netmask),
            Some(ClientMask::Prefix(64))
        );
        let a = p("-a -t [2001:db8::1]:80 -r [2001:db8::2]:80 -w 3").unwrap();
        let Action::Edit(Edit::AddDest(svc, d)) = a.action else {
            panic!("{a:?}")
        };
        assert_eq!(svc.port, 80);
        assert_eq!((d.addr, d.weight), ("2001:db8::2".parse().unwrap(), 3));
        let a = p("-A -t [::1]:80 -p").unwrap();
        let Action::Edit(Edit::AddService(s)) = a.action else {
            panic!("{a:?}")
        };
        assert_eq!(s.persistence.unwrap().netmask, ClientMask::Prefix(128));
        for (line, message) in [
            (
                "-A -t [2001:db8::1]:80 -p -M 129",
                "illegal ipv6 netmask specified",
            ),
            (
                "-A -t [2001:db8::1]:80 -p -M 255.255.255.0",
                "illegal ipv6 netmask specified",
            ),
            (
                "-A -t [2001:db8::1:80",
                "illegal virtual server address[:port] specified",
            ),
            (
                "-A -t 2001:db8::1:80",
                "illegal virtual server address[:port] specified",
            ),
            (
                "-A -t [10.0.0.1]:80",
                "illegal virtual server address[:port] specified",
            ),
            (
                "-a -t [2001:db8::1]:80 -r [2001:db8::2]x",
                "illegal real server address[:port] specified",
            ),
            (
                "-a -t [2001:db8::1]:80 -r [2001:db8::2]",
                "illegal real server address[:port] specified",
            ),
            (
                "-A -t [2001:db8::1]",
                "illegal virtual server address[:port] specified",
            ),
        ] {
            assert_eq!(err(line), (2, message.to_owned()), "{line}");
        }
    }

    #[test]
    fn takes_what_the_kernel_takes() {
        let a = p("-a -t 10.0.0.1:80 -r 10.0.0.2 -w 70000").unwrap().action;
        let Action::Edit(Edit::AddDest(_, d)) = a else {
            panic!("{a:?}")
        };
        assert_eq!(d.weight, 70000);
        assert_eq!(
            p("-a -t 10.0.0.1:80 -r 10.0.0.2 -w 2147483647").map(|_| ()),
            Ok(())
        );
        let all_ports = service("-A -t 10.0.0.1:0 -s rr -p");
        assert_eq!(all_ports.addr, vip(0));
        assert_eq!(all_ports.persistence.unwrap().timeout, DEFAULT_PERSISTENCE);
        assert_eq!(service("-E -t 10.0.0.1:0 -p 60").addr, vip(0));
    }

    #[test]
    fn other_forwarding_methods_are_refused_with_255() {
        for line in [
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -m",
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -i",
            "-A -f 1",
            "--start-daemon master",
        ] {
            let (code, message) = err(line);
            assert_eq!(code, 255, "{line}");
            assert!(message.contains("not supported"), "{message}");
        }
    }

    fn service(line: &str) -> ServiceSpec {
        match p(line).map(|i| i.action) {
            Ok(Action::Edit(Edit::AddService(s) | Edit::EditService(s))) => s,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn every_scheduler_is_taken_by_its_name() {
        for scheduler in Scheduler::ALL {
            let line = format!("-E -t 10.0.0.1:80 -s {}", scheduler.name());
            assert_eq!(service(&line).scheduler, scheduler);
        }
    }

    #[test]
    fn an_unknown_scheduler_is_refused_with_255() {
        assert_eq!(
            err("-A -t 10.0.0.1:80 -s fancy"),
            (255, "Scheduler or persistence engine not found".to_owned())
        );
        assert_eq!(
            restore_line("-E -t 10.0.0.1:80 -s RR").unwrap_err().code,
            255
        );
        // The command line's own faults come first, as in ipvsadm.
        assert_eq!(err("-A -s fancy").0, 2);
        assert_eq!(err("-A -t 10.0.0.1 -s fancy").0, 2);
    }

    #[test]
    fn scheduler_flags_are_those_of_the_scheduler() {
        use lb_common::sched::flags::{SH_FALLBACK, SH_PORT};
        let flags = |line: &str| service(line).flags;
        assert_eq!(flags("-A -t 10.0.0.1:80 -s sh -b sh-port"), SH_PORT);
        assert_eq!(
            flags("-A -t 10.0.0.1:80 -s sh -b sh-fallback,sh-port"),
            SH_FALLBACK | SH_PORT
        );
        assert_eq!(flags("-A -t 10.0.0.1:80 -s mh -b mh-port"), SH_PORT);
        assert_eq!(
            flags("-A -t 10.0.0.1:80 -b mh-port -s mh -b mh-fallback"),
            SH_FALLBACK | SH_PORT,
            "-b may come before -s and more than once"
        );
        assert_eq!(flags("-A -t 10.0.0.1:80 -s mh"), 0);
        for (line, message) in [
            (
                "-A -t 10.0.0.1:80 -s mh -b sh-port",
                "incompatible scheduler flag `sh-port'",
            ),
            (
                "-A -t 10.0.0.1:80 -s mh -b mh-port,sh-fallback",
                "incompatible scheduler flag `sh-fallback'",
            ),
            (
                "-A -t 10.0.0.1:80 -s sh -b mh-fallback",
                "incompatible scheduler flag `mh-fallback'",
            ),
            (
                "-A -t 10.0.0.1:80 -s rr -b sh-port",
                "incompatible scheduler flag `sh-port'",
            ),
            (
                "-A -t 10.0.0.1:80 -b mh-port",
                "incompatible scheduler flag `mh-port'",
            ),
            (
                "-A -t 10.0.0.1:80 -s sh -b sh-pork",
                "invalid scheduler flag `sh-pork'",
            ),
            (
                "-A -t 10.0.0.1:80 -s sh -b flag-1",
                "invalid scheduler flag `flag-1'",
            ),
        ] {
            assert_eq!(err(line), (2, message.to_owned()), "{line}");
        }
    }

    #[test]
    fn each_spelling_of_the_table_finds_its_own_option() {
        for &(switch, long, short, arg) in OPTIONS {
            let spellings = [
                Some(format!("--{long}")),
                (short != '\0').then(|| format!("-{short}")),
            ];
            for spelling in spellings.into_iter().flatten() {
                let mut args = vec![spelling.clone()];
                if arg == Arg::Required {
                    args.push("1".into());
                }
                let tokens = tokenize(&args);
                assert!(tokens.refused.is_none(), "{spelling}");
                let opts = tokens.opts;
                assert!(opts.len() == 1 && opts[0].switch == switch, "{spelling}");
            }
        }
    }

    #[test]
    fn restore_reads_save_lines() {
        assert_eq!(restore_line("   ").unwrap(), None);
        assert_eq!(restore_line("# saved").unwrap(), None);
        assert_eq!(
            restore_line("ipvsadm -D -t 10.0.0.1:80").unwrap(),
            Some(Edit::DeleteService(vip(80)))
        );
        assert_eq!(restore_line("-L -n").unwrap_err().code, 2);
    }
}
