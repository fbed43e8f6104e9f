#!/usr/bin/env bash
# Creates Azure Blob containers in Azurite (a SharedKey-signed "Create Container" request,
# curl + openssl only). object_store never creates containers, so a test that wants a fresh
# one calls this first. An existing container is fine (409 is accepted).
# Usage: ci-emulators/mkcontainer.sh NAME...
# Env:   AZURITE_URL (default http://127.0.0.1:10000); account devstoreaccount1 with the
#        well-known public development key (the same for every Azurite).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 CONTAINER..." >&2; exit 2; }
url=${AZURITE_URL:-http://127.0.0.1:10000}
account=devstoreaccount1
key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
version=2021-08-06
hexkey=$(printf '%s' "$key" | base64 -d | od -An -v -tx1 | tr -d ' \n')

for container in "$@"; do
  date_hdr=$(LC_ALL=C TZ=GMT date '+%a, %d %b %Y %H:%M:%S GMT')
  # String to sign: verb, 11 empty standard headers (Content-Length is empty when 0),
  # the x-ms-* headers, then the canonical resource (path-style: /account/account/container).
  string_to_sign=$(printf '%s\n' PUT '' '' '' '' '' '' '' '' '' '' '' \
    "x-ms-date:$date_hdr" "x-ms-version:$version" "/$account/$account/$container")
  string_to_sign+=$'\nrestype:container'
  sig=$(printf '%s' "$string_to_sign" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | base64 -w0)
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Length: 0' \
    -H "x-ms-date: $date_hdr" -H "x-ms-version: $version" \
    -H "Authorization: SharedKey $account:$sig" "$url/$account/$container?restype=container")
  case $code in
    201) echo "mkcontainer: created $container" ;;
    409) echo "mkcontainer: $container exists" ;;
    *) echo "mkcontainer: creating container $container -> HTTP $code" >&2; exit 1 ;;
  esac
done
