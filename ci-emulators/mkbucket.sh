#!/usr/bin/env bash
# Create S3/GCS buckets on the local SeaweedFS, through the GCS shim (which signs the request).
# Usage: ci-emulators/mkbucket.sh NAME...
set -euo pipefail
for name in "$@"; do
  curl -sf -X PUT "http://127.0.0.1:4443/${name}" >/dev/null || {
    echo "mkbucket: creating bucket ${name} failed (are the emulators up? ci-emulators/up.sh)" >&2
    exit 1
  }
done
