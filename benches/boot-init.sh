#!/bin/bash
# Boot benchmark: d2v-init vs busybox init, same kernel, same image, same VMM.
#
#   benches/boot-init.sh [RUNS]        (default 3 runs each)
#
# Measures, per init:
#   exec  - kernel handover (the initramfs /init starting, the same d2v-init
#           initrd stage for both) -> entrypoint exec, from the guest's own clock
#           (d2v-init: its CLOCK_BOOTTIME stamp before execve; busybox: /proc/uptime
#           printed by the inittab line right before it runs the program)
#   wall  - the whole `d2v run` (host wall clock, kernel unpack/initramfs cached)
# and prints the busybox/d2v ratios. Needs: a built d2v (cargo build), gcc,
# mkfs.ext4, busybox-static, qemu-system-x86, a kernel in /boot.
set -euo pipefail
RUNS=${1:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
D2V=${D2V:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/d2v}
[ -x "$D2V" ] || { echo "build d2v first (cargo build): $D2V not found" >&2; exit 1; }
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT

gcc -static -Os -o "$W/probe" "$ROOT/testdata/run/probe.c"
R=$W/root
mkdir -p $R/{bin,sbin,etc/d2v,dev,proc,sys,run,tmp,root,usr/local/bin}
cp "$(command -v busybox)" $R/bin/busybox
for a in sh mount cut echo cat reboot; do ln -s busybox $R/bin/$a; done
ln -s ../bin/busybox $R/sbin/init
cp "$W/probe" $R/usr/local/bin/probe
# d2v-init as embedded in d2v: take it from the build output.
INIT=$(ls -t "$(dirname "$D2V")"/build/d2v-*/out/d2v-init | head -1)
install -m 755 "$INIT" $R/sbin/d2v-init
echo 'root:x:0:0:root:/root:/bin/sh' > $R/etc/passwd
echo 'root:x:0:' > $R/etc/group
echo '{"entrypoint":["/usr/local/bin/probe"],"cmd":["exit","0"]}' > $R/etc/d2v/config.json
cat > $R/etc/inittab <<'TAB'
::sysinit:/bin/sh -c 'mount -t proc proc /proc; echo "bb-init: [$(cut -d" " -f1 /proc/uptime)] exec"; /usr/local/bin/probe exit 0; reboot -f'
TAB
mkfs.ext4 -q -F -d $R $W/img.ext4 48M

now() { date +%s.%N; }
run_one() { # $1 = label, rest = extra d2v args; prints "handover->exec wall"
  local t0 t1 out ex ho
  t0=$(now)
  out=$("$D2V" run --image $W/img.ext4 --kernel-arg d2v.debug "${@:2}" 2>&1 || true)
  t1=$(now)
  if [ "$1" = d2v ]; then
    ex=$(echo "$out" | tr -d '\r' | sed -n 's/^d2v-init: \[\([0-9.]*\)\] exec .*/\1/p' | tail -1)
  else
    ex=$(echo "$out" | tr -d '\r' | sed -n 's/^bb-init: \[\([0-9.]*\)\] exec/\1/p' | tail -1)
  fi
  # Kernel handover: the initramfs /init (the same d2v-init initrd stage for both).
  ho=$(echo "$out" | tr -d '\r' | sed -n 's/^d2v-init: \[\([0-9.]*\)\] initrd started/\1/p' | tail -1)
  [ -n "$ex" ] && [ -n "$ho" ] || { echo "no stamps for $1:" >&2; echo "$out" | tail -20 >&2; exit 1; }
  echo "$(echo "$ex - $ho" | bc -l) $(echo "$t1 - $t0" | bc -l)"
}

"$D2V" run --image $W/img.ext4 >/dev/null 2>&1 || true   # warm the kernel/initramfs cache
declare -A EXEC WALL
for label in d2v busybox; do
  se=0; sw=0
  for i in $(seq "$RUNS"); do
    if [ $label = d2v ]; then r=$(run_one d2v); else r=$(run_one busybox --kernel-arg init=/sbin/init); fi
    set -- $r; se=$(echo "$se + $1" | bc -l); sw=$(echo "$sw + $2" | bc -l)
    printf '%-8s run %d: handover->exec %.3f s, d2v run %.3f s\n' $label "$i" "$1" "$2"
  done
  EXEC[$label]=$(echo "$se / $RUNS" | bc -l); WALL[$label]=$(echo "$sw / $RUNS" | bc -l)
done
printf '\nmean handover->entrypoint exec: d2v-init %.3f s, busybox init %.3f s, ratio busybox/d2v %.2f\n' \
  "${EXEC[d2v]}" "${EXEC[busybox]}" "$(echo "${EXEC[busybox]} / ${EXEC[d2v]}" | bc -l)"
printf 'mean whole d2v run:             d2v-init %.3f s, busybox init %.3f s, ratio busybox/d2v %.2f\n' \
  "${WALL[d2v]}" "${WALL[busybox]}" "$(echo "${WALL[busybox]} / ${WALL[d2v]}" | bc -l)"
