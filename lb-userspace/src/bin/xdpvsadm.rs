//! xdpvsadm: ipvsadm's command line for xdpvs.

use std::{
    io::{BufRead, Write},
    net::IpAddr,
    path::PathBuf,
    process::ExitCode,
};

use lb_userspace::{
    cli::{self, Action, CliError, Invocation},
    control::{self, Command, Reply},
    ha::setup::Setup,
    ipvsadm_format, rs_setup,
};

const USAGE: &str = "Usage:
  xdpvsadm -A|E -t|u service-address [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]
  xdpvsadm -D -t|u service-address
  xdpvsadm -C
  xdpvsadm -R
  xdpvsadm -S [-n]
  xdpvsadm -a|e -t|u service-address -r server-address [-g] [-w weight] [-x upper] [-y lower]
  xdpvsadm -d -t|u service-address -r server-address
  xdpvsadm -L|l [-n] [-c] [-t|u service-address] [--stats|--rate|--thresholds|--persistent-conn]
           [--exact] [--nosort] [--timeout] [--json]
  xdpvsadm -Z [-t|u service-address]
  xdpvsadm --set tcp tcpfin udp
  xdpvsadm --reload
  xdpvsadm rs-setup --vip VIP [--apply]
  xdpvsadm ha-setup --interface IF --vip VIP[/LEN] --router-id N --priority P
           [--advert-int S] [--instance NAME] [--notify-fifo PATH] [--track-file PATH]
  xdpvsadm -h

As ipvsadm, for the xdpvs daemon (xdpvsd): direct routing (-g) only, IPv4 TCP/UDP services.
Schedulers: rr wrr lc wlc (default) sed nq sh dh mh lblc lblcr fo ovf twos.
Scheduler flags (-b): sh-fallback,sh-port for sh, mh-fallback,mh-port for mh.
--socket PATH selects the daemon's socket.
";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let socket = take_socket(&mut args);
    match args.first().map(String::as_str) {
        Some("rs-setup") => return rs_setup_command(&args[1..]),
        Some("ha-setup") => return ha_setup_command(&args[1..]),
        _ => {}
    }
    let outcome = cli::parse(&args).and_then(|inv| execute(&socket, inv));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// Removes `--socket PATH` (or `--socket=PATH`) from the arguments.
fn take_socket(args: &mut Vec<String>) -> PathBuf {
    let mut socket = PathBuf::from(lb_userspace::DEFAULT_SOCKET);
    if let Some(i) = args.iter().position(|a| a == "--socket") {
        if i + 1 < args.len() {
            socket = args.remove(i + 1).into();
        }
        args.remove(i);
    } else if let Some(i) = args.iter().position(|a| a.starts_with("--socket=")) {
        socket = args.remove(i)["--socket=".len()..].into();
    }
    socket
}

fn refused(e: anyhow::Error) -> CliError {
    CliError {
        code: 255,
        message: format!("{e:#}"),
    }
}

fn unexpected(reply: Reply) -> CliError {
    refused(anyhow::anyhow!("unexpected reply from xdpvsd: {reply:?}"))
}

fn call(socket: &std::path::Path, command: Command) -> Result<Reply, CliError> {
    control::call(socket, command).map_err(refused)
}

fn execute(socket: &std::path::Path, inv: Invocation) -> Result<(), CliError> {
    let listing = |socket| match call(socket, Command::List)? {
        Reply::Listing(l) => Ok(l),
        other => Err(unexpected(other)),
    };
    let mut out = std::io::stdout().lock();
    let text = match inv.action {
        Action::Help => USAGE.to_owned(),
        Action::Version => format!(
            "xdpvsadm {} (ipvsadm-compatible, IPVS {})\n",
            env!("CARGO_PKG_VERSION"),
            ipvsadm_format::IPVS_VERSION
        ),
        Action::Edit(e) => {
            call(socket, Command::Edit(vec![e]))?;
            String::new()
        }
        Action::Restore => {
            let mut edits = Vec::new();
            for line in std::io::stdin().lock().lines() {
                let line = line.map_err(|e| refused(e.into()))?;
                edits.extend(cli::restore_line(&line)?);
            }
            call(socket, Command::Edit(edits))?;
            String::new()
        }
        Action::Zero(only) => {
            call(socket, Command::Zero(only))?;
            String::new()
        }
        Action::Reload => {
            call(socket, Command::Reload)?;
            String::new()
        }
        Action::SetTimeouts([tcp, tcpfin, udp]) => {
            call(socket, Command::SetTimeouts { tcp, tcpfin, udp })?;
            String::new()
        }
        Action::ListTimeouts => match call(socket, Command::Timeouts)? {
            Reply::Timeouts(t) => ipvsadm_format::timeouts(t),
            other => return Err(unexpected(other)),
        },
        Action::ListConnections => match call(socket, Command::Connections)? {
            Reply::Connections(c) if inv.json => to_json(&c),
            Reply::Connections(c) => ipvsadm_format::connections(&c),
            other => return Err(unexpected(other)),
        },
        Action::Save => ipvsadm_format::rules(&listing(socket)?),
        Action::List(only) => {
            let mut l = listing(socket)?;
            if let Some(a) = only {
                l.services.retain(|s| s.addr == a);
                if l.services.is_empty() {
                    return Err(CliError {
                        code: 1,
                        message: "No such service".into(),
                    });
                }
            }
            if inv.json {
                to_json(&l)
            } else {
                ipvsadm_format::list(&l, only.as_ref(), &inv.format)
            }
        }
    };
    let _ = out.write_all(text.as_bytes());
    Ok(())
}

fn to_json(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).expect("listings serialize") + "\n"
}

/// `xdpvsadm rs-setup --vip VIP [--apply]`.
fn rs_setup_command(args: &[String]) -> ExitCode {
    let mut vip: Option<IpAddr> = None;
    let mut apply = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--vip" => vip = it.next().and_then(|v| v.parse().ok()),
            "--apply" => apply = true,
            other => {
                eprintln!("rs-setup: unexpected argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(vip) = vip else {
        eprintln!("rs-setup: --vip IP-address is required");
        return ExitCode::from(2);
    };
    if !apply {
        print!("{}", rs_setup::script(vip));
        return ExitCode::SUCCESS;
    }
    match rs_setup::apply(vip) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rs-setup: {e:#}");
            ExitCode::from(255)
        }
    }
}

/// `xdpvsadm ha-setup ...`: prints this director's keepalived.conf for a VRRP pair.
fn ha_setup_command(args: &[String]) -> ExitCode {
    match Setup::from_args(args).and_then(|s| s.keepalived_conf()) {
        Ok(conf) => {
            print!("{conf}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ha-setup: {e:#}");
            ExitCode::from(2)
        }
    }
}
