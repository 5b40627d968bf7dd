#!/usr/bin/env bash
# Installs the Debian packages d2v's build, tests and benchmarks use (as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  build-essential pkg-config ca-certificates curl git
  fuse3                      # fusermount3: auto-unmount of a killed FUSE server
  e2fsprogs                  # e2fsck, mkfs.ext4, debugfs: checking and comparing images
  attr libcap2-bin           # getfattr/setfattr, getcap/setcap in tests
  busybox-static debootstrap # base-image fixtures
  umoci skopeo buildah golang-github-containers-common  # OCI tools and the oracle
  uidmap slirp4netns         # RUN steps: newuidmap/newgidmap (rootless), the step's network
  podman runc                # the Docker-API daemon in tests (runc: crun refuses hybrid cgroups)
  docker-registry apache2-utils  # a local registry (distribution 2.8) and htpasswd for the registry tests
  python3                    # the lying registry of tests/it/registry_limits.rs
  qemu-system-x86 qemu-utils # booting images (d2v run); qemu-img for its copy-on-write disks
  linux-image-amd64          # a stock kernel in /boot for d2v run (the fallback)
  xz-utils                   # unpacking xz-compressed kernels for d2v run
  linux-source-6.1 flex bison libelf-dev bc  # d2v kernel build: the microVM guest kernel
  hyperfine jq bc time       # benchmarks
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
modprobe fuse 2>/dev/null || true
modprobe overlay 2>/dev/null || true
modprobe loop 2>/dev/null || true
