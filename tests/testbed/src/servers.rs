//! Servers that name themselves: HTTP on TCP and a UDP responder, each answering
//! `NAME PEER_IP` so that a test sees which real server answered and whom it saw.

use std::{
    io::{BufRead, BufReader, ErrorKind, Read, Write},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{
    netns::Netns,
    topology::{Topology, real_server_name},
};

const POLL: Duration = Duration::from_millis(20);

/// Running servers; stopped and joined on drop.
pub struct NamedServers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<()>>>,
}

impl NamedServers {
    /// Starts an HTTP server on `[::]:tcp_port` (both families) and a UDP responder on
    /// `udp_addr` in `ns`.
    /// The UDP socket is bound to the VIP so that replies come from it.
    pub fn start(ns: &Netns, name: &str, tcp_port: u16, udp_addr: SocketAddr) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let tcp = ns.enter(move || TcpListener::bind((Ipv6Addr::UNSPECIFIED, tcp_port)))??;
        let udp = ns.enter(move || UdpSocket::bind(udp_addr))??;
        tcp.set_nonblocking(true)?;
        udp.set_read_timeout(Some(POLL))?;
        let threads = vec![
            spawn_loop(stop.clone(), name.to_owned(), move |name, stop| {
                serve_tcp(&tcp, name, stop)
            }),
            spawn_loop(stop.clone(), name.to_owned(), move |name, stop| {
                serve_udp(&udp, name, stop)
            }),
        ];
        Ok(Self { stop, threads })
    }
}

/// Starts named servers on every real server of `topo`: HTTP on port 80, UDP on VIP:53.
pub fn on_real_servers(topo: &Topology) -> Result<Vec<NamedServers>> {
    (0..topo.real_servers.len())
        .map(|i| on_real_server(topo, i))
        .collect()
}

/// Starts named servers on real server `i` of `topo`.
pub fn on_real_server(topo: &Topology, i: usize) -> Result<NamedServers> {
    NamedServers::start(
        &topo.real_servers[i],
        &real_server_name(i),
        80,
        SocketAddr::from((topo.addressing.vip, 53)),
    )
}

fn spawn_loop(
    stop: Arc<AtomicBool>,
    name: String,
    f: impl FnOnce(&str, &AtomicBool) -> Result<()> + Send + 'static,
) -> JoinHandle<Result<()>> {
    std::thread::spawn(move || f(&name, &stop))
}

fn serve_tcp(listener: &TcpListener, name: &str, stop: &AtomicBool) -> Result<()> {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, peer)) => {
                let name = name.to_owned();
                std::thread::spawn(move || serve_http(conn, &name, peer));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Answers HTTP/1.1 requests on one connection until the client closes it.
fn serve_http(conn: TcpStream, name: &str, peer: SocketAddr) -> Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    loop {
        let mut close = false;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header == "\r\n" {
                break;
            }
            close |= header.to_ascii_lowercase().starts_with("connection: close");
        }
        let body = format!("{name} {}\n", peer.ip().to_canonical());
        write!(
            writer,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        if close {
            return Ok(());
        }
    }
}

fn serve_udp(sock: &UdpSocket, name: &str, stop: &AtomicBool) -> Result<()> {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((_, peer)) => {
                sock.send_to(format!("{name} {}\n", peer.ip()).as_bytes(), peer)?;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl Drop for NamedServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// An HTTP/1.1 client on one kept-alive connection.
pub struct HttpClient {
    reader: BufReader<TcpStream>,
}

impl HttpClient {
    /// Connects to `addr` (call inside the client's namespace).
    pub fn connect(addr: SocketAddr) -> Result<Self> {
        Self::connect_from(None, addr)
    }

    /// Connects to `addr` from source address `src` (one of the client's addresses).
    pub fn connect_from(src: Option<Ipv4Addr>, addr: SocketAddr) -> Result<Self> {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        if let Some(src) = src {
            sock.bind(&SocketAddr::from((src, 0)).into())?;
        }
        sock.connect_timeout(&addr.into(), Duration::from_secs(3))
            .with_context(|| format!("connecting to {addr}"))?;
        let s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Self {
            reader: BufReader::new(s),
        })
    }

    /// GET / and the response body.
    pub fn get(&mut self) -> Result<String> {
        self.reader
            .get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")?;
        let mut status = String::new();
        self.reader.read_line(&mut status)?;
        if !status.starts_with("HTTP/1.1 200") {
            bail!("unexpected status line {status:?}");
        }
        let mut len = 0;
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            if h == "\r\n" || h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse()?;
            }
        }
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body)?;
        Ok(String::from_utf8(body)?)
    }
}

/// One request on a fresh connection: the response body.
pub fn http_get(addr: SocketAddr) -> Result<String> {
    HttpClient::connect(addr)?.get()
}

/// One datagram to `addr` from a fresh socket: the reply.
pub fn udp_ask(addr: SocketAddr) -> Result<String> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.connect(addr)?;
    udp_ask_on(&s)
}

/// One datagram on a connected socket: the reply.
pub fn udp_ask_on(s: &UdpSocket) -> Result<String> {
    s.send(b"who")?;
    let mut buf = [0u8; 256];
    let n = s.recv(&mut buf).context("no UDP reply")?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}
