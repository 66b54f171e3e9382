#!/usr/bin/env bash
# `nginx -t` on k8s/nginx.conf, offline (make deploy-check).
#
# nginx resolves upstream host names when it loads its configuration, and app1..app3 exist only beside
# the real app servers; it also loads the TLS certificate. So the test runs on a temporary copy in which
# app1..app3 are 127.0.0.1:8001..8003, next to a throwaway self-signed certificate. The committed file
# is left as it is.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
conf="$here/nginx.conf"

for tool in nginx openssl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "nginx-check: '$tool' not found; install it from Debian: apt-get install --no-install-recommends $tool" >&2
    exit 1
  fi
done

# The committed file must name the guide's three app servers, and nothing else may need resolving.
servers=$(grep -cE '^[[:space:]]*server[[:space:]]+app[1-3]:8000[[:space:];]' "$conf" || true)
if [ "$servers" -ne 3 ]; then
  echo "nginx-check: expected the upstream servers app1:8000, app2:8000 and app3:8000 in $conf" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tls"

sed -E 's/^([[:space:]]*server[[:space:]]+)app([1-3]):8000/\1127.0.0.1:800\2/' "$conf" >"$work/nginx.conf"
if grep -qE '^[[:space:]]*server[[:space:]]+app[0-9]' "$work/nginx.conf"; then
  echo "nginx-check: an upstream server name was left unsubstituted" >&2
  exit 1
fi

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj "/CN=apm.example.com" -keyout "$work/tls/tls.key" -out "$work/tls/tls.crt" 2>/dev/null

# -p: a prefix of our own, -e: errors to stderr, so nothing outside $work is written or needed.
nginx -t -q -p "$work/" -e stderr -c "$work/nginx.conf"
echo "nginx-check: $conf is valid (nginx $(nginx -v 2>&1 | sed 's|.*/||'))"
