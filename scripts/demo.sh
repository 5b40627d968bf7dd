#!/usr/bin/env bash
# The main job on the bundled example, on a fresh Debian machine (as root):
#   sudo ./scripts/demo.sh
# Installs what d2v needs, builds it, imports a base image and shows its rootfs
# through `d2v mount`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root" >&2; exit 1; }
./scripts/install-deps.sh
cargo build --release
d2v=$PWD/target/release/d2v
export D2V_FIXTURES=${D2V_FIXTURES:-/var/tmp/d2v-fixtures}
./testdata/fixtures/make-fixtures.sh "$D2V_FIXTURES" >/dev/null
set -x
$d2v import "rootfs:$D2V_FIXTURES/busybox.tar" --as busybox
$d2v images
mnt=$(mktemp -d)
$d2v mount busybox "$mnt"
ls "$mnt" "$mnt/etc"
$d2v umount "$mnt"
rmdir "$mnt"
