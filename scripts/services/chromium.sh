#!/usr/bin/env bash
# Headless Chromium (Debian's `chromium`) for the demo report's screenshot test.
# Nothing to start: `start` installs the package when it is missing (idempotent).
source "$(dirname "$0")/lib.sh"

ready() { command -v chromium >/dev/null 2>&1; }

case "${1:-start}" in
  start) ready || apt_install chromium fonts-dejavu-core ;;
  stop) ;;
  status) ready && echo "chromium $(chromium --version 2>/dev/null | awk '{print $2}') at $(command -v chromium)" ;;
  *) echo "usage: $0 start|status" >&2; exit 2 ;;
esac
