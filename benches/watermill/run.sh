#!/usr/bin/env bash
# Watermill's outbox (SQL publisher → Forwarder → Kafka / AMQP publisher) against zerolost's
# relay (PostgreSQL outbox → confirmed publish), side by side in one session: the same
# PostgreSQL, the same brokers, the same message count and payload, rounds alternated.
#
#   benches/watermill/run.sh [messages] [rounds]     (default 20000, 3)
#
# Prints one line per measurement and the medians; a CPU profile of the Watermill forwarder
# (last round, Kafka) lands in target/watermill-kafka.pprof (`go tool pprof -top` reads it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
messages="${1:-20000}"
rounds="${2:-3}"

"$root/scripts/services/postgres.sh" start
"$root/scripts/services/kafka.sh" start single
"$root/scripts/services/rabbitmq.sh" start
(cd "$here" && go build -o "$root/target/wmbench" .)
(cd "$root" && cargo build --release --quiet -p zerolost-lab --features bench)

results="$root/target/watermill-vs-zerolost.jsonl"
: > "$results"
for round in $(seq 1 "$rounds"); do
  for broker in kafka amqp; do
    profile=()
    if [ "$round" = "$rounds" ] && [ "$broker" = kafka ]; then
      profile=(-cpuprofile "$root/target/watermill-kafka.pprof")
    fi
    "$root/target/wmbench" -broker "$broker" -messages "$messages" "${profile[@]}" | tee -a "$results"
    backend=$([ "$broker" = kafka ] && echo kafka || echo rabbitmq)
    "$root/target/release/zerolost" bench --backend "$backend" --outbox postgres \
      --messages "$messages" --json 2>/dev/null |
      python3 -c 'import json,sys; r=json.load(sys.stdin)["results"][0]; print(json.dumps({"peer":"zerolost","broker":sys.argv[1],"messages":r["messages"],"relay_per_s":r["zerolost_msgs_per_s"],"raw_client_per_s":r["raw_msgs_per_s"]}))' "$broker" |
      tee -a "$results"
  done
done

python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for broker in ("kafka", "amqp"):
    wm = [r["forward_per_s"] for r in rows if r["peer"] == "watermill" and r["broker"] == broker]
    zl = [r["relay_per_s"] for r in rows if r["peer"] == "zerolost" and r["broker"] == broker]
    raw = [r["raw_client_per_s"] for r in rows if r["peer"] == "zerolost" and r["broker"] == broker]
    w, z, c = statistics.median(wm), statistics.median(zl), statistics.median(raw)
    print(f"{broker}: watermill forwarder {w:,.0f} msgs/s, zerolost relay {z:,.0f} msgs/s "
          f"({z / w:.1f}x), raw client {c:,.0f} msgs/s (medians of {len(wm)})")
EOF
