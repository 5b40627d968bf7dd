#!/usr/bin/env bash
# `d2v check` against `sha256sum` of the same blobs: a store holding the
# debootstrapped Debian fixture (and busybox), page cache warm for both.
#
#   sudo benches/check-vs-sha256sum.sh          (RUNS=5 by default)
#
#   sha256sum blobs/sha256/*    hashing alone, one core
#   d2v check                   every blob hashed, every layer index rebuilt in
#                               scratch and compared, every image and cache
#                               entry read
#
# Prints medians (hyperfine) and MB/s over the blob bytes; asserts nothing.
# Needs root, hyperfine, jq, cargo. Env: RUNS, D2V_FIXTURES, CARGO_TARGET_DIR,
# BENCH_TMP (default /var/tmp).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for t in hyperfine jq cargo bc; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done

repo=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-5}
fixtures=${D2V_FIXTURES:-/var/tmp/d2v-fixtures}
target=${CARGO_TARGET_DIR:-$repo/target}
[ -e "$fixtures/debian-oci" ] || "$repo/testdata/fixtures/make-fixtures.sh" "$fixtures"

echo "building d2v (release)..." >&2
(cd "$repo" && CARGO_TARGET_DIR=$target cargo build --release -q -p d2v --bin d2v)
d2v=$target/release/d2v

work=$(mktemp -d "${BENCH_TMP:-/var/tmp}/d2v-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export D2V_HOME=$work/store
$d2v import "oci:$fixtures/debian-oci:bookworm" --as debian >/dev/null
$d2v import "oci:$fixtures/busybox-oci:latest" --as busybox >/dev/null
bytes=$(du -cb "$D2V_HOME"/blobs/sha256/* | tail -1 | cut -f1)
count=$(ls "$D2V_HOME/blobs/sha256" | wc -l)
echo "store: $count blobs, $bytes bytes" >&2

declare -A results
bench() {
  local name=$1 cmd=$2 json=$work/$1.json
  hyperfine --style none --warmup 1 --runs "$runs" --export-json "$json" "$cmd" >&2
  results[$name]=$(jq '.results[0].median' "$json")
}
bench sha256sum "sha256sum $D2V_HOME/blobs/sha256/* >/dev/null"
bench check "$d2v check 2>/dev/null"

printf '\n%-30s %10s %10s\n' "$count blobs, $((bytes / 1000000)) MB" "seconds" "MB/s"
row() { printf '%-30s %10.3f %10.0f\n' "$1" "${results[$2]}" "$(echo "$bytes / ${results[$2]} / 1000000" | bc -l)"; }
row "sha256sum" sha256sum
row "d2v check" check
