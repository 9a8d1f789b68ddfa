#!/usr/bin/env bash
# Starts every service the test suite needs (idempotent) and prints their addresses.
set -euo pipefail
here="$(dirname "$0")"
for service in postgres mariadb redis; do
  "$here/$service.sh" start
done
for service in postgres mariadb redis; do
  "$here/$service.sh" status
done
