#!/usr/bin/env bash
# Starts every service the test suite needs (idempotent) and prints their addresses;
# also installs headless Chromium for the demo report test.
set -euo pipefail
here="$(dirname "$0")"
for service in postgres mariadb redis kafka rabbitmq rocketmq toxiproxy chromium; do
  "$here/$service.sh" start
done
# The 3-node Kafka cluster for the durability tests (replication 3, min ISR 2).
"$here/kafka.sh" start cluster
# A second RocketMQ broker with ASYNC_FLUSH, which the durability audit must flag, and a
# third with authentication (ACL) for the access-key tests.
"$here/rocketmq.sh" start async
"$here/rocketmq.sh" start acl
for service in postgres mariadb redis kafka rabbitmq rocketmq toxiproxy chromium; do
  "$here/$service.sh" status
done
"$here/kafka.sh" status cluster
"$here/rocketmq.sh" status async
"$here/rocketmq.sh" status acl
