#!/usr/bin/env bash
# The whole test suite, as CI runs it (as root on a fresh Debian machine):
#   ./scripts/test.sh
# Installs what it needs, builds the shared fixtures once, then runs lint and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "test.sh: run as root (tests mount FUSE, overlayfs and loop devices)" >&2; exit 1; }
export CI=${CI:-true}
./scripts/install-deps.sh
export D2V_FIXTURES=${D2V_FIXTURES:-/var/tmp/d2v-fixtures}
./testdata/fixtures/make-fixtures.sh "$D2V_FIXTURES"
# d2v's microVM guest kernel, which `d2v run` boots by default: built once per
# machine from Debian's linux-source-6.1 and cached in /var/cache/d2v/kernel
# (a no-op when cached).
cargo build --quiet
"${CARGO_TARGET_DIR:-target}/debug/d2v" kernel build
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast -- --test-threads=2
