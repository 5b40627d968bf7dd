#!/usr/bin/env bash
# `d2v pack --from-tar` against path depth: tars of N nested directories (one
# file at the bottom), packed with --from-tar, and for comparison imported and
# packed from the store (`pack NAME`). Prints seconds; asserts nothing. The
# tars grow with the square of N (every entry names its whole path), so
# linear means: time proportional to the tar's size.
#
# usage: benches/pack-deep-tar.sh [DEPTH...]   (default: 1000 2000 4000 10000)
# env:   D2V=path/to/d2v (default: target/release/d2v, built if missing)
#        WORK=scratch dir (default: /var/tmp); TIMEOUT=seconds per pack (300)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
D2V=${D2V:-${CARGO_TARGET_DIR:-$here/target}/release/d2v}
WORK=$(mktemp -d "${WORK:-/var/tmp}/d2v-deep-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
command -v python3 >/dev/null || { echo "needs python3 (to write the tars)" >&2; exit 1; }
[[ -x $D2V ]] || (cd "$here" && cargo build --release -p d2v)
depths=("$@")
[[ ${#depths[@]} -gt 0 ]] || depths=(1000 2000 4000 10000)

now() { date +%s.%N; }
printf '%8s %12s %14s %10s %12s\n' depth "tar bytes" "--from-tar s" "import s" "pack NAME s"
for n in "${depths[@]}"; do
    tar=$WORK/deep$n.tar
    python3 - "$n" "$tar" <<'PY'
import io, sys, tarfile
n, out = int(sys.argv[1]), sys.argv[2]
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    p = ""
    for i in range(n):
        p = p + "/a" if p else "a"
        ti = tarfile.TarInfo(p); ti.type = tarfile.DIRTYPE; ti.mode = 0o755; ti.mtime = 1700000000
        t.addfile(ti)
    ti = tarfile.TarInfo(p + "/file"); ti.size = 7; ti.mtime = 1700000000
    t.addfile(ti, io.BytesIO(b"bottom\n"))
PY
    t0=$(now)
    if timeout "${TIMEOUT:-300}" "$D2V" pack --from-tar "$tar" -o "$WORK/t.ext4" >/dev/null; then
        from_tar=$(printf '%.2f' "$(echo "$(now) - $t0" | bc)")
    else
        from_tar=">${TIMEOUT:-300}"
    fi
    export D2V_HOME=$WORK/home
    t0=$(now)
    "$D2V" import "rootfs:$tar" --as deep >/dev/null 2>&1
    t1=$(now)
    "$D2V" pack deep -o "$WORK/n.ext4" >/dev/null
    t2=$(now)
    printf '%8s %12s %14s %10.2f %12.2f\n' "$n" "$(stat -c %s "$tar")" "$from_tar" \
        "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)"
    rm -rf "$WORK/home" "$WORK"/*.ext4 "$tar"
done
