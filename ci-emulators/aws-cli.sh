#!/usr/bin/env bash
# Make the AWS CLI available: if `aws` is not on PATH, install it from PyPI into DIR/venv (once)
# and print that venv's bin directory, for the caller to put first on its PATH; print nothing
# when `aws` is already there.
# Usage: bin=$(ci-emulators/aws-cli.sh DIR) && [ -z "$bin" ] || PATH="$bin:$PATH"
set -euo pipefail
dir=${1:?usage: aws-cli.sh DIR}
command -v aws >/dev/null && exit 0
if [ ! -x "$dir/venv/bin/aws" ]; then
  mkdir -p "$dir"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet awscli >&2
fi
echo "$dir/venv/bin"
