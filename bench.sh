#!/usr/bin/env bash
# Benchmark influxdb3-backup against cp -r, rclone copy, restic and aws s3 sync on the same
# generated InfluxDB 3 node tree, in one run; prints a table and writes JSON. Installs the tools
# of --tools that are missing (rclone and restic from Debian's packages, the AWS CLI from PyPI),
# starts the local S3 server (ci-emulators/up.sh) when `aws` is among them, builds in release
# mode, and stops the server at the end.
#
# Usage: ./bench.sh [--files N] [--profile tiny|small|realistic] [--tools ours,cp,rclone,restic,aws] [--rounds R]
#                   [--work DIR] [--json FILE]          (see: target/release/bench run --help)
# Figures only: a slow result never fails this script.
set -euo pipefail
cd "$(dirname "$0")"
BENCH_DIR=${BENCH_DIR:-/tmp/ib3-bench}
mkdir -p "$BENCH_DIR"

need_debian() {
  command -v "$1" >/dev/null && return 0
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -q "$1" >/dev/null || {
    $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$1" >/dev/null
  }
}
# The tools taking part (the bench's own default when --tools is not given).
tools=ours,cp,rclone,restic,aws
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --tools) tools=${args[$((i + 1))]:-} ;;
    --tools=*) tools=${args[$i]#--tools=} ;;
  esac
done
uses() { [[ ",$tools," == *",$1,"* ]]; }

uses rclone && need_debian rclone
uses restic && need_debian restic
if uses aws; then
  aws_bin=$(ci-emulators/aws-cli.sh "$BENCH_DIR")
  [ -z "$aws_bin" ] || export PATH="$aws_bin:$PATH"
  export EMU_DIR=${EMU_DIR:-$BENCH_DIR/emulators}
  trap 'ci-emulators/down.sh >/dev/null 2>&1 || true' EXIT
  ci-emulators/up.sh >/dev/null
  # shellcheck disable=SC1091
  source "$EMU_DIR/env.sh"
  ci-emulators/mkbucket.sh bench
fi

cargo build --release --locked -p influxdb3-backup -p ib3-bench
target/release/bench run --s3-bucket bench "$@"
