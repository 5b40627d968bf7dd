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
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast -- --test-threads=2
