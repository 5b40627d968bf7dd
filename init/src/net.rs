//! Interface setup over rtnetlink, by hand: link up (+MTU), an IPv4 address, a
//! default route. No `ip` binary is needed in the image.

use crate::sys::{Errno, SysResult};
use alloc::vec::Vec;

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFLA_MTU: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

/// Parses dotted-quad IPv4.
pub fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in out.iter_mut() {
        *o = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Parses `A.B.C.D/N`.
pub fn parse_cidr(s: &str) -> Option<([u8; 4], u8)> {
    let (a, p) = s.split_once('/')?;
    let prefix: u8 = p.parse().ok()?;
    (prefix <= 32).then_some((parse_ipv4(a)?, prefix))
}

/// An open NETLINK_ROUTE socket.
pub struct Netlink {
    fd: i32,
    seq: u32,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        crate::sys::close(self.fd);
    }
}

struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32) -> Msg {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        Msg(b)
    }
    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    fn attr(&mut self, kind: u16, data: &[u8]) {
        self.0
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(data);
        while self.0.len() & 3 != 0 {
            self.0.push(0);
        }
    }
    fn finish(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

impl Netlink {
    /// Opens and binds the socket.
    pub fn open() -> SysResult<Netlink> {
        // SAFETY: plain socket(2) call.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(Errno::last());
        }
        Ok(Netlink { fd, seq: 1 })
    }

    fn call(&mut self, msg: Msg) -> SysResult<()> {
        let buf = msg.finish();
        // Port id 0 and no groups: addressed to the kernel.
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { core::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: buf is readable for buf.len() bytes and sa is a sockaddr_nl
        // whose size is passed with it; both outlive the call.
        let ret = unsafe {
            libc::sendto(
                self.fd,
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
                0,
                &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                core::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if ret < 0 {
            return Err(Errno::last());
        }
        let seq = self.seq;
        self.seq += 1;
        let mut rbuf = [0u8; 4096];
        loop {
            // SAFETY: rbuf is writable for its length.
            let n = unsafe {
                libc::recv(
                    self.fd,
                    rbuf.as_mut_ptr() as *mut libc::c_void,
                    rbuf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = Errno::last();
                if e.0 == libc::EINTR {
                    continue;
                }
                return Err(e);
            }
            let mut off = 0usize;
            let n = n as usize;
            while off + 16 <= n {
                let len = u32::from_ne_bytes(rbuf[off..off + 4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(rbuf[off + 4..off + 6].try_into().unwrap());
                let mseq = u32::from_ne_bytes(rbuf[off + 8..off + 12].try_into().unwrap());
                if kind == NLMSG_ERROR && mseq == seq && off + 20 <= n {
                    let err = i32::from_ne_bytes(rbuf[off + 16..off + 20].try_into().unwrap());
                    return if err == 0 { Ok(()) } else { Err(Errno(-err)) };
                }
                if len < 16 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
    }

    /// Sets the link up, with `mtu` when given.
    pub fn link_up(&mut self, index: u32, mtu: Option<u32>) -> SysResult<()> {
        let mut m = Msg::new(RTM_NEWLINK, 0, self.seq);
        let up = libc::IFF_UP as u32;
        m.raw(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        m.raw(&(index as i32).to_ne_bytes());
        m.raw(&up.to_ne_bytes());
        m.raw(&up.to_ne_bytes());
        if let Some(mtu) = mtu {
            m.attr(IFLA_MTU, &mtu.to_ne_bytes());
        }
        self.call(m)
    }

    /// Adds `addr/prefix` to the interface; an existing address is fine.
    pub fn add_addr(&mut self, index: u32, addr: [u8; 4], prefix: u8) -> SysResult<()> {
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, self.seq);
        m.raw(&[libc::AF_INET as u8, prefix, 0, 0]);
        m.raw(&index.to_ne_bytes());
        m.attr(IFA_LOCAL, &addr);
        m.attr(IFA_ADDRESS, &addr);
        if prefix < 31 {
            let host_mask = u32::MAX >> prefix;
            let bcast = (u32::from_be_bytes(addr) | host_mask).to_be_bytes();
            m.attr(IFA_BROADCAST, &bcast);
        }
        match self.call(m) {
            Err(Errno(libc::EEXIST)) => Ok(()),
            r => r,
        }
    }

    /// Adds the default route via `gateway` on the interface.
    pub fn add_default_route(&mut self, index: u32, gateway: [u8; 4]) -> SysResult<()> {
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, self.seq);
        // rtmsg: family, dst_len, src_len, tos, table=main, protocol=boot,
        // scope=universe, type=unicast, flags.
        m.raw(&[libc::AF_INET as u8, 0, 0, 0, 254, 3, 0, 1]);
        m.raw(&0u32.to_ne_bytes());
        m.attr(RTA_GATEWAY, &gateway);
        m.attr(RTA_OIF, &index.to_ne_bytes());
        match self.call(m) {
            Err(Errno(libc::EEXIST)) => Ok(()),
            r => r,
        }
    }
}

/// The interface index of `name`, or ENODEV.
pub fn if_index(name: &str) -> SysResult<u32> {
    let n = crate::sys::cstr(name.as_bytes());
    // SAFETY: n is a valid C string; if_nametoindex uses an ioctl, not NSS.
    let idx = unsafe { libc::if_nametoindex(n.as_ptr()) };
    if idx == 0 {
        Err(Errno(libc::ENODEV))
    } else {
        Ok(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(parse_cidr("10.0.2.15/24"), Some(([10, 0, 2, 15], 24)));
        assert_eq!(parse_ipv4("10.0.2.2"), Some([10, 0, 2, 2]));
        assert_eq!(parse_cidr("10.0.2.15"), None);
        assert_eq!(parse_cidr("10.0.2.15/33"), None);
        assert_eq!(parse_ipv4("1.2.3"), None);
        assert_eq!(parse_ipv4("1.2.3.4.5"), None);
        assert_eq!(parse_ipv4("1.2.3.256"), None);
    }
}
