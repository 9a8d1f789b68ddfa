#!/usr/bin/env bash
# Stops every service started by up.sh.
set -euo pipefail
here="$(dirname "$0")"
"$here/kafka.sh" stop cluster
for service in toxiproxy rocketmq rabbitmq kafka redis mariadb postgres; do
  "$here/$service.sh" stop
done
