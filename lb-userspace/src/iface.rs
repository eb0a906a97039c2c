//! Facts about network interfaces and the BPF filesystem, read in the caller's network namespace.

use std::{ffi::CString, fs, io, path::Path};

use anyhow::{Context, Result, bail};

/// The interface's index, or an error naming it when it does not exist.
pub fn index(name: &str) -> Result<u32> {
    let c = CString::new(name).context("interface name contains a NUL byte")?;
    // SAFETY: a valid C string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        bail!("interface {name} does not exist");
    }
    Ok(idx)
}

/// The interface's hardware address.
pub fn mac(name: &str) -> Result<[u8; 6]> {
    // SAFETY: plain socket and ioctl calls on a zeroed ifreq whose name fits (checked).
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        let bytes = name.as_bytes();
        if bytes.len() >= req.ifr_name.len() {
            bail!("interface name {name} is too long");
        }
        for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error().into());
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req);
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc < 0 {
            return Err(err).with_context(|| format!("reading the MAC address of {name}"));
        }
        let sa = req.ifr_ifru.ifru_hwaddr.sa_data;
        Ok(std::array::from_fn(|i| sa[i] as u8))
    }
}

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Makes sure `dir` exists on a BPF filesystem, mounting one at `/sys/fs/bpf` if needed.
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    let root = Path::new("/sys/fs/bpf");
    if dir.starts_with(root) && !is_bpffs(root)? {
        fs::create_dir_all(root).ok();
        let (src, dst, ty) = (
            c"bpf",
            CString::new(root.as_os_str().as_encoded_bytes())?,
            c"bpf",
        );
        // SAFETY: valid C strings; no data argument.
        let rc =
            unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) };
        if rc != 0 {
            return Err(io::Error::last_os_error())
                .context("mounting the BPF filesystem on /sys/fs/bpf");
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if !is_bpffs(dir)? {
        bail!(
            "{} is not on a BPF filesystem (mount -t bpf bpf DIR)",
            dir.display()
        );
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> Result<bool> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: a zeroed statfs filled by the kernel.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Ok(false);
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Whether the process runs with root's privileges.
pub fn is_root() -> bool {
    // SAFETY: no arguments.
    unsafe { libc::geteuid() == 0 }
}
