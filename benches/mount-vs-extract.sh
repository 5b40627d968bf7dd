#!/usr/bin/env bash
# d2v mount vs tar -x of the same image (the Debian bookworm fixture, ~130 MB,
# ~10k paths): how soon the view is usable, and what reading through it costs.
#
#   sudo benches/mount-vs-extract.sh            (RUNS=10 by default)
#
# Prints a table of medians (hyperfine) and ratios; asserts nothing. Targets:
# mount ready < 50 ms and >= 20x sooner than tar -x.
#   (1) `d2v mount` until the first `ls /` returns   vs  `tar -x` into a fresh dir
#   (2) read every file (find -type f -exec cat)    through the mount vs the tree
#   (3) stat every path (find -printf '%m %u %s')   through the mount vs the tree
# (2) and (3) run cold and warm. Cold = `sync; echo 3 > /proc/sys/vm/drop_caches`
# before each run; for the mount it also remounts, because drop_caches empties the
# kernel's FUSE page cache and dentry/attr caches but not the server's own state.
# Warm = after a warmup run, with everything cached (FUSE entry/attr TTLs and
# FOPEN_KEEP_CACHE let the kernel answer without asking the server).
#
# Needs root, hyperfine, jq, tar, cargo. Env: RUNS, D2V_FIXTURES, CARGO_TARGET_DIR,
# BENCH_TMP (default /var/tmp: local disk, not tmpfs), D2V (a d2v binary to use
# instead of building one, e.g. to compare two builds in one session).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root (FUSE mounts, drop_caches)" >&2; exit 1; }
for t in hyperfine jq tar cargo; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done

repo=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-10}
fixtures=${D2V_FIXTURES:-/var/tmp/d2v-fixtures}
target=${CARGO_TARGET_DIR:-$repo/target}
[ -e "$fixtures/debian.tar" ] || "$repo/testdata/fixtures/make-fixtures.sh" "$fixtures"
image=$fixtures/debian.tar

if [ -n "${D2V:-}" ]; then
  d2v=$D2V
else
  echo "building d2v (release)..." >&2
  (cd "$repo" && CARGO_TARGET_DIR=$target cargo build --release -q -p d2v --bin d2v)
  d2v=$target/release/d2v
fi

work=$(mktemp -d "${BENCH_TMP:-/var/tmp}/d2v-bench.XXXXXX")
export D2V_HOME=$work/store
mnt=$work/mnt
tree=$work/tree
cleanup() {
  mountpoint -q "$mnt" 2>/dev/null && "$d2v" umount "$mnt" || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$mnt"

"$d2v" import "rootfs:$image" --as debian >/dev/null
umnt="$d2v umount $mnt >/dev/null 2>&1 || true"
drop="sync; echo 3 > /proc/sys/vm/drop_caches"

# bench NAME PREPARE COMMAND [hyperfine args...]: median seconds into $results
declare -A results
bench() {
  local name=$1 prepare=$2 cmd=$3 json=$work/$1.json
  shift 3
  hyperfine --style none --runs "$runs" --export-json "$json" --prepare "$prepare" "$@" "$cmd" >&2
  results[$name]=$(jq '.results[0].median' "$json")
}

# (1) Time to a usable tree.
bench mount "$umnt" "$d2v mount debian $mnt && ls $mnt >/dev/null"
bench extract "rm -rf $tree && mkdir $tree" "tar --numeric-owner -xpf $image -C $tree"
# The same, including writing the extracted tree back to disk.
bench extract_sync "rm -rf $tree && mkdir $tree && sync" "tar --numeric-owner -xpf $image -C $tree && sync -f $tree"
paths=$(find "$tree" | wc -l)
files=$(find "$tree" -type f | wc -l)
bytes=$(du -sb --apparent-size "$tree" | cut -f1)

# (2) Read every file; (3) stat every path.
read_all='find %s -type f -exec cat {} + > /dev/null'
stat_all="find %s -printf '%%m %%u %%s\\n' > /dev/null"
for op in read stat; do
  [ $op = read ] && fmt=$read_all || fmt=$stat_all
  # shellcheck disable=SC2059
  on_mnt=$(printf "$fmt" "$mnt")
  # shellcheck disable=SC2059
  on_tree=$(printf "$fmt" "$tree")
  bench "${op}_mount_cold" "$umnt; $drop; $d2v mount debian $mnt" "$on_mnt"
  bench "${op}_tree_cold" "$drop" "$on_tree"
  mountpoint -q "$mnt" || "$d2v" mount debian "$mnt"
  bench "${op}_mount_warm" "true" "$on_mnt" --warmup 2
  bench "${op}_tree_warm" "true" "$on_tree" --warmup 2
done
"$d2v" umount "$mnt"

ms() { awk -v s="$1" 'BEGIN{printf "%9.1f ms", s*1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%7.2fx", a/b}'; }
echo
echo "d2v mount vs tar -x: $image ($paths paths, $files files, $((bytes / 1048576)) MiB), median of $runs runs, $(nproc) CPUs, $(uname -r)"
printf '%-44s %12s %12s %9s\n' "measure" "d2v mount" "tar -x tree" "tree/mount"
row() { printf '%-44s %12s %12s %9s\n' "$1" "$(ms "$2")" "$(ms "$3")" "$(ratio "$3" "$2")"; }
row "(1) ready (mount+ls / | tar -x)" "${results[mount]}" "${results[extract]}"
row "(1) ready, tar -x incl. sync to disk" "${results[mount]}" "${results[extract_sync]}"
row "(2) read all files, cold" "${results[read_mount_cold]}" "${results[read_tree_cold]}"
row "(2) read all files, warm" "${results[read_mount_warm]}" "${results[read_tree_warm]}"
row "(3) stat all paths, cold" "${results[stat_mount_cold]}" "${results[stat_tree_cold]}"
row "(3) stat all paths, warm" "${results[stat_mount_warm]}" "${results[stat_tree_warm]}"
echo "targets: mount ready < 50 ms ($(ms "${results[mount]}")), >= 20x sooner than tar -x ($(ratio "${results[extract]}" "${results[mount]}"))"
