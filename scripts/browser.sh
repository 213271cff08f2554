#!/usr/bin/env bash
# The web chat's end-to-end test drives Debian's Chromium (Playwright uses it as is; it
# never downloads a browser of its own). Installs it when missing.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "browser: installing Debian's chromium"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
