#!/usr/bin/env bash
# Installs the Debian packages a target needs, only when something is missing.
#   base: python3-venv   node: nodejs + npm   test: chromium, ffmpeg, sox, nginx, iproute2, fonts
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
case "${1:-test}" in
  base) "${PY:-python3}" -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv) ;;
  node) have npm || need+=(nodejs npm) ;;
  test)
    have chromium || need+=(chromium)
    have ffmpeg || need+=(ffmpeg)
    have sox || need+=(sox)
    # The edge tests run a real nginx (as an unprivileged process, no service started).
    { have nginx || [ -x /usr/sbin/nginx ]; } || need+=(nginx)
    have ip || need+=(iproute2)
    # The cluster tests run a real Redis on loopback (no service started).
    have redis-server || need+=(redis-server)
    have unshare || need+=(util-linux)
    # Arabic glyphs for the pages' screenshots (Chromium draws boxes without them).
    { have fc-list && fc-list :lang=ar | grep -q .; } || need+=(fonts-noto-core)
    ;;
esac
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
