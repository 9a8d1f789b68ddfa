#!/usr/bin/env bash
# The whole test suite, as the README and CI run it: start the real services the
# backends need (scripts/services/up.sh: PostgreSQL, MariaDB, Redis, Kafka, RabbitMQ), then every test in the
# workspace with every feature on.
# With ZEROLOST_REQUIRE_SERVICES=1 (CI) a test whose server is missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/services/up.sh ]; then
  scripts/services/up.sh
  # Queues left by earlier runs go: a broker restart in a chaos test recovers every one.
  scripts/services/rabbitmq.sh purge
fi

cargo test --workspace --all-features --no-fail-fast "$@"
