#!/usr/bin/env bash
# Stops the emulators started by up.sh, by their recorded PIDs only, and waits for each to
# exit (SeaweedFS takes a few seconds). Data of Azurite (in memory) is gone afterwards;
# SeaweedFS data stays in $EMU_DIR/seaweed until the next up.sh (which starts empty).
# Usage: ci-emulators/down.sh      Env: EMU_DIR (default /tmp/ib3-emulators)
set -uo pipefail
EMU_DIR=${EMU_DIR:-/tmp/ib3-emulators}
status=0
for name in gcs-shim azurite seaweed; do
  pidfile=$EMU_DIR/$name.pid
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if ! kill -0 "$pid" 2>/dev/null; then echo "down.sh: $name (pid $pid) was not running"; rm -f "$pidfile"; continue; fi
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done   # up to 10 s
  if kill -0 "$pid" 2>/dev/null; then
    echo "down.sh: $name (pid $pid) ignored SIGTERM for 10 s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { echo "down.sh: $name (pid $pid) still alive" >&2; status=1; continue; }
  fi
  rm -f "$pidfile"
  echo "down.sh: stopped $name (pid $pid)"
done
exit $status
