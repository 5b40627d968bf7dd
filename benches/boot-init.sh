#!/bin/bash
# `d2v run` against `podman --runtime runc run`, same images, same machine, same run:
#
#   benches/boot-init.sh [RUNS]        (default 5 runs each; the mean is printed)
#
#   1. wall time of a trivial run (busybox `true`), and where the VM's part goes:
#      kernel start -> init -> entrypoint exec (d2v-init's CLOCK_BOOTTIME stamps)
#   2. stdout throughput: 64 MiB written by the entrypoint, read by the host
#   3. the edit -> rebuild -> pack -> boot-to-entrypoint loop of examples/hello
#      after a one-line change to hello.c (d2v build + d2v run vs podman build +
#      podman run)
#
# Needs: a built d2v (cargo build), busybox-static, qemu-system-x86, qemu-utils,
# podman + runc, skopeo, the fixtures (testdata/fixtures/make-fixtures.sh) for 3.
# The kernel is `d2v kernel build`'s when built, else Debian's (much slower).
set -euo pipefail
RUNS=${1:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
D2V=${D2V:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/d2v}
FIXTURES=${D2V_FIXTURES:-/var/tmp/d2v-fixtures}
[ -x "$D2V" ] || { echo "build d2v first (cargo build): $D2V not found" >&2; exit 1; }
W=$(mktemp -d)
export D2V_HOME=$W/store
PODMAN=(podman --root "$W/podman/root" --runroot "$W/podman/run")
PODRUN=("${PODMAN[@]}" --runtime runc run --rm --network none
        --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
cleanup() { "${PODMAN[@]}" rm -af >/dev/null 2>&1 || true; "${PODMAN[@]}" rmi -af >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
echo "kernel: $("$D2V" kernel path)"

# The trivial image: busybox, for both.
R=$W/root
mkdir -p $R/{bin,sbin,etc/d2v,dev,proc,sys,run,tmp,root}
cp "$(command -v busybox)" $R/bin/busybox
for a in sh true head cat; do ln -s busybox $R/bin/$a; done
echo 'root:x:0:0:root:/root:/bin/sh' > $R/etc/passwd
echo 'root:x:0:' > $R/etc/group
tar -C $R -cf $W/root.tar .
"${PODMAN[@]}" import --change 'ENTRYPOINT ["/bin/true"]' $W/root.tar bench-true:1 >/dev/null
"$D2V" import "rootfs:$W/root.tar" --as bench-base >/dev/null
mkdir -p $W/ctx
printf 'FROM bench-base\nENTRYPOINT ["/bin/true"]\n' > $W/ctx/Dockerfile
"$D2V" build -t bench-true --progress plain $W/ctx >/dev/null 2>&1

now() { date +%s.%N; }
mean() { awk '{s+=$1} END {printf "%.3f", s/NR}'; }
time_cmd() { local t0 t1; t0=$(now); "$@" >/dev/null 2>&1 || true; t1=$(now); echo "$t1 - $t0" | bc -l; }

"$D2V" run bench-true --network none >/dev/null 2>&1 || true   # pack once
echo
echo "== 1. trivial run, wall (mean of $RUNS)"
for i in $(seq "$RUNS"); do time_cmd "$D2V" run bench-true; done | mean > $W/d2v
for i in $(seq "$RUNS"); do time_cmd "$D2V" run --network none bench-true; done | mean > $W/d2vnn
for i in $(seq "$RUNS"); do time_cmd "${PODRUN[@]}" bench-true:1; done | mean > $W/pod
printf 'd2v run:                   %s s\nd2v run --network none:    %s s\npodman --runtime runc run: %s s\n' \
  "$(cat $W/d2v)" "$(cat $W/d2vnn)" "$(cat $W/pod)"
stamps=$("$D2V" run --debug bench-true 2>&1 >/dev/null | tr -d '\r')
printf 'guest clock (kernel start = 0): init started %s s, entrypoint exec %s s\n' \
  "$(echo "$stamps" | sed -n 's/^d2v-init: \[\([0-9.]*\)\] init started/\1/p' | tail -1)" \
  "$(echo "$stamps" | sed -n 's/^d2v-init: \[\([0-9.]*\)\] exec .*/\1/p' | tail -1)"

echo
echo "== 2. stdout throughput: 64 MiB from the entrypoint to the host"
MB=64
tp() { # prints MB/s of "$@" writing $MB MiB, its trivial run's time subtracted
  local t; t=$(time_cmd sh -c "\"\$@\" -c 'head -c $((MB << 20)) /dev/zero' | wc -c" sh "$@"); echo "$t"; }
d_total=$(tp "$D2V" run --entrypoint /bin/sh bench-true --)
p_total=$(tp "${PODRUN[@]}" --entrypoint /bin/sh bench-true:1)
printf 'd2v run: %.1f MB/s (%.2f s total, %.2f s of it booting)\n' \
  "$(echo "$MB / ($d_total - $(cat $W/d2v))" | bc -l)" "$d_total" "$(cat $W/d2v)"
printf 'podman:  %.1f MB/s (%.2f s total)\n' \
  "$(echo "$MB / ($p_total - $(cat $W/pod))" | bc -l)" "$p_total"

echo
echo "== 3. edit -> rebuild -> pack -> boot loop, examples/hello"
if [ ! -d "$FIXTURES/debian-oci" ]; then
  echo "skipped: no $FIXTURES/debian-oci (testdata/fixtures/make-fixtures.sh)"; exit 0
fi
"$D2V" import "oci:$FIXTURES/debian-oci:bookworm" --as debian:bookworm >/dev/null
skopeo copy -q "oci:$FIXTURES/debian-oci:bookworm" \
  "containers-storage:[overlay@$W/podman/root+$W/podman/run]docker.io/library/debian:bookworm" >/dev/null
cp -r "$ROOT/examples/hello" $W/hello
"$D2V" build -t hello --progress plain $W/hello >/dev/null 2>&1
"${PODMAN[@]}" build --runtime runc -q -t hello:1 $W/hello >/dev/null 2>&1
"$D2V" run hello >/dev/null 2>&1 || true
loop=0
for i in $(seq "$RUNS"); do
  echo "/* edit $i */" >> $W/hello/hello.c
  t0=$(now)
  "$D2V" build -t hello --progress plain $W/hello >/dev/null 2>&1
  "$D2V" run hello >/dev/null 2>&1 || true
  t1=$(now)
  "${PODMAN[@]}" build --runtime runc -q -t hello:1 $W/hello >/dev/null 2>&1
  "${PODRUN[@]}" hello:1 >/dev/null 2>&1 || true
  t2=$(now)
  echo "$(echo "$t1 - $t0" | bc -l) $(echo "$t2 - $t1" | bc -l)" >> $W/loop
done
printf 'd2v build + d2v run:       %s s\n' "$(awk '{print $1}' $W/loop | mean)"
printf 'podman build + podman run: %s s\n' "$(awk '{print $2}' $W/loop | mean)"
