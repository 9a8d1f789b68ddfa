#!/usr/bin/env bash
# What to look at when tests against the services fail: disk space (a full disk stops brokers
# taking writes before anything else fails), which services answer, and the RocketMQ store's
# own account of itself (disk-full marks, store errors). Short enough to read at the end of a
# CI log; changes nothing. .ci/run prints it when it fails.
set -uo pipefail
here="$(dirname "$0")"
STATE_DIR="${ZEROLOST_STATE_DIR:-/var/tmp/zerolost}"

echo "== zerolost services: diagnosis =="
echo "-- disk"
df -h / "$STATE_DIR" "$STATE_DIR/rocketmq/store-fs" 2>/dev/null | awk '!seen[$0]++'
echo "-- services"
for service in postgres mariadb redis kafka rabbitmq rocketmq toxiproxy; do
  "$here/$service.sh" status 2>/dev/null || echo "$service: not answering"
done
"$here/kafka.sh" status cluster 2>/dev/null || echo "kafka cluster: not answering"
"$here/rocketmq.sh" status async 2>/dev/null || echo "rocketmq async broker: not answering"
for which in broker async; do
  logs="$STATE_DIR/rocketmq/$which/logs/rocketmqlogs"
  [ -d "$logs" ] || continue
  echo "-- rocketmq $which: disk marks and store errors (newest last)"
  grep -h "mark disk\|not writeable\|not writable" "$logs"/store.log 2>/dev/null | tail -n 5
  tail -n 5 "$logs/storeerror.log" 2>/dev/null
done
rabbit_log="$STATE_DIR/rabbitmq/log/zerolost@localhost.log"
if [ -f "$rabbit_log" ]; then
  echo "-- rabbitmq: crashed queues and their reasons (newest last)"
  grep -h "State machine .* terminating\|Reason for termination\|reached_max_restart_intensity" \
    "$rabbit_log" 2>/dev/null | tail -n 6 | cut -c1-240
fi
exit 0
