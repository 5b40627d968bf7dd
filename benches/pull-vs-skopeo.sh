#!/usr/bin/env bash
# d2v pull vs the peers' way of getting a registry image ready to use, from a
# local registry (Debian's docker-registry on loopback, so the network is not
# what is measured): the debootstrapped Debian fixture, gzip-compressed.
#
#   sudo benches/pull-vs-skopeo.sh              (RUNS=5 by default)
#
#   d2v pull REF                     into an empty store: verified, stored,
#                                    indexed, ready for `d2v mount`/`pack`
#   skopeo copy docker://REF oci:DIR the download alone (no unpacking)
#   skopeo copy + umoci unpack       download and unpack into a rootfs tree
#   buildah pull REF                 into empty containers-storage (vfs)
#
# And the other way, pushing the same image (stored uncompressed) to a new
# repository, gzip-compressing on the way:
#   d2v push NAME REF                from a store that imported the fixture
#   skopeo copy oci:DIR docker://REF --dest-compress-format gzip, from d2v's
#                                    store (an OCI layout, layers uncompressed)
#
# With D2V_BASELINE=/path/to/another/d2v (say, main's release build), its pull
# and push run in the same session, right after this build's, and a last table
# compares the two (to hold a change to "within 5% of today's figures").
#
# Prints medians (hyperfine) and ratios; asserts nothing. Needs root,
# docker-registry, skopeo, umoci, buildah, hyperfine, jq, cargo.
# Env: RUNS, D2V_FIXTURES, CARGO_TARGET_DIR, BENCH_TMP (default /var/tmp),
# D2V_BASELINE.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for t in docker-registry skopeo umoci buildah hyperfine jq cargo curl; do
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
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
log:
  level: error
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
cleanup() {
  kill "$registry_pid" 2>/dev/null || true
  buildah --root "$work/bstore" --runroot "$work/brun" --storage-driver vfs rmi -a -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done

ref=127.0.0.1:$port/debian:bookworm
echo "seeding $ref (gzip) ..." >&2
skopeo copy -q --dest-tls-verify=false --dest-compress-format gzip --dest-compress \
  "oci:$fixtures/debian-oci:bookworm" "docker://$ref"
bytes=$(skopeo inspect --tls-verify=false --raw "docker://$ref" | jq '[.layers[].size] | add')
echo "image: $ref, $bytes compressed layer bytes" >&2

declare -A results
bench() {
  local name=$1 prepare=$2 cmd=$3 json=$work/$1.json
  hyperfine --style none --runs "$runs" --export-json "$json" --prepare "$prepare" "$cmd" >&2
  results[$name]=$(jq '.results[0].median' "$json")
}

bench d2v "rm -rf $work/d2v" "D2V_HOME=$work/d2v $d2v pull $ref >/dev/null"
base=${D2V_BASELINE:-}
if [ -n "$base" ]; then
  bench base "rm -rf $work/base" "D2V_HOME=$work/base $base pull $ref >/dev/null"
fi
bench skopeo "rm -rf $work/oci" "skopeo copy -q --src-tls-verify=false docker://$ref oci:$work/oci:x"
bench umoci "rm -rf $work/oci $work/bundle" \
  "skopeo copy -q --src-tls-verify=false docker://$ref oci:$work/oci:x && umoci unpack --image $work/oci:x $work/bundle >/dev/null"
bench buildah "buildah --root $work/bstore --runroot $work/brun --storage-driver vfs rmi -a -f >/dev/null 2>&1 || true" \
  "buildah --root $work/bstore --runroot $work/brun --storage-driver vfs pull -q --tls-verify=false docker://$ref >/dev/null"

# Push: a fresh repository per run, so every blob is uploaded (d2v also gets a
# fresh store, else it would mount the blobs it pushed before across repos).
bench d2v_push "rm -rf $work/push && D2V_HOME=$work/push $d2v import oci:$fixtures/debian-oci:bookworm --as debian >/dev/null" \
  "D2V_HOME=$work/push $d2v push debian 127.0.0.1:$port/d2v-\$(date +%s%N):1 >/dev/null 2>&1"
if [ -n "$base" ]; then
  bench base_push "rm -rf $work/bpush && D2V_HOME=$work/bpush $base import oci:$fixtures/debian-oci:bookworm --as debian >/dev/null" \
    "D2V_HOME=$work/bpush $base push debian 127.0.0.1:$port/base-\$(date +%s%N):1 >/dev/null 2>&1"
fi
# skopeo remembers where it saw each blob (its blob-info cache) and would mount
# the seeded gzip blob instead of compressing: forget that before each run.
bench skopeo_push "rm -f /var/lib/containers/cache/blob-info-cache-v1.*" \
  "skopeo copy -q --dest-tls-verify=false --dest-compress-format gzip --dest-compress oci:$work/push:debian docker://127.0.0.1:$port/sk-\$(date +%s%N):1"

printf '\n%-34s %10s %10s\n' "pull of $ref" "seconds" "peer/d2v"
row() { printf '%-34s %10.3f %10.2f\n' "$1" "${results[$2]}" "$(echo "${results[$2]} / ${results[d2v]}" | bc -l)"; }
row "d2v pull (stored, indexed)" d2v
row "skopeo copy (download only)" skopeo
row "skopeo copy + umoci unpack" umoci
row "buildah pull (vfs)" buildah

printf '\n%-34s %10s %10s\n' "push of the same image" "seconds" "peer/d2v"
printf '%-34s %10.3f %10.2f\n' "d2v push (gzip)" "${results[d2v_push]}" 1
printf '%-34s %10.3f %10.2f\n' "skopeo copy --dest-compress" "${results[skopeo_push]}" \
  "$(echo "${results[skopeo_push]} / ${results[d2v_push]}" | bc -l)"

if [ -n "$base" ]; then
  printf '\n%-34s %10s %10s %8s\n' "this build vs $(basename "$base")" "this (s)" "base (s)" "change"
  cmp() { printf '%-34s %10.3f %10.3f %+7.1f%%\n' "$1" "${results[$2]}" "${results[$3]}" \
    "$(echo "(${results[$2]} / ${results[$3]} - 1) * 100" | bc -l)"; }
  cmp "d2v pull" d2v base
  cmp "d2v push" d2v_push base_push
fi
