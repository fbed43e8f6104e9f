#!/usr/bin/env bash
# Runs every check and test of influxdb3-backup: formatting, lints, unit tests, the end-to-end
# suites over the real InfluxDB 3 data directories in ../shared/fixtures, and the shared suite
# against local S3 (SeaweedFS), Azure Blob (Azurite) and GCS (XML-API front) servers, which this
# script installs (PyPI, npm) and starts on 127.0.0.1 itself, and stops at the end.
# Usage: ./test.sh            (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d ../shared/fixtures ]; then
  echo "test.sh: ../shared/fixtures is missing: the end-to-end tests need the real data directories" >&2
  exit 1
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

export EMU_DIR=${EMU_DIR:-/tmp/ib3-emulators}
trap 'ci-emulators/down.sh >/dev/null 2>&1 || true' EXIT
ci-emulators/up.sh
# shellcheck disable=SC1091
source "$EMU_DIR/env.sh"
# Every backend is required here: a server that failed to start is a failure, never a skip.
export IB3_TEST_REQUIRE_BACKENDS=1
cargo test --workspace --locked
# The benchmark harness must not rot: a tiny run (ours, cp and aws s3 sync against the local S3
# server, two rounds, debug build), figures only.
TARGET=${CARGO_TARGET_DIR:-target}
aws_bin=$(ci-emulators/aws-cli.sh "$TARGET/bench-ci-tools")
[ -z "$aws_bin" ] || export PATH="$aws_bin:$PATH"
ci-emulators/mkbucket.sh bench-ci
cargo run --quiet --locked -p ib3-bench -- run --files 300 --tools ours,cp,aws --rounds 2 \
  --s3-bucket bench-ci --work "$TARGET/bench-ci" --ours "$TARGET/debug/influxdb3-backup"
