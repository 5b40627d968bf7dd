#!/usr/bin/env bash
# The main job on the bundled example, on a fresh Debian machine (as root):
#   ./scripts/demo.sh
# Installs what d2v needs, builds d2v, makes a Debian base image (debootstrap),
# then builds examples/hello, shows its rootfs through `d2v mount`, packs it into
# an ext4 image, and boots it (QEMU; TCG when KVM cannot boot a stock kernel).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root" >&2; exit 1; }
./scripts/install-deps.sh
cargo build --release
# Installed for every user: d2v needs no root to build, mount, pack or run.
install -m 0755 "${CARGO_TARGET_DIR:-$PWD/target}/release/d2v" /usr/local/bin/d2v
d2v=/usr/local/bin/d2v
export D2V_FIXTURES=${D2V_FIXTURES:-/var/tmp/d2v-fixtures}
./testdata/fixtures/make-fixtures.sh "$D2V_FIXTURES" >/dev/null
out=${D2V_DEMO_OUT:-/var/tmp/d2v-demo}
mkdir -p "$out"
set -x
$d2v import "oci:$D2V_FIXTURES/debian-oci:bookworm" --as debian:bookworm
$d2v build -t hello examples/hello
$d2v images
mnt=$(mktemp -d)
$d2v mount hello "$mnt"
ls -l "$mnt/usr/local/bin/hello" "$mnt/home"
$d2v umount "$mnt"
rmdir "$mnt"
$d2v pack hello -o "$out/hello.ext4"
cat "$out/vm.json"
if [ -e /dev/kvm ] || command -v qemu-system-x86_64 >/dev/null; then
  $d2v run hello -- microVM 0
fi
