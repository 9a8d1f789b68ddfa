#!/usr/bin/env bash
# Stops every service started by up.sh.
set -euo pipefail
here="$(dirname "$0")"
for service in redis mariadb postgres; do
  "$here/$service.sh" stop
done
