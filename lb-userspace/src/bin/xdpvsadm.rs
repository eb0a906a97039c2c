//! xdpvsadm: ipvsadm's command line for xdpvs.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use lb_userspace::{
    control::{self, Command, Reply},
    listing,
};

/// Administer the xdpvs virtual server table, as ipvsadm does.
#[derive(Parser)]
#[command(version, disable_help_flag = true)]
struct Cli {
    /// List the virtual server table.
    #[arg(short = 'L', long = "list", visible_short_alias = 'l')]
    list: bool,
    /// Numeric output of addresses and ports.
    #[arg(short = 'n', long = "numeric")]
    numeric: bool,
    /// Print the listing as JSON.
    #[arg(long)]
    json: bool,
    /// Make the daemon re-read its configuration file and apply the difference.
    #[arg(long)]
    reload: bool,
    /// With -L: the tcp, tcpfin and udp timeouts.
    #[arg(long)]
    timeout: bool,
    /// Set the tcp, tcpfin and udp timeouts in seconds (0 keeps a value).
    #[arg(long, num_args = 3, value_names = ["TCP", "TCPFIN", "UDP"])]
    set: Option<Vec<u32>>,
    /// The daemon's control socket.
    #[arg(long, default_value = lb_userspace::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print help.
    #[arg(short = 'h', long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    // As ipvsadm, no command lists the table; addresses are always printed numerically.
    let _ = (cli.list, cli.numeric);
    let command = match (&cli.set, cli.timeout) {
        _ if cli.reload => Command::Reload,
        (Some(v), _) => Command::SetTimeouts {
            tcp: v[0],
            tcpfin: v[1],
            udp: v[2],
        },
        (None, true) => Command::Timeouts,
        (None, false) => Command::List,
    };
    let set = cli.set.is_some();
    match control::call(&cli.socket, command) {
        Ok(Reply::Listing(l)) if cli.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&l).expect("a listing serializes")
            );
        }
        Ok(Reply::Listing(l)) => print!("{}", listing::numeric(&l)),
        Ok(Reply::Timeouts(_)) if set => {}
        Ok(Reply::Done) => {}
        Ok(Reply::Timeouts([tcp, tcpfin, udp])) => {
            println!("Timeout (tcp tcpfin udp): {tcp} {tcpfin} {udp}")
        }
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(255);
        }
    }
    ExitCode::SUCCESS
}
