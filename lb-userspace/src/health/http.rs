//! HTTP_GET and SSL_GET: every `url` in turn, each on a connection of its own, answers a GET
//! with an accepted status code and, when a `digest` is given, a body with that MD5.

use std::{
    convert::Infallible,
    error::Error,
    fmt::{self, Display, Write as _},
    net::SocketAddr,
};

use http_body_util::{BodyExt, Empty};
use hyper::{
    Request, Version,
    body::{Bytes, Incoming},
    client::conn::http1,
    header::{CONNECTION, HOST, USER_AGENT},
};
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::pki_types::ServerName;

use super::{
    check::{Deadline, connect},
    model::{Check, DEFAULT_STATUS_CODES, HttpCheck, HttpProtocol, UrlCheck},
    tls,
};

/// The User-Agent keepalived sends: servers see the request they saw from keepalived.
const KEEPALIVED_USER_AGENT: &str = "KeepAliveClient";

/// Checks every url of `http` on `to` in turn; the first failure names its url and its cause.
/// Without urls the server passes, as in keepalived.
pub(super) async fn attempt(check: &Check, http: &HttpCheck, to: SocketAddr) -> Result<(), String> {
    for url in &http.urls {
        get(check, http, url, to)
            .await
            .map_err(|why| format!("GET {}: {why}", url.path))?;
    }
    Ok(())
}

/// What a server answered.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// The body's MD5 in lower-case hex, when the url has a digest to compare it with.
    digest: Option<String>,
}

/// One url: connect from `bindto`, the TLS handshake for SSL_GET, the request and the answer,
/// all within `connect_timeout` (keepalived's timeout bounds each url's connection).
async fn get(
    check: &Check,
    http: &HttpCheck,
    url: &UrlCheck,
    to: SocketAddr,
) -> Result<(), String> {
    let request = request(http, url, to)?;
    let digest = url.digest.is_some();
    let deadline = Deadline::after(check.connect_timeout);
    let stream = connect(check.bindto, to, deadline).await?;
    let answer = if http.tls {
        // An address as the server name: no SNI is sent, as keepalived sends none by default.
        let name = ServerName::IpAddress(to.ip().into());
        let handshake = tls::connector()?.connect(name, stream);
        let stream = deadline.bound("TLS handshake".into(), handshake).await?;
        exchange(stream, request, digest, deadline).await?
    } else {
        exchange(stream, request, digest, deadline).await?
    };
    judge(url, &answer)
}

/// keepalived's request: `GET path HTTP/1.x`, its User-Agent, `Connection: close` for 1.0C and
/// 1.1, and Host = the url's virtualhost, else the checker's, else the address and port.
fn request(
    http: &HttpCheck,
    url: &UrlCheck,
    to: SocketAddr,
) -> Result<Request<Empty<Bytes>>, String> {
    let (version, close) = match http.protocol {
        HttpProtocol::Http10 => (Version::HTTP_10, false),
        HttpProtocol::Http10Close => (Version::HTTP_10, true),
        HttpProtocol::Http11 => (Version::HTTP_11, true),
    };
    let mut request = Request::get(url.path.as_str())
        .version(version)
        .header(USER_AGENT, KEEPALIVED_USER_AGENT);
    if close {
        request = request.header(CONNECTION, "close");
    }
    let host = match url.virtualhost.as_ref().or(http.virtualhost.as_ref()) {
        Some(virtualhost) => virtualhost.clone(),
        None => to.to_string(),
    };
    request
        .header(HOST, host)
        .body(Empty::new())
        .map_err(|e| format!("invalid request: {e}"))
}

/// Sends `request` on `io` and reads, before `deadline`, the answer's status and, when
/// `digest`, the whole body.
async fn exchange<S>(
    io: S,
    request: Request<Empty<Bytes>>,
    digest: bool,
    deadline: Deadline,
) -> Result<Answer, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let exchange = async {
        let (mut sender, connection) = http1::Builder::new()
            .title_case_headers(true)
            .handshake(TokioIo::new(io))
            .await?;
        let answer = async move {
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let digest = if digest {
                Some(md5_hex(response.into_body()).await?)
            } else {
                None
            };
            Ok::<_, hyper::Error>(Answer { status, digest })
        };
        // The connection does the I/O. A failure of it fails the answer too (with the cause),
        // so the answer alone decides; the connection is dropped with it.
        let io = async {
            let _ = connection.await;
            std::future::pending::<Infallible>().await
        };
        tokio::select! {
            answer = answer => answer,
            never = io => match never {},
        }
    };
    deadline
        .bound("response".into(), async { exchange.await.map_err(Causes) })
        .await
}

/// The MD5 of a body in lower-case hex, as genhash prints it.
async fn md5_hex(mut body: Incoming) -> Result<String, hyper::Error> {
    let mut md5 = Md5::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            md5.update(&data);
        }
    }
    Ok(md5
        .finalize()
        .iter()
        .fold(String::with_capacity(32), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        }))
}

/// Whether `answer` passes `url`: an accepted status (200-299 unless listed), then the digest.
fn judge(url: &UrlCheck, answer: &Answer) -> Result<(), String> {
    let codes = match url.status_codes.as_slice() {
        [] => &[DEFAULT_STATUS_CODES][..],
        codes => codes,
    };
    if !codes
        .iter()
        .any(|&(low, high)| (low..=high).contains(&answer.status))
    {
        return Err(format!(
            "status {} not in {}",
            answer.status,
            status_codes(codes)
        ));
    }
    match (&url.digest, &answer.digest) {
        (Some(expected), Some(got)) if !got.eq_ignore_ascii_case(expected) => {
            Err(format!("body digest {got} does not match {expected}"))
        }
        _ => Ok(()),
    }
}

/// Status code ranges as `status_code` writes them: `200-299 404`.
fn status_codes(codes: &[(u16, u16)]) -> String {
    let mut text = String::new();
    for &(low, high) in codes {
        let sep = if text.is_empty() { "" } else { " " };
        let _ = if low == high {
            write!(text, "{sep}{low}")
        } else {
            write!(text, "{sep}{low}-{high}")
        };
    }
    text
}

/// An error shown with its causes: `connection error: Connection reset by peer (os error 104)`.
struct Causes<E>(E);

impl<E: Error> Display for Causes<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::{Ipv4Addr, SocketAddr},
        sync::Arc,
        time::{Duration, Instant},
    };

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        sync::mpsc,
    };
    use tokio_rustls::{
        TlsAcceptor,
        rustls::{ServerConfig, crypto::ring, pki_types::PrivateKeyDer},
    };

    use super::*;
    use crate::health::{
        check::{Outcome, attempt as check_attempt, tests::check, tests::listener},
        model::CheckKind,
    };

    /// A body and its MD5, as `printf %s "$BODY" | md5sum` prints it.
    const BODY: &str = "The quick brown fox jumps over the lazy dog";
    const BODY_MD5: &str = "9e107d9d372bb6826bd81d3542a419d6";

    /// What the test server saw of one request.
    #[derive(Debug)]
    struct Seen {
        head: String,
        peer: SocketAddr,
    }

    /// An HTTP server on 127.0.0.1 (over TLS with a self-signed certificate when `tls`) that
    /// answers every request with `status` and [`BODY`], then closes; it reports each request.
    async fn server(status: u16, tls: bool) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
        let (listener, addr) = listener().await;
        let acceptor = tls.then(acceptor);
        let (seen, requests) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = listener.accept().await.unwrap();
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            let stream = acceptor.accept(stream).await.unwrap();
                            answer(stream, peer, status, seen).await;
                        }
                        None => answer(stream, peer, status, seen).await,
                    }
                });
            }
        });
        (addr, requests)
    }

    /// Reads a request head from `stream`, reports it, answers it and closes.
    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
        peer: SocketAddr,
        status: u16,
        seen: mpsc::UnboundedSender<Seen>,
    ) {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0];
            if stream.read(&mut byte).await.unwrap() == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let _ = seen.send(Seen { head, peer });
        let response = format!(
            "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
            BODY.len()
        );
        stream.write_all(response.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
    }

    /// A TLS acceptor with a fresh self-signed certificate.
    fn acceptor() -> TlsAcceptor {
        let certified = rcgen::generate_simple_self_signed(["localhost".to_string()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        TlsAcceptor::from(Arc::new(config))
    }

    fn url(path: &str) -> UrlCheck {
        UrlCheck {
            path: path.into(),
            status_codes: Vec::new(),
            digest: None,
            virtualhost: None,
        }
    }

    fn http(urls: Vec<UrlCheck>) -> HttpCheck {
        HttpCheck {
            tls: false,
            virtualhost: None,
            protocol: HttpProtocol::Http10,
            urls,
        }
    }

    async fn run(http: HttpCheck, real_server: SocketAddr) -> Outcome {
        check_attempt(&check(CheckKind::Http(http)), real_server).await
    }

    #[tokio::test]
    async fn status_codes_default_to_200_299() {
        let (ok, _) = server(204, false).await;
        assert_eq!(run(http(vec![url("/health")]), ok).await, Outcome::Up);
        let (unavailable, _) = server(503, false).await;
        assert_eq!(
            run(http(vec![url("/health")]), unavailable).await,
            Outcome::Down("GET /health: status 503 not in 200-299".into())
        );
    }

    #[tokio::test]
    async fn status_code_lists_and_ranges() {
        let mut listed = url("/");
        listed.status_codes = vec![(200, 200), (400, 499)];
        let (not_found, _) = server(404, false).await;
        assert_eq!(
            run(http(vec![listed.clone()]), not_found).await,
            Outcome::Up
        );
        let (no_content, _) = server(204, false).await;
        assert_eq!(
            run(http(vec![listed]), no_content).await,
            Outcome::Down("GET /: status 204 not in 200 400-499".into())
        );
    }

    #[tokio::test]
    async fn digest_is_the_md5_of_the_body() {
        let (addr, _) = server(200, false).await;
        let mut matching = url("/index.html");
        matching.digest = Some(BODY_MD5.into());
        assert_eq!(run(http(vec![matching]), addr).await, Outcome::Up);
        let mut other = url("/index.html");
        other.digest = Some("00112233445566778899aabbccddeeff".into());
        assert_eq!(
            run(http(vec![other]), addr).await,
            Outcome::Down(format!(
                "GET /index.html: body digest {BODY_MD5} does not match \
                 00112233445566778899aabbccddeeff"
            ))
        );
    }

    #[tokio::test]
    async fn every_url_is_checked_and_the_failing_one_is_named() {
        let (addr, mut requests) = server(200, false).await;
        let mut second = url("/second");
        second.status_codes = vec![(301, 302)];
        assert_eq!(
            run(http(vec![url("/first"), second]), addr).await,
            Outcome::Down("GET /second: status 200 not in 301-302".into())
        );
        assert!(
            requests
                .recv()
                .await
                .unwrap()
                .head
                .starts_with("GET /first ")
        );
        assert!(
            requests
                .recv()
                .await
                .unwrap()
                .head
                .starts_with("GET /second ")
        );
    }

    #[tokio::test]
    async fn requests_are_keepaliveds_for_each_http_protocol() {
        let (addr, mut requests) = server(200, false).await;
        let expected = [
            (HttpProtocol::Http10, "HTTP/1.0", ""),
            (
                HttpProtocol::Http10Close,
                "HTTP/1.0",
                "Connection: close\r\n",
            ),
            (HttpProtocol::Http11, "HTTP/1.1", "Connection: close\r\n"),
        ];
        for (protocol, version, connection) in expected {
            let mut get = http(vec![url("/health?probe=1")]);
            get.protocol = protocol;
            assert_eq!(run(get, addr).await, Outcome::Up);
            assert_eq!(
                requests.recv().await.unwrap().head,
                format!(
                    "GET /health?probe=1 {version}\r\nUser-Agent: KeepAliveClient\r\n\
                     {connection}Host: {addr}\r\n\r\n"
                )
            );
        }
    }

    #[tokio::test]
    async fn host_is_the_urls_virtualhost_else_the_checkers() {
        let (addr, mut requests) = server(200, false).await;
        let mut get = http(vec![url("/a"), url("/b")]);
        get.virtualhost = Some("www.example.com".into());
        get.urls[1].virtualhost = Some("api.example.com".into());
        assert_eq!(run(get, addr).await, Outcome::Up);
        let a = requests.recv().await.unwrap().head;
        let b = requests.recv().await.unwrap().head;
        assert!(a.contains("\r\nHost: www.example.com\r\n"), "{a}");
        assert!(b.contains("\r\nHost: api.example.com\r\n"), "{b}");
    }

    #[tokio::test]
    async fn it_connects_from_bindto_to_connect_ip_and_port() {
        let (addr, mut requests) = server(200, false).await;
        let mut get = check(CheckKind::Http(http(vec![url("/")])));
        get.bindto = Some(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        get.connect_ip = Some(addr.ip());
        get.connect_port = Some(addr.port());
        let elsewhere = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), 9);
        assert_eq!(check_attempt(&get, elsewhere).await, Outcome::Up);
        let seen = requests.recv().await.unwrap();
        assert_eq!(seen.peer.ip(), Ipv4Addr::new(127, 0, 0, 2));
        assert!(
            seen.head.contains(&format!("\r\nHost: {addr}\r\n")),
            "{}",
            seen.head
        );
    }

    #[tokio::test]
    async fn ssl_get_accepts_a_self_signed_certificate() {
        let (addr, mut requests) = server(200, true).await;
        let mut get = http(vec![url("/secure")]);
        get.tls = true;
        get.urls[0].digest = Some(BODY_MD5.into());
        assert_eq!(run(get, addr).await, Outcome::Up);
        assert!(
            requests
                .recv()
                .await
                .unwrap()
                .head
                .starts_with("GET /secure HTTP/1.0\r\n")
        );
    }

    #[tokio::test]
    async fn ssl_get_fails_at_once_on_a_server_without_tls() {
        // A plain HTTP server that answers before it is asked, as to a request it cannot parse.
        let (listener, addr) = listener().await;
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        let mut get = http(vec![url("/")]);
        get.tls = true;
        let Outcome::Down(why) = run(get, addr).await else {
            panic!("a server without TLS passed SSL_GET")
        };
        assert!(why.starts_with("GET /: TLS handshake: "), "{why}");
        assert!(!why.contains("timed out"), "{why}");
    }

    /// A server that accepts connections and never answers.
    async fn silent_server() -> SocketAddr {
        let (listener, addr) = listener().await;
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                held.push(listener.accept().await.unwrap());
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_down_within_connect_timeout() {
        let addr = silent_server().await;
        for tls in [false, true] {
            let mut get = http(vec![url("/health")]);
            get.tls = tls;
            let started = Instant::now();
            let outcome = run(get, addr).await;
            let took = started.elapsed();
            let step = if tls { "TLS handshake" } else { "response" };
            assert_eq!(
                outcome,
                Outcome::Down(format!("GET /health: {step}: timed out after 300ms"))
            );
            assert!(took >= Duration::from_millis(300), "{took:?}");
            assert!(took < Duration::from_secs(2), "{took:?}");
        }
    }

    #[tokio::test]
    async fn a_hanging_server_does_not_delay_another_check() {
        let silent = silent_server().await;
        let (ok, _) = server(200, false).await;
        let mut slow = check(CheckKind::Http(http(vec![url("/")])));
        slow.connect_timeout = Duration::from_secs(5);
        let fast = check(CheckKind::Http(http(vec![url("/")])));
        let started = Instant::now();
        tokio::select! {
            _ = check_attempt(&slow, silent) => panic!("the silent server answered"),
            outcome = check_attempt(&fast, ok) => assert_eq!(outcome, Outcome::Up),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_server_that_closes_without_an_answer_is_down_with_the_cause() {
        let (listener, addr) = listener().await;
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let _ = stream.read(&mut [0; 1024]).await;
        });
        assert_eq!(
            run(http(vec![url("/")]), addr).await,
            Outcome::Down("GET /: response: connection closed before message completed".into())
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_down_with_the_reason() {
        let (listener, addr) = listener().await;
        drop(listener);
        let Outcome::Down(why) = run(http(vec![url("/")]), addr).await else {
            panic!("a closed port passed")
        };
        assert!(
            why.starts_with(&format!("GET /: connect to {addr}: ")),
            "{why}"
        );
    }
}
