//! The host end of the guest channel (`d2v_runtime::proto`): one abstraction,
//! two transports. Either way d2v listens on a Unix socket in the run's
//! directory and the VMM connects to it:
//!
//! * QEMU: a virtio-console port (`virtio-serial-device` + `virtserialport`
//!   named `org.d2v.channel`) whose chardev is a client of our socket;
//! * Firecracker: its vsock device turns the guest's connection to host
//!   port [`VSOCK_PORT`] into a connection to `<uds_path>_10240`.
//!
//! After the accept, both are the same byte stream.

use super::vmconfig::Vsock;
use super::RunError;
use d2v_runtime::proto::{VIRTIO_PORT_NAME, VSOCK_PORT};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How the channel reaches the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A virtio-console port (QEMU).
    VirtioConsole,
    /// vsock (Firecracker).
    Vsock,
}

/// The guest CID d2v gives a Firecracker VM.
pub const GUEST_CID: u32 = 3;

/// A listening channel, before the VMM (or the guest) connects.
pub struct ChannelListener {
    listener: UnixListener,
    /// The socket path the VMM uses: the chardev path, or Firecracker's
    /// `uds_path` (we listen on `<uds_path>_<port>`).
    vmm_path: PathBuf,
    transport: Transport,
}

impl ChannelListener {
    /// Listens in `dir` for `transport`.
    pub fn bind(dir: &Path, transport: Transport) -> Result<ChannelListener, RunError> {
        let (vmm_path, listen_path) = match transport {
            Transport::VirtioConsole => {
                let p = dir.join("channel.sock");
                (p.clone(), p)
            }
            Transport::Vsock => {
                let p = dir.join("vsock.sock");
                let l = dir.join(format!("vsock.sock_{VSOCK_PORT}"));
                (p, l)
            }
        };
        let listener =
            UnixListener::bind(&listen_path).map_err(|e| RunError::io(&listen_path, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| RunError::io(&listen_path, e))?;
        Ok(ChannelListener {
            listener,
            vmm_path,
            transport,
        })
    }

    /// QEMU's arguments for the port (virtio-mmio: `-device virtio-serial-device`).
    pub fn qemu_args(&self) -> Vec<String> {
        vec![
            "-device".into(),
            "virtio-serial-device,max_ports=2".into(),
            "-chardev".into(),
            format!(
                "socket,id=d2vch,path={}",
                self.vmm_path.display().to_string().replace(',', ",,")
            ),
            "-device".into(),
            format!("virtserialport,chardev=d2vch,name={VIRTIO_PORT_NAME}"),
        ]
    }

    /// Firecracker's `vsock` section.
    pub fn vsock_config(&self) -> Vsock {
        Vsock {
            guest_cid: GUEST_CID,
            uds_path: self.vmm_path.clone(),
        }
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Waits for the connection while `alive()` says the VMM still runs.
    pub fn accept(
        &self,
        timeout: Duration,
        mut alive: impl FnMut() -> bool,
    ) -> Result<UnixStream, RunError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false)
                        .map_err(|e| RunError::io(&self.vmm_path, e))?;
                    return Ok(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(RunError::io(&self.vmm_path, e)),
            }
            if !alive() {
                return Err(RunError::NoChannel(
                    "the VM stopped before init connected".into(),
                ));
            }
            if Instant::now() >= deadline {
                return Err(RunError::NoChannel(format!(
                    "init did not connect within {} s",
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn vsock_listens_where_firecracker_forwards_the_guests_port() {
        let dir = tempfile::tempdir().unwrap();
        let l = ChannelListener::bind(dir.path(), Transport::Vsock).unwrap();
        let cfg = l.vsock_config();
        assert_eq!(cfg.guest_cid, 3);
        // What Firecracker does when the guest connects to port 10240.
        let fwd = format!("{}_{}", cfg.uds_path.display(), VSOCK_PORT);
        let mut guest = UnixStream::connect(fwd).unwrap();
        let mut host = l.accept(Duration::from_secs(5), || true).unwrap();
        guest.write_all(b"hi").unwrap();
        let mut b = [0u8; 2];
        host.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hi");
    }

    #[test]
    fn qemu_port_is_named_for_init_and_accept_gives_up_when_the_vm_dies() {
        let dir = tempfile::tempdir().unwrap();
        let l = ChannelListener::bind(dir.path(), Transport::VirtioConsole).unwrap();
        let args = l.qemu_args().join(" ");
        assert!(
            args.contains("virtserialport,chardev=d2vch,name=org.d2v.channel"),
            "{args}"
        );
        assert!(args.contains("channel.sock"), "{args}");
        let e = l.accept(Duration::from_secs(5), || false).unwrap_err();
        assert!(e.to_string().contains("before init connected"), "{e}");
    }
}
