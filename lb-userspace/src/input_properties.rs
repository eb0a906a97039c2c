//! Property tests of every parser of outside input: the configuration file, xdpvsadm's command
//! line and `-R` lines, and the control protocol down to the engine. Whatever the input, none
//! panics, a refusal says why, and a refused request leaves the data plane as it was.

use std::net::Ipv4Addr;

use lb_common::{sched::Scheduler, state::Timeouts};
use proptest::{collection::vec, prelude::*, sample::select};

use crate::{
    cli,
    config::Config,
    control::{self, Command, PROTOCOL_VERSION, Request},
    edit::Edit,
    engine::Engine,
    maps::fake::FakeMaps,
    model::{self, DestSpec, Persistence, Protocol, ServiceAddr, ServiceSpec},
};

/// Cases per property: a few seconds in all on one core.
const CASES: u32 = 2_000;

/// Mostly a few values, so that edits meet the services and servers others made; sometimes any.
fn ip(base: u32) -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![4 => (0..4u32).prop_map(move |i| Ipv4Addr::from(base + i)), 1 => any::<u32>().prop_map(Ipv4Addr::from)]
}

fn small_or_any() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0..4u32, 1 => any::<u32>()]
}

fn service_addr() -> impl Strategy<Value = ServiceAddr> {
    (
        prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)],
        ip(0x0a00_0001),
        prop_oneof![Just(80u16), Just(443), any::<u16>()],
    )
        .prop_map(|(protocol, addr, port)| ServiceAddr {
            protocol,
            addr: std::net::IpAddr::V4(addr),
            port,
        })
}

fn dest() -> impl Strategy<Value = DestSpec> {
    (
        ip(0x0a01_0001),
        small_or_any(),
        small_or_any(),
        small_or_any(),
    )
        .prop_map(|(addr, weight, u_threshold, l_threshold)| DestSpec {
            addr: std::net::IpAddr::V4(addr),
            weight,
            u_threshold,
            l_threshold,
        })
}

fn service() -> impl Strategy<Value = ServiceSpec> {
    (
        service_addr(),
        select(Scheduler::ALL.to_vec()),
        prop_oneof![Just(0u8), any::<u8>()],
        proptest::option::of((small_or_any(), any::<u32>().prop_map(Ipv4Addr::from))),
        vec(dest(), 0..4),
    )
        .prop_map(|(addr, scheduler, flags, persistence, dests)| ServiceSpec {
            addr,
            scheduler,
            flags,
            persistence: persistence.map(|(timeout, netmask)| Persistence {
                timeout,
                netmask: model::ClientMask::Netmask(netmask),
            }),
            dests,
        })
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        service().prop_map(Edit::AddService),
        service().prop_map(Edit::EditService),
        service_addr().prop_map(Edit::DeleteService),
        (service_addr(), dest()).prop_map(|(s, d)| Edit::AddDest(s, d)),
        (service_addr(), dest()).prop_map(|(s, d)| Edit::EditDest(s, d)),
        (service_addr(), ip(0x0a01_0001))
            .prop_map(|(s, d)| Edit::DeleteDest(s, std::net::IpAddr::V4(d))),
        Just(Edit::Clear),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        1 => Just(Command::List),
        1 => Just(Command::Connections),
        1 => Just(Command::Timeouts),
        1 => Just(Command::Reload),
        4 => vec(edit(), 0..6).prop_map(Command::Edit),
        1 => proptest::option::of(service_addr()).prop_map(Command::Zero),
        1 => (any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(tcp, tcpfin, udp)| Command::SetTimeouts { tcp, tcpfin, udp }),
    ]
}

fn line(command: &Command) -> Vec<u8> {
    serde_json::to_vec(&Request {
        version: PROTOCOL_VERSION,
        command: command.clone(),
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Any bytes: a command or a message saying why not.
    #[test]
    fn control_requests_of_any_bytes_parse_or_say_why(bytes in vec(any::<u8>(), 0..256)) {
        if let Err(e) = control::parse_request(&bytes) {
            prop_assert!(e.starts_with("malformed request: "), "{e}");
        }
    }

    /// A request line cut anywhere, or with one byte changed, is refused with a message or is
    /// still a request of the same version.
    #[test]
    fn control_requests_cut_or_altered_parse_or_say_why(
        command in command(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let whole = line(&command);
        prop_assert_eq!(control::parse_request(&whole), Ok(command));
        let at = at.index(whole.len());
        prop_assert!(control::parse_request(&whole[..at]).is_err());
        let mut altered = whole;
        altered[at] = byte;
        if let Err(e) = control::parse_request(&altered) {
            prop_assert!(!e.is_empty());
        }
    }

    /// A command the engine refuses changes neither the maps nor the table; one it carries
    /// out leaves them consistent.
    #[test]
    fn a_refused_control_command_changes_nothing(
        base in vec(service(), 0..4),
        commands in vec(command(), 1..6),
    ) {
        let mut e = Engine::new(FakeMaps::default(), 1024, Timeouts::default());
        // A start from whatever valid table the generated services make.
        let base: Vec<ServiceSpec> = base.into_iter().fold(Vec::new(), |mut table, s| {
            table.push(s);
            if model::validate(&table).is_err() {
                table.pop();
            }
            table
        });
        e.apply(&base).unwrap();
        for command in commands {
            let before = (format!("{:?}", e.maps()), e.installed().specs());
            match e.handle(command, 0) {
                Err(message) => {
                    prop_assert!(!message.is_empty());
                    prop_assert_eq!(&before, &(format!("{:?}", e.maps()), e.installed().specs()));
                }
                Ok(_) => prop_assert!(e.installed().is_consistent()),
            }
        }
    }
}

/// Words of ipvsadm's command line, right and wrong, and glued forms popt accepts.
const WORDS: &[&str] = &[
    "-A",
    "-E",
    "-D",
    "-C",
    "-R",
    "-S",
    "-a",
    "-e",
    "-d",
    "-L",
    "-l",
    "-Z",
    "-n",
    "-c",
    "-t",
    "-u",
    "-f",
    "-s",
    "-p",
    "-M",
    "-b",
    "-r",
    "-g",
    "-i",
    "-m",
    "-w",
    "-x",
    "-y",
    "-h",
    "-v",
    "-Ln",
    "-Lnc",
    "-Sn",
    "-At10.0.0.1:80",
    "-srr",
    "--set",
    "--reload",
    "--list",
    "--numeric",
    "--stats",
    "--rate",
    "--thresholds",
    "--persistent-conn",
    "--exact",
    "--nosort",
    "--sort",
    "--timeout",
    "--json",
    "--tcp-service",
    "--udp-service=10.0.0.1:53",
    "--weight=",
    "--scheduler=sh",
    "--start-daemon",
    "master",
    "10.0.0.1:80",
    "10.0.0.1",
    "10.0.0.1:0",
    "10.0.0.2:8080",
    "256.0.0.1:80",
    ":80",
    "rr",
    "wrr",
    "wlc",
    "sh",
    "mh",
    "fancy",
    "sh-port",
    "sh-fallback,mh-port",
    "0",
    "1",
    "65536",
    "4294967296",
    "-1",
    "255.255.255.0",
    "",
];

fn words() -> impl Strategy<Value = Vec<String>> {
    vec(
        prop_oneof![
            4 => select(WORDS).prop_map(str::to_owned),
            1 => any::<String>(),
            1 => "-{1,2}[a-zA-Z=]{0,6}",
        ],
        0..10,
    )
}

/// A valid configuration, to be cut and altered.
const CONFIG: &str = r#"interface = "eth0"
metrics = "127.0.0.1:9469"
[timeouts]
tcp = 900
tcpfin = 120
udp = 300
[[service]]
protocol = "tcp"
address = "10.0.0.100:80"
scheduler = "sh"
sched_flags = ["sh-port"]
persistence_timeout = 300
persistence_granularity = "255.255.255.0"
[[service.real_server]]
address = "10.0.0.2"
weight = 1
[[service.real_server]]
address = "10.0.0.3:80"
upper_threshold = 10
lower_threshold = 5
"#;

/// Values that may stand after a `=` of the configuration.
const VALUES: &[&str] = &[
    "\"tcp\"",
    "\"udp\"",
    "\"icmp\"",
    "\"10.0.0.100:80\"",
    "\"10.0.0.2\"",
    "\"10.0.0.2:81\"",
    "\"::1\"",
    "\"rr\"",
    "\"mh\"",
    "[\"mh-port\"]",
    "[]",
    "0",
    "-1",
    "65536",
    "4294967296",
    "1e9",
    "true",
    "\"\"",
    "{}",
    "[[1]]",
];

/// The valid configuration with lines dropped, repeated or given other values.
fn config_text() -> impl Strategy<Value = String> {
    let lines: Vec<&str> = CONFIG.lines().collect();
    let n = lines.len();
    vec((0..n, 0..4u8, select(VALUES), any::<String>()), 0..6).prop_map(move |changes| {
        let mut text: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        for (at, how, value, junk) in changes {
            let at = at % text.len().max(1);
            match (how, text.get(at).cloned()) {
                (_, None) => text.push(junk),
                (0, Some(_)) => drop(text.remove(at)),
                (1, Some(l)) => text.insert(at, l),
                (2, Some(l)) => {
                    let key = l.split('=').next().unwrap_or_default().to_owned();
                    text[at] = format!("{key}= {value}");
                }
                (_, Some(_)) => text.insert(at, junk),
            }
        }
        text.join("\n")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Any command line is an invocation or a refusal with ipvsadm's exit code and a message;
    /// an edit it makes is carried out on an empty table or refused with a message.
    #[test]
    fn command_lines_parse_or_say_why(args in words()) {
        match cli::parse(&args) {
            Err(e) => {
                prop_assert!(e.code == 2 || e.code == 255, "{e:?}");
                prop_assert!(!e.message.is_empty());
            }
            Ok(cli::Invocation { action: cli::Action::Edit(edit), .. }) => {
                if let Err(e) = crate::edit::apply(&[], &[edit]) {
                    prop_assert!(!e.to_string().is_empty());
                }
            }
            Ok(_) => {}
        }
    }

    /// Any `-R` line is an edit, nothing (a blank line), or a refusal with a message.
    #[test]
    fn restore_lines_parse_or_say_why(args in words()) {
        if let Err(e) = cli::restore_line(&args.join(" ")) {
            prop_assert!(e.code == 2 || e.code == 255, "{e:?}");
            prop_assert!(!e.message.is_empty());
        }
    }

    /// A configuration cut or altered anywhere is refused with a message, or it is a table
    /// the daemon can install.
    #[test]
    fn configurations_parse_to_a_valid_table_or_say_why(text in config_text()) {
        match Config::parse(&text) {
            Err(e) => {
                let message = format!("{e:#}");
                prop_assert!(!message.is_empty());
            }
            Ok(config) => prop_assert_eq!(model::validate(&config.services), Ok(())),
        }
    }

    /// Any text at all: the same.
    #[test]
    fn configurations_of_any_text_parse_or_say_why(text in any::<String>()) {
        if let Ok(config) = Config::parse(&text) {
            prop_assert_eq!(model::validate(&config.services), Ok(()));
        }
    }
}
