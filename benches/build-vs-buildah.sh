#!/usr/bin/env bash
# End-to-end comparison: `d2v build` + `d2v pack` against
# `buildah bud --isolation chroot --layers` + an ext4 export, on examples/hello
# (a multi-stage Debian build that compiles a static C program with gcc).
#
#   benches/build-vs-buildah.sh            (as root; prints a table and ratios)
#
# Environment: D2V=path/to/d2v (default: builds it with `cargo build --release`),
# D2V_FIXTURES (default /var/tmp/d2v-fixtures), BENCH_TMP (default /var/tmp),
# RUNS (repetitions of the warm scenarios, median reported; default 3),
# BUILDAH_DRIVER (buildah storage driver; default overlay, buildah's default for root),
# D2V_BASELINE=path/to/another/d2v (e.g. main's release build): timed in the same
# run, in its own store, as the row "base", so a change is measured against
# today's figures under the same load,
# ROOTLESS_USER=NAME: also time d2v run as that ordinary user (it needs a range
# in /etc/subuid and /etc/subgid) in a store it owns, as the row "rootless"
# (compared with the baseline's root row: a d2v from before rootless support
# cannot build as an ordinary user at all).
#
# Scenarios, each "build, then pack into an ext4 image":
#   cold     first build of an empty store (downloads gcc from Debian's mirror)
#   noop     rebuild with nothing changed
#   onefile  rebuild after editing hello.c (the COPY and everything after it rerun)
# buildah's export: `buildah from` + `buildah mount` (a plain overlay mount, no
# copy) then `mkfs.ext4 -d MNT` into a file sized at 1.25 x `du` + 64 MiB, then
# `resize2fs -M` to shrink it. That is the fastest fair path we found: it reads
# the merged tree once and writes one image, like `d2v pack`; pushing to an
# oci-archive first would add a tar+gzip round trip.
# Asserts nothing: targets (no-op rebuild + pack <= 0.5 s; one-file rebuild +
# pack <= 1/4 of buildah's) are read off the table.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
repo=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-3}
fix=${D2V_FIXTURES:-/var/tmp/d2v-fixtures}
driver=${BUILDAH_DRIVER:-overlay}
for tool in buildah mkfs.ext4 resize2fs; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
[ -e "$fix/debian.tar" ] || "$repo/testdata/fixtures/make-fixtures.sh" "$fix"
if [ -z "${D2V:-}" ]; then
  (cd "$repo" && cargo build --release -q -p d2v --bin d2v)
  D2V=${CARGO_TARGET_DIR:-$repo/target}/release/d2v
fi

work=$(mktemp -d "${BENCH_TMP:-/var/tmp}/d2v-bench.XXXXXX")
chmod 755 "$work"   # the rootless user reads the context and runs the copied binaries
export D2V_HOME=$work/d2v-store
B=(buildah --root "$work/buildah/root" --runroot "$work/buildah/runroot" --storage-driver "$driver")
export BUILDAH_ISOLATION=chroot
cleanup() {
  "${B[@]}" rm --all >/dev/null 2>&1 || true
  "${B[@]}" rmi --all --force >/dev/null 2>&1 || true
  mountpoint -q "$work/buildah/root/overlay" 2>/dev/null && umount "$work/buildah/root/overlay" || true
  rm -rf "$work"
}
trap cleanup EXIT
cp -r "$repo/examples/hello" "$work/ctx"
chmod -R a+rX "$work/ctx"

# The d2v variants timed: name, binary, user (empty: root), store.
d2v_tools=(d2v)
declare -A BIN RUNAS STORE
BIN[d2v]=$D2V; RUNAS[d2v]=""; STORE[d2v]=$D2V_HOME
add_tool() { # add_tool NAME BINARY USER
  local name=$1 bin=$2 user=$3
  mkdir -p "$work/bin-$name" && cp "$bin" "$work/bin-$name/d2v" && chmod -R a+rX "$work/bin-$name"
  BIN[$name]=$work/bin-$name/d2v; RUNAS[$name]=$user; STORE[$name]=$work/store-$name
  mkdir -p "${STORE[$name]}"
  [ -z "$user" ] || chown "$user:" "${STORE[$name]}"
  d2v_tools+=("$name")
}
[ -z "${D2V_BASELINE:-}" ] || add_tool base "$D2V_BASELINE" ""
if [ -n "${ROOTLESS_USER:-}" ]; then
  add_tool rootless "$D2V" "$ROOTLESS_USER"
fi
# dv TOOL ARGS...: runs that d2v variant (as its user, with its store).
dv() {
  local t=$1; shift
  if [ -n "${RUNAS[$t]}" ]; then
    runuser -u "${RUNAS[$t]}" -- env -i PATH=/usr/bin:/bin HOME="/home/${RUNAS[$t]}" \
      D2V_HOME="${STORE[$t]}" "${BIN[$t]}" "$@"
  else
    D2V_HOME="${STORE[$t]}" "${BIN[$t]}" "$@"
  fi
}

# Every tool gets the same base image under the name the Dockerfile uses.
for t in "${d2v_tools[@]}"; do
  dv "$t" import "oci:$fix/debian-oci:bookworm" --as debian:bookworm >/dev/null
done
id=$("${B[@]}" pull -q "oci:$fix/debian-oci:bookworm")
"${B[@]}" tag "$id" docker.io/library/debian:bookworm

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc -l; }

d2v_build() { dv "$1" build -t hello --progress plain "$work/ctx" 2>&1 | tee "$work/$1-build.log" >>"$work/$1.log"; }
# `d2v pack` reuses its output when it already holds this very image (the no-op
# case); FRESH_PACK=1 deletes it first so every pack writes the image anew.
d2v_pack() {
  local out="${STORE[$1]}/out.ext4"
  [ -z "${FRESH_PACK:-}" ] || rm -f "$out"
  dv "$1" pack hello -o "$out" >>"$work/$1.log" 2>&1
}
buildah_build() {
  "${B[@]}" bud --isolation chroot --layers -t hello "$work/ctx" >>"$work/buildah.log" 2>&1
}
buildah_export() {
  local ctr mnt kib
  ctr=$("${B[@]}" from -q hello)
  mnt=$("${B[@]}" mount "$ctr")
  kib=$(du -sk --apparent-size "$mnt" | cut -f1)
  rm -f "$work/buildah.ext4"
  mkfs.ext4 -q -F -d "$mnt" "$work/buildah.ext4" "$(( kib * 5 / 4 + 65536 ))k" >/dev/null
  resize2fs -M "$work/buildah.ext4" >/dev/null 2>&1
  "${B[@]}" unmount "$ctr" >/dev/null
  "${B[@]}" rm "$ctr" >/dev/null
}

declare -A T
# cpu: user+sys seconds of this shell's waited-for descendants so far (bash
# `times`); a phase's CPU is the difference. Wall time on a loaded machine is
# mostly waiting for a core, so both are shown.
secs() { local m=${1%%m*} r=${1#*m}; echo "$m * 60 + ${r%s}" | bc -l; }
cpu() { # sets CPU; `times` runs in this shell (a $(...) would be a fresh process)
  local _ _ cu cs
  times >"$work/times"
  { read -r _ _; read -r cu cs; } <"$work/times"
  CPU=$(echo "$(secs "$cu") + $(secs "$cs")" | bc -l)
}
# measure TOOL: times build and pack/export once; prints "build pack build-cpu pack-cpu".
measure() {
  local tool=$1 t0 c0 b p bc pc
  echo "== $tool $scenario_name" >>"$work/$tool.log"
  cpu; c0=$CPU; t0=$(now)
  if [ "$tool" = buildah ]; then buildah_build; else d2v_build "$tool"; fi >/dev/null
  b=$(elapsed "$t0"); cpu; bc=$(echo "$CPU - $c0" | bc -l)
  c0=$CPU; t0=$(now)
  if [ "$tool" = buildah ]; then buildah_export; else d2v_pack "$tool"; fi >/dev/null
  p=$(elapsed "$t0"); cpu; pc=$(echo "$CPU - $c0" | bc -l)
  echo "build $b pack $p build-cpu $bc pack-cpu $pc" >>"$work/$tool.log"
  echo "$b $p $bc $pc"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
edit() { echo "/* edit $1 $RANDOM */" >> "$work/ctx/hello.c"; }

# scenario NAME TOOL: runs it (RUNS times for warm ones) and records medians.
scenario() {
  local name=$1 tool=$2 n=$runs i r k
  local -a bs=() ps=() bcs=() pcs=()
  [ "$name" = cold ] && n=1
  scenario_name=$name
  for ((i = 0; i < n; i++)); do
    [ "$name" = onefile ] && edit "$tool$i"
    read -r -a r <<<"$(measure "$tool")"
    bs+=("${r[0]}"); ps+=("${r[1]}"); bcs+=("${r[2]}"); pcs+=("${r[3]}")
  done
  T[$name.$tool.build]=$(printf '%s\n' "${bs[@]}" | median)
  T[$name.$tool.pack]=$(printf '%s\n' "${ps[@]}" | median)
  T[$name.$tool.bcpu]=$(printf '%s\n' "${bcs[@]}" | median)
  T[$name.$tool.pcpu]=$(printf '%s\n' "${pcs[@]}" | median)
}

for s in cold noop onefile; do
  for t in "${d2v_tools[@]}"; do scenario "$s" "$t"; done
  scenario "$s" buildah
done

printf '\nexamples/hello, %s runs per warm scenario (median), buildah driver %s, FRESH_PACK=%s\n' \
  "$runs" "$driver" "${FRESH_PACK:-}"
# table KIND: one row per scenario and d2v variant; KIND is wall (build/pack) or cpu (bcpu/pcpu).
table() {
  local b=build p=pack
  [ "$1" = cpu ] && b=bcpu p=pcpu
  printf '%-9s %-14s %10s %10s %10s   %10s %10s %10s   %7s\n' scenario d2v variant build pack total \
    bld-build bld-export bld-total ratio
  for s in cold noop onefile; do
    for t in "${d2v_tools[@]}"; do
      db=${T[$s.$t.$b]} dp=${T[$s.$t.$p]} bb=${T[$s.buildah.$b]} bp=${T[$s.buildah.$p]}
      dt=$(echo "$db + $dp" | bc -l) bt=$(echo "$bb + $bp" | bc -l)
      printf '%-9s %-14s %10.3f %10.3f %10.3f   %10.3f %10.3f %10.3f   %7.3f\n' "$s" "$t" "$db" "$dp" \
        "$dt" "$bb" "$bp" "$bt" "$(echo "$dt / $bt" | bc -l)"
    done
  done
}
table wall
printf '\nCPU seconds (user+sys of the processes, median):\n'
table cpu
if [ -n "${D2V_BASELINE:-}" ]; then
  printf '\nagainst the baseline (d2v total / base total, same run):\n'
  for s in cold noop onefile; do
    for pair in d2v:base rootless:base; do
      a=${pair%%:*} b=${pair#*:}
      [ -n "${T[$s.$a.build]:-}" ] && [ -n "${T[$s.$b.build]:-}" ] || continue
      at=$(echo "${T[$s.$a.build]} + ${T[$s.$a.pack]}" | bc -l)
      bt=$(echo "${T[$s.$b.build]} + ${T[$s.$b.pack]}" | bc -l)
      printf '%-9s %-24s %7.3f\n' "$s" "$a/$b" "$(echo "$at / $bt" | bc -l)"
    done
  done
fi
printf 'load average at the end: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '\nratio = d2v total / buildah total (lower is better for d2v)\n'
printf 'targets: noop d2v total <= 0.5 s; onefile ratio <= 0.25\n'
printf 'image sizes: d2v %s bytes, buildah %s bytes\n' \
  "$(stat -c %s "${STORE[d2v]}/out.ext4")" "$(stat -c %s "$work/buildah.ext4")"
printf 'last d2v build log:\n'; tail -n 3 "$work/d2v-build.log"
# BENCH_LOGS=DIR keeps every build's output (d2v's per-step times) for analysis.
if [ -n "${BENCH_LOGS:-}" ]; then mkdir -p "$BENCH_LOGS" && cp "$work"/*.log "$BENCH_LOGS/"; fi
