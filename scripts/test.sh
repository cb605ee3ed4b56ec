#!/usr/bin/env bash
# Runs pytest inside a loopback-only network namespace when the machine allows it, so every
# WebRTC and HTTP packet of the tests stays on 127.0.0.1 and nothing can reach a network.
set -euo pipefail
cd "$(dirname "$0")/.."
args=(-p no:cacheprovider)
if [ "${1:-}" = "--bench" ]; then
  shift
  cmd=(.venv/bin/python -m bench "$@")
else
  cmd=(.venv/bin/pytest "${args[@]}" "$@")
fi
if unshare -n true 2>/dev/null; then
  exec unshare -n sh -c 'ip link set lo up && exec "$@"' _ "${cmd[@]}"
fi
echo "note: cannot make a network namespace here; tests offer only 127.0.0.1 ICE candidates"
exec "${cmd[@]}"
