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

# Most tests wait on brokers, not on the CPU: six at a time in each test binary (the
# default is one per core) cut the suite's wall time without starving the machine. Tests
# that kill or restart a shared service hold a lock of their binary.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-6}"
cargo test --workspace --all-features --no-fail-fast "$@"
