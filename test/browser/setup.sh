#!/bin/sh
# Installs Debian's chromium for the dashboard's browser tests when it is missing (Playwright cannot download
# browsers on this closed network). Prints the browser's path on success; exits non-zero with one line otherwise.
# Quick and idempotent: with Chromium in place it only asks for its version. MESHFARM_TEST_CHROMIUM names
# another browser binary (a test of the skip path points it at nothing).
set -eu
BROWSER=${MESHFARM_TEST_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$BROWSER" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: chromium is missing and installing it needs root (apt-get install chromium)" >&2
    exit 2
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: chromium is missing and this machine has no apt-get" >&2
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  # An old or empty package list finds no chromium: refresh it once, quietly.
  apt-get update -qq >/dev/null 2>&1 || true
  if ! apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1; then
    echo "setup: apt-get install chromium failed" >&2
    exit 3
  fi
fi
"$BROWSER" --version >/dev/null 2>&1 || { echo "setup: $BROWSER does not start" >&2; exit 4; }
echo "$BROWSER"
