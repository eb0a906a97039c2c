//! Frames seen on an interface inside a namespace, captured with an AF_PACKET socket.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use anyhow::{Context, Result, bail};

use crate::netns::Netns;

/// A captured Ethernet frame.
#[derive(Clone, Debug)]
pub struct Captured(pub Vec<u8>);

impl Captured {
    /// Source MAC.
    pub fn src_mac(&self) -> [u8; 6] {
        self.0[6..12].try_into().unwrap()
    }

    /// IPv4 source and destination, if the frame is untagged IPv4.
    pub fn ipv4(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        if self.0.len() < 34 || self.0[12..14] != [0x08, 0x00] {
            return None;
        }
        let a = |o: usize| Ipv4Addr::new(self.0[o], self.0[o + 1], self.0[o + 2], self.0[o + 3]);
        Some((a(26), a(30)))
    }

    /// IPv6 source, destination and next header, if the frame is untagged IPv6.
    pub fn ipv6(&self) -> Option<(Ipv6Addr, Ipv6Addr, u8)> {
        if self.0.len() < 54 || self.0[12..14] != [0x86, 0xdd] {
            return None;
        }
        let a = |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&self.0[o..o + 16]).unwrap());
        Some((a(22), a(38), self.0[20]))
    }
}

/// A running capture; `finish` stops it and returns the frames.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Vec<Captured>>>>,
}

const ETH_P_ALL: u16 = 0x0003;

impl Capture {
    /// Starts capturing every frame received or sent on `iface` in `ns`.
    pub fn start(ns: &Netns, iface: &str) -> Result<Self> {
        let ifindex = {
            let iface = iface.to_owned();
            ns.enter(move || lb_userspace::iface::index(&iface))??
        };
        let fd = ns.enter(move || -> Result<i32> {
            // SAFETY: plain socket calls with a zeroed, filled sockaddr_ll.
            unsafe {
                let fd = libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    (ETH_P_ALL.to_be()) as i32,
                );
                if fd < 0 {
                    bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
                }
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_protocol = ETH_P_ALL.to_be();
                sll.sll_ifindex = ifindex as i32;
                let rc = libc::bind(
                    fd,
                    &sll as *const _ as *const libc::sockaddr,
                    size_of::<libc::sockaddr_ll>() as u32,
                );
                if rc != 0 {
                    libc::close(fd);
                    bail!("binding AF_PACKET: {}", std::io::Error::last_os_error());
                }
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 50_000,
                };
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const _ as *const libc::c_void,
                    size_of::<libc::timeval>() as u32,
                );
                Ok(fd)
            }
        })??;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut frames = Vec::new();
            let mut buf = vec![0u8; 65536];
            // Until stopped, wait for frames; then take only what is queued already, so that
            // every frame the interface saw before `finish` is returned.
            loop {
                let stopping = flag.load(Ordering::Relaxed);
                let flags = if stopping { libc::MSG_DONTWAIT } else { 0 };
                // SAFETY: reading into an owned buffer of the given length.
                let n = unsafe {
                    libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), flags)
                };
                if n > 0 {
                    frames.push(Captured(buf[..n as usize].to_vec()));
                } else if stopping {
                    break;
                }
            }
            // SAFETY: the descriptor is owned by this thread.
            unsafe { libc::close(fd) };
            Ok(frames)
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the capture and returns what it saw: every frame sent or received on the
    /// interface before this call.
    pub fn finish(mut self) -> Result<Vec<Captured>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .context("finished twice")?
            .join()
            .map_err(|_| anyhow::anyhow!("capture panicked"))?
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
