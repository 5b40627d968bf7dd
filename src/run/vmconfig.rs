//! A Firecracker `--config-file` (`vm.json`): what `d2v pack` writes beside
//! an image and what `d2v run --vmm firecracker` boots with (then with a
//! vsock device for the host channel and a tap device for the network).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The whole Firecracker configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    /// Kernel, command line and optional initrd.
    #[serde(rename = "boot-source")]
    pub boot_source: BootSource,
    /// Block devices; the root file system is `rootfs`.
    pub drives: Vec<Drive>,
    /// vCPUs and memory.
    #[serde(rename = "machine-config")]
    pub machine_config: MachineConfig,
    /// Network interfaces (tap devices); empty for none.
    #[serde(rename = "network-interfaces")]
    pub network_interfaces: Vec<NetworkInterface>,
    /// The vsock device carrying d2v's host channel.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vsock: Option<Vsock>,
}

/// `vsock`: the guest's CID and the Unix socket Firecracker serves it on.
/// A guest connection to host port P arrives on `<uds_path>_P`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vsock {
    /// The guest's context id (3 or more).
    pub guest_cid: u32,
    /// The host-side Unix socket.
    pub uds_path: PathBuf,
}

/// `boot-source`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootSource {
    /// Uncompressed kernel (vmlinux).
    pub kernel_image_path: PathBuf,
    /// Kernel command line.
    pub boot_args: String,
    /// Optional initrd.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub initrd_path: Option<PathBuf>,
}

/// One entry of `drives`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drive {
    /// Drive name (`rootfs`).
    pub drive_id: String,
    /// Image path on the host.
    pub path_on_host: PathBuf,
    /// Whether this is the root device.
    pub is_root_device: bool,
    /// Whether the guest sees it read-only.
    pub is_read_only: bool,
}

/// `machine-config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineConfig {
    /// vCPUs.
    pub vcpu_count: u32,
    /// Memory in MiB.
    pub mem_size_mib: u32,
}

/// One entry of `network-interfaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    /// Interface name in the guest (`eth0`).
    pub iface_id: String,
    /// Tap device on the host.
    pub host_dev_name: String,
    /// Optional MAC address.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub guest_mac: Option<String>,
}

/// Kernel command line for a d2v image: root on the first virtio disk,
/// serial console, `/sbin/d2v-init` as PID 1, the host channel over vsock
/// (without d2v listening, init runs the image on the serial console).
pub const DEFAULT_BOOT_ARGS: &str =
    "console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda rw init=/sbin/d2v-init d2v.channel=vsock";

impl VmConfig {
    /// A configuration booting `kernel` with `image` as a writable (or
    /// read-only) root, 1 vCPU and 256 MiB, no network.
    pub fn new(kernel: &Path, image: &Path, read_only: bool) -> Self {
        let boot_args = if read_only {
            DEFAULT_BOOT_ARGS.replace(" rw ", " ro ")
        } else {
            DEFAULT_BOOT_ARGS.to_string()
        };
        VmConfig {
            boot_source: BootSource {
                kernel_image_path: kernel.to_path_buf(),
                boot_args,
                initrd_path: None,
            },
            drives: vec![Drive {
                drive_id: "rootfs".into(),
                path_on_host: image.to_path_buf(),
                is_root_device: true,
                is_read_only: read_only,
            }],
            machine_config: MachineConfig {
                vcpu_count: 1,
                mem_size_mib: 256,
            },
            network_interfaces: Vec::new(),
            vsock: None,
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain structs serialise")
    }

    /// Write as JSON to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_json() + "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_firecracker_field_names() {
        let c = VmConfig::new(Path::new("/k/vmlinux"), Path::new("/i/rootfs.ext4"), false);
        let v: serde_json::Value = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(v["boot-source"]["kernel_image_path"], "/k/vmlinux");
        assert!(v["boot-source"].get("initrd_path").is_none());
        assert_eq!(v["drives"][0]["drive_id"], "rootfs");
        assert_eq!(v["drives"][0]["is_root_device"], true);
        assert_eq!(v["machine-config"]["mem_size_mib"], 256);
        assert!(v["network-interfaces"].as_array().unwrap().is_empty());
        assert!(v.get("vsock").is_none());
        let back: VmConfig = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(back, c);
        let mut c = c;
        c.vsock = Some(Vsock {
            guest_cid: 3,
            uds_path: "/run/d2v/v.sock".into(),
        });
        let v: serde_json::Value = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(v["vsock"]["guest_cid"], 3);
        assert_eq!(v["vsock"]["uds_path"], "/run/d2v/v.sock");
    }
}
