#!/usr/bin/env bash
# Runs every check and test of influxdb3-backup: formatting, lints, unit tests, and the
# end-to-end suites over the real InfluxDB 3 data directories in ../shared/fixtures.
# Usage: ./test.sh            (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d ../shared/fixtures ]; then
  echo "test.sh: ../shared/fixtures is missing: the end-to-end tests need the real data directories" >&2
  exit 1
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
