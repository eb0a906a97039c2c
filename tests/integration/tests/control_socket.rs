//! The control socket against clients that are silent, gone, too long or not root, and pins on
//! a BPF filesystem that ends with the daemon's mount namespace. Each daemon runs on a veth of
//! a namespace of its own (whose peer stays there too): no traffic is needed.

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    os::unix::{fs::PermissionsExt, net::UnixStream, process::CommandExt},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use lb_userspace::control::{self, Command as Request, Reply};
use xdpvs_testbed::{
    cluster::wait_until,
    daemon::{Daemon, default_bin_dir},
    netns::{Netns, terminate, unique_name},
    topology::IFACE,
};

/// A daemon alone in a namespace; the daemon goes first.
struct Lone {
    daemon: Daemon,
    ns: Netns,
}

/// A namespace whose `IFACE` is one end of a veth pair, up.
fn namespace(tag: &str) -> Netns {
    let ns = Netns::create(unique_name(tag)).unwrap();
    ns.add_veth(IFACE, "peer", &ns).unwrap();
    ns.ip(&["link", "set", IFACE, "up"]).unwrap();
    ns
}

impl Lone {
    fn start(tag: &str) -> Self {
        Self::configured(tag, None)
    }

    fn configured(tag: &str, config: Option<&str>) -> Self {
        let ns = namespace(tag);
        let daemon = Daemon::start(&default_bin_dir(), &ns, &unique_name(tag), config).unwrap();
        Self { daemon, ns }
    }

    fn call(&self, request: Request) -> anyhow::Result<Reply> {
        control::call(&self.daemon.socket, request)
    }

    fn services(&self) -> usize {
        match self.call(Request::List).unwrap() {
            Reply::Listing(l) => l.services.len(),
            other => panic!("{other:?}"),
        }
    }

    /// The daemon's resident memory in KiB.
    fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.daemon.pid().unwrap()));
        let status = status.unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

/// An `-A` request line of the control protocol, without its newline.
fn add_service_request() -> String {
    let line = r#"{"version":1,"command":{"edit":[{"add_service":{"addr":{"protocol":"tcp","addr":"10.0.0.1","port":80},"scheduler":"rr","flags":0,"persistence":null,"dests":[]}}]}}"#;
    assert!(
        control::parse_request(line.as_bytes()).is_ok(),
        "the request is one the daemon carries out"
    );
    line.to_owned()
}

#[test]
fn a_silent_client_holds_up_no_other() {
    let d = Lone::configured("ctlsilent", Some("metrics = \"127.0.0.1:9469\"\n"));
    let _silent = UnixStream::connect(&d.daemon.socket).unwrap();
    let mut halfway = UnixStream::connect(&d.daemon.socket).unwrap();
    halfway.write_all(b"{\"version\":1,").unwrap();
    // Anyone on the host may connect to the metrics endpoint.
    let _scraper =
        d.ns.enter(|| TcpStream::connect("127.0.0.1:9469"))
            .unwrap()
            .unwrap();
    for _ in 0..5 {
        let start = Instant::now();
        d.call(Request::List).unwrap();
        let took = start.elapsed();
        assert!(took < Duration::from_millis(100), "-Ln took {took:?}");
    }
}

#[test]
fn a_client_gone_mid_request_changes_nothing() {
    let d = Lone::start("ctlgone");
    let mut gone = UnixStream::connect(&d.daemon.socket).unwrap();
    // The whole request but its newline.
    gone.write_all(add_service_request().as_bytes()).unwrap();
    gone.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    BufReader::new(&gone).read_line(&mut answer).unwrap();
    assert_eq!(answer, "", "the daemon closes without answering");
    assert_eq!(d.services(), 0);

    // With its newline, the same request is carried out.
    let mut whole = UnixStream::connect(&d.daemon.socket).unwrap();
    writeln!(whole, "{}", add_service_request()).unwrap();
    BufReader::new(&whole).read_line(&mut answer).unwrap();
    assert_eq!(answer, "{\"version\":1,\"result\":{\"Ok\":\"done\"}}\n");
    assert_eq!(d.services(), 1);
}

#[test]
fn an_oversized_request_is_refused_without_growing_the_daemon() {
    let d = Lone::start("ctlhuge");
    let before = d.rss_kib();
    let chunk = vec![b'x'; 1 << 20];
    // Twice: a refused request leaves nothing behind for the next to add to.
    for _ in 0..2 {
        let mut client = UnixStream::connect(&d.daemon.socket).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // 100 MiB without a newline, while the connection stays open; the daemon closes it
        // when it has read its limit.
        let sent = (0..100)
            .take_while(|_| client.write_all(&chunk).is_ok())
            .count();
        let grown = d.rss_kib().saturating_sub(before);
        assert!(sent < 100, "the daemon read all 100 MiB");
        assert!(grown < 4096, "the daemon grew by {grown} KiB");
        let mut answer = String::new();
        BufReader::new(&client).read_line(&mut answer).unwrap();
        assert_eq!(
            answer,
            format!(
                "{{\"version\":1,\"result\":{{\"Err\":\"request refused: longer than {} bytes\"}}}}\n",
                control::MAX_REQUEST
            )
        );
    }
    assert_eq!(d.services(), 0, "the daemon still answers");
}

#[test]
fn a_peer_that_is_not_root_is_refused() {
    let d = Lone::start("ctlnobody");
    // Past the socket's mode, which alone would keep the peer out.
    fs::set_permissions(&d.daemon.socket, fs::Permissions::from_mode(0o666)).unwrap();
    let nobody = |args: &[&str]| {
        Command::new(default_bin_dir().join("xdpvsadm"))
            .arg("--socket")
            .arg(&d.daemon.socket)
            .args(args)
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    for args in [&["-A", "-t", "10.0.0.1:80"][..], &["-Ln"]] {
        let out = nobody(args);
        assert_eq!(out.status.code(), Some(255), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "Permission denied (you must be root)\n"
        );
    }
    assert_eq!(d.services(), 0);
}

/// xdpvsd under `ip netns exec`, which gives it a mount namespace with a /sys of its own, with
/// the paths of `paths`.
fn under_ip_netns_exec(ns: &Netns, paths: &Daemon, extra: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name()])
        .arg(default_bin_dir().join("xdpvsd"))
        .args(["--interface", IFACE, "--pin-dir"])
        .arg(&paths.pin_dir)
        .arg("--socket")
        .arg(&paths.socket)
        .arg("--state-file")
        .arg(paths.state_file())
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

#[test]
fn pins_that_end_with_the_mount_namespace_are_refused_or_said() {
    let ns = namespace("ctlpins");
    // Paths only (removed on drop): this daemon is started by hand.
    let paths = Daemon::paths(&default_bin_dir(), &unique_name("ctlpins")).unwrap();

    let mut refused = under_ip_netns_exec(&ns, &paths, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if !wait_until(Duration::from_secs(20), || {
        refused.try_wait().unwrap().is_some()
    }) {
        terminate(&mut refused, Duration::from_secs(10)).unwrap();
        panic!("xdpvsd runs on pins that end with its mount namespace");
    }
    let refused = refused.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("is private to this mount namespace") && stderr.contains("nsenter --net"),
        "{stderr}"
    );

    let mut daemon = under_ip_netns_exec(&ns, &paths, &["--transient-pins"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || {
        control::call(&paths.socket, Request::List).is_ok()
    }));
    let attached = || {
        let link = ns.ip(&["link", "show", IFACE]).unwrap();
        String::from_utf8_lossy(&link.stdout).contains("xdp")
    };
    assert!(attached());
    assert!(
        !paths.pin_dir.exists(),
        "the pins are not in the host's bpffs"
    );
    terminate(&mut daemon, Duration::from_secs(10)).unwrap();
    let log = std::io::read_to_string(daemon.stderr.take().unwrap()).unwrap();
    assert!(
        log.contains("a restarted daemon starts afresh")
            && log.contains("end with this mount namespace: the XDP program is detached"),
        "{log}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !attached()),
        "as the log says, the program went with the namespace"
    );
}
