#!/bin/sh
# Reads a layer stack through the d2v FUSE view and from the same files
# extracted on the host filesystem, cold and warm, and prints the ratios.
# Needs root, GNU tar, fusermount3. Asserts nothing.
# Usage: benches/fuse-read.sh [LAYER.tar...]   (default: a synthetic layer)
set -eu
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build -q --release -p d2v-fuse --example d2v-fuse-mount
bin="$CARGO_TARGET_DIR/release/examples/d2v-fuse-mount"
work=$(mktemp -d)
trap 'umount "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
if [ $# -eq 0 ]; then
    mkdir -p "$work/src/many" "$work/src/big"
    i=0
    while [ $i -lt 5000 ]; do head -c 4096 /dev/urandom > "$work/src/many/f$i"; i=$((i+1)); done
    head -c 512M /dev/urandom > "$work/src/big/blob"
    tar -C "$work/src" -cf "$work/layer.tar" .
    set -- "$work/layer.tar"
fi
mkdir -p "$work/mnt" "$work/ext"
for l in "$@"; do tar -C "$work/ext" -xf "$l"; done
"$bin" "$work/mnt" "$@" 2>"$work/log" &
while ! grep -q mounted "$work/log"; do sleep 0.1; done
now() { date +%s%N; }
read_all() { find "$1" -type f -print0 | xargs -0 cat > /dev/null; }
measure() { sync; echo 3 > /proc/sys/vm/drop_caches; a=$(now); read_all "$1"; b=$(now); read_all "$1"; c=$(now); echo "$(( (b-a)/1000000 )) $(( (c-b)/1000000 ))"; }
set -- $(measure "$work/ext"); ext_cold=$1; ext_warm=$2
set -- $(measure "$work/mnt"); fuse_cold=$1; fuse_warm=$2
echo "extracted: cold ${ext_cold} ms, warm ${ext_warm} ms"
echo "d2v fuse:  cold ${fuse_cold} ms, warm ${fuse_warm} ms"
awk -v a="$fuse_cold" -v b="$ext_cold" -v c="$fuse_warm" -v d="$ext_warm" \
    'BEGIN { printf "fuse/extracted ratio: cold %.2f, warm %.2f\n", a/(b?b:1), c/(d?d:1) }'
