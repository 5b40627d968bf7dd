#!/usr/bin/env bash
# Pack speed and size: `d2v pack --from-dir` against `mkfs.ext4 -d` at the
# exact minimal size, and against `cat` of all file data into one file (the
# physical limit of copying the bytes once). Prints ratios; asserts nothing.
# Size lines: image / data bytes, the floor that whole 4 KiB blocks set, and
# the writer's metadata overhead (the <= 3% target); see benches/README.md.
#
# usage: benches/pack-vs-mkfs.sh [TREE]   (default: a copy of /usr)
# env:   D2V=path/to/d2v (default: target/release/d2v, built if missing)
#        WORK=scratch dir on a real disk (default: /var/tmp)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
D2V=${D2V:-${CARGO_TARGET_DIR:-$here/target}/release/d2v}
WORK=$(mktemp -d "${WORK:-/var/tmp}/d2v-bench-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

if [[ ! -x $D2V ]]; then
    (cd "$here" && cargo build --release -p d2v)
fi

tree=${1:-}
if [[ -z $tree ]]; then
    tree=$WORK/tree
    echo "copying /usr to $tree ..." >&2
    cp -a /usr "$tree"
fi

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

# Regular files, one name per inode: hard links are stored once by both
# packers, so `cat` copies each file's bytes once too (/usr has git-core's
# hundred names for one binary).
list=$WORK/files.list
find "$tree" -type f -printf '%i %p\0' \
    | perl -0ne 'my ($i, $p) = split / /, $_, 2; print $p unless $seen{$i}++' > "$list"
files=$(tr -cd '\0' < "$list" | wc -c)
sizes=$(xargs -0 stat -c %s < "$list")
data=$(awk '{s+=$1} END {printf "%.0f\n", s}' <<< "$sizes")
# The same files rounded up to whole 4 KiB blocks: what any block-based
# ext4 stores for them (inline data saves the smallest files' blocks).
data_blocks=$(awk '{s+=int(($1+4095)/4096)*4096} END {printf "%.0f\n", s}' <<< "$sizes")
echo "tree: $tree, $files files (one name per inode), $data data bytes ($data_blocks in whole 4 KiB blocks)"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"

# Warm the page cache for all three, so they all read from memory.
xargs -0 cat < "$list" > /dev/null

# 1. cat of every file into one file: the physical limit.
t0=$(now)
xargs -0 cat < "$list" > "$WORK/all.bin"
sync -f "$WORK/all.bin"
t1=$(now)
cat_s=$(secs "$t0" "$t1")
rm -f "$WORK/all.bin"

# 2. d2v pack, no journal, no free space.
drop_caches
xargs -0 cat < "$list" > /dev/null
t0=$(now)
"$D2V" pack --from-dir "$tree" -o "$WORK/d2v.ext4" --no-journal --free 0 > "$WORK/d2v.out"
sync -f "$WORK/d2v.ext4"
t1=$(now)
d2v_s=$(secs "$t0" "$t1")
d2v_bytes=$(stat -c %s "$WORK/d2v.ext4")
cat "$WORK/d2v.out"
e2fsck -fn "$WORK/d2v.ext4" > /dev/null 2>&1 && echo "d2v image: e2fsck -fn clean" || echo "d2v image: e2fsck -fn FAILED"
# The writer's own figure: metadata beyond data blocks, journal and free space.
d2v_overhead=$(sed -n 's/.*overhead \([0-9.]*\)%.*/\1/p' "$WORK/d2v.out")
rm -f "$WORK/d2v.ext4"

# 2b. The same without inline data (every file and directory in blocks).
"$D2V" pack --from-dir "$tree" -o "$WORK/d2v-noinline.ext4" --no-journal --free 0 --no-inline-data > /dev/null
noinline_bytes=$(stat -c %s "$WORK/d2v-noinline.ext4")
rm -f "$WORK/d2v-noinline.ext4"

# 3. mkfs.ext4 -d: timed on a roomy image (its run time hardly depends on
#    the size), then shrunk with resize2fs -M to the exact minimal size,
#    which is the size we compare against.
big=$(( data * 2 + (256 << 20) ))
truncate -s "$big" "$WORK/mkfs.ext4"
drop_caches
xargs -0 cat < "$list" > /dev/null
t0=$(now)
mkfs.ext4 -q -F -O ^has_journal -d "$tree" "$WORK/mkfs.ext4"
sync -f "$WORK/mkfs.ext4"
t1=$(now)
mkfs_s=$(secs "$t0" "$t1")
e2fsck -fy "$WORK/mkfs.ext4" > /dev/null 2>&1 || true
resize2fs -M "$WORK/mkfs.ext4" > /dev/null 2>&1
min_blocks=$(dumpe2fs -h "$WORK/mkfs.ext4" 2>/dev/null | awk -F: '/^Block count/ {gsub(/ /,"",$2); print $2}')
mkfs_bytes=$(( min_blocks * 4096 ))

printf '\n%-28s %10s %14s %12s\n' "" "seconds" "image bytes" "overhead"
printf '%-28s %10.2f %14s %12s\n' "cat (physical limit)" "$cat_s" "$data" "-"
printf '%-28s %10.2f %14s %11.2f%%\n' "d2v pack --no-journal" "$d2v_s" "$d2v_bytes" "$(echo "100 * ($d2v_bytes - $data) / $data" | bc -l)"
printf '%-28s %10s %14s %11.2f%%\n' "d2v pack --no-inline-data" "-" "$noinline_bytes" "$(echo "100 * ($noinline_bytes - $data) / $data" | bc -l)"
printf '%-28s %10.2f %14s %11.2f%%\n' "mkfs.ext4 -d, resize2fs -M" "$mkfs_s" "$mkfs_bytes" "$(echo "100 * ($mkfs_bytes - $data) / $data" | bc -l)"
echo
printf 'speed: mkfs.ext4 -d / d2v pack = %.2fx (target >= 2x)\n' "$(echo "$mkfs_s / $d2v_s" | bc -l)"
printf 'speed: d2v pack / cat          = %.2fx (target <= 1.5x)\n' "$(echo "$d2v_s / $cat_s" | bc -l)"
printf 'size:  d2v image / mkfs image  = %.4f (target < 1)\n' "$(echo "$d2v_bytes / $mkfs_bytes" | bc -l)"
printf 'size:  d2v image / data bytes  = %.4f (whole 4 KiB blocks alone: %.4f)\n' "$(echo "$d2v_bytes / $data" | bc -l)" "$(echo "$data_blocks / $data" | bc -l)"
printf 'size:  d2v image beyond whole data blocks = %.2f%% (free inode tables and all metadata)\n' "$(echo "100 * ($d2v_bytes - $data_blocks) / $data_blocks" | bc -l)"
printf 'size:  d2v metadata overhead (summary)    = %s%% (target <= 3%%)\n' "$d2v_overhead"
