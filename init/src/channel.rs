//! Init's end of the host channel (`d2v_runtime::proto`): a virtio-console
//! port named `org.d2v.channel` under QEMU, or a vsock connection to the
//! host (CID 2) under Firecracker (`d2v.channel=vsock` on the command line).
//! One open file descriptor either way; frames are read and written on it.

use crate::sys::{self, Errno, SysResult};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use d2v_runtime::proto::{self, Decoder, Frame, Kind, Level};

/// The open channel's fd once [`Channel::open`] succeeded; `say!` and
/// [`crate::pid1::fail`] send their lines there instead of the console.
static FD: AtomicI32 = AtomicI32::new(-1);
/// Whether progress messages are wanted (`--debug`).
static DEBUG: AtomicBool = AtomicBool::new(false);

/// Which transport to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// A virtio-console port (QEMU).
    #[default]
    VirtioPort,
    /// vsock to the host (Firecracker).
    Vsock,
}

/// The guest end of the channel.
pub struct Channel {
    /// The port or socket.
    pub fd: i32,
    dec: Decoder,
}

/// `/dev/vportNpM` whose sysfs name is the d2v channel's.
fn find_port() -> Option<Vec<u8>> {
    let dir = sys::read_dir_names(b"/sys/class/virtio-ports").ok()?;
    for name in dir {
        let mut p = b"/sys/class/virtio-ports/".to_vec();
        p.extend_from_slice(&name);
        p.extend_from_slice(b"/name");
        if let Ok(n) = sys::read_file(&p) {
            if n.strip_suffix(b"\n").unwrap_or(&n) == proto::VIRTIO_PORT_NAME.as_bytes() {
                let mut dev = b"/dev/".to_vec();
                dev.extend_from_slice(&name);
                return Some(dev);
            }
        }
    }
    None
}

fn vsock_connect() -> SysResult<i32> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: sockaddr_vm is plain data; zeroed is a valid starting value.
    let mut addr: libc::sockaddr_vm = unsafe { core::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = libc::VMADDR_CID_HOST;
    addr.svm_port = proto::VSOCK_PORT;
    // SAFETY: addr is a valid sockaddr_vm of the given size.
    let r = unsafe {
        libc::connect(
            fd,
            &addr as *const libc::sockaddr_vm as *const libc::sockaddr,
            core::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    };
    if r < 0 {
        let e = Errno::last();
        sys::close(fd);
        return Err(e);
    }
    Ok(fd)
}

impl Channel {
    /// Opens the channel, waiting up to 1 s for the port (or the host's
    /// listener) to appear.
    pub fn open(transport: Transport) -> Result<Channel, String> {
        let mut last = String::new();
        for _ in 0..200 {
            let fd = match transport {
                Transport::VirtioPort => match find_port() {
                    Some(dev) => sys::open(&dev, libc::O_RDWR, 0).map_err(|e| {
                        format!("couldn't open {}: {e}", String::from_utf8_lossy(&dev))
                    }),
                    None => Err(format!("no virtio port named {}", proto::VIRTIO_PORT_NAME)),
                },
                Transport::Vsock => vsock_connect().map_err(|e| {
                    format!("couldn't connect to vsock port {}: {e}", proto::VSOCK_PORT)
                }),
            };
            match fd {
                Ok(fd) => {
                    FD.store(fd, Ordering::SeqCst);
                    return Ok(Channel {
                        fd,
                        dec: Decoder::new(proto::MAX_PAYLOAD),
                    });
                }
                Err(e) => last = e,
            }
            sys::sleep_ms(5);
        }
        Err(last)
    }

    /// Sends one frame.
    pub fn send(&self, kind: Kind, payload: &[u8]) {
        send_on(self.fd, kind, payload);
    }

    /// Reads what is there (blocking when nothing is); `Ok(false)` at EOF.
    pub fn fill(&mut self) -> Result<bool, String> {
        let mut buf = [0u8; 16384];
        let n =
            sys::read(self.fd, &mut buf).map_err(|e| format!("couldn't read the channel: {e}"))?;
        self.dec.push(&buf[..n]);
        Ok(n > 0)
    }

    /// The next complete frame already read.
    pub fn next(&mut self) -> Result<Option<Frame>, String> {
        self.dec
            .next_frame()
            .map_err(|e| format!("bad frame from the host: {e}"))
    }

    /// Blocks until a whole frame has arrived.
    pub fn recv(&mut self) -> Result<Frame, String> {
        loop {
            if let Some(f) = self.next()? {
                return Ok(f);
            }
            if !self.fill()? {
                return Err("the host closed the channel".into());
            }
        }
    }
}

/// The most a virtio-console port takes in one write(2) (the kernel's
/// driver caps each at 32 KiB): a frame of this payload is one write, one kick.
pub const CHUNK: usize = (32 << 10) - proto::HEADER;

fn send_on(fd: i32, kind: Kind, payload: &[u8]) {
    for chunk in payload
        .chunks(CHUNK)
        .chain(payload.is_empty().then_some(&[][..]))
    {
        sys::write_all(fd, &proto::frame(kind, chunk));
    }
}

/// Turns progress messages on or off.
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::SeqCst);
}

/// Whether progress messages are wanted.
pub fn debug() -> bool {
    DEBUG.load(Ordering::SeqCst)
}

/// Sends an init message to the host, or writes it to the console before
/// the channel is open. `Info` lines travel only with `--debug`.
pub fn log(level: Level, text: &str) {
    let fd = FD.load(Ordering::SeqCst);
    if fd < 0 {
        sys::write_all(2, format!("d2v-init: {text}\n").as_bytes());
    } else if level == Level::Error || debug() {
        send_on(fd, Kind::Log, &proto::log_payload(level, text));
    }
}

/// Sends the exit code, when the channel is open, and waits (10 s at most)
/// for the host's `Done`: a VMM may drop data still on its way to the host
/// when the guest powers off.
pub fn send_exit(code: i32) {
    let fd = FD.load(Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    send_on(fd, Kind::Exit, &proto::exit_payload(code));
    let mut dec = Decoder::new(proto::MAX_PAYLOAD);
    let deadline = sys::boottime() + 10_000_000;
    let mut buf = [0u8; 4096];
    while sys::boottime() < deadline {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, 100) } <= 0 {
            continue;
        }
        match sys::read(fd, &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => dec.push(&buf[..n]),
        }
        while let Ok(Some(f)) = dec.next_frame() {
            if f.kind == Kind::Done {
                return;
            }
        }
    }
}
