#!/usr/bin/env bash
# Apache Kafka (KRaft) assembled from Maven Central jars (scripts/services/kafka/pom.xml) and
# run with `java`, on loopback. Two layouts:
#   single   one combined broker+controller, 127.0.0.1:${ZEROLOST_KAFKA_PORT:-19092}
#   cluster  three combined nodes, 127.0.0.1:29092,29093,29094, one controller quorum,
#            replication factor 3, min.insync.replicas 2, no unclean leader election,
#            log.flush.interval.messages=10000, log.flush.interval.ms=1000 (the article's)
# Next to each PLAINTEXT listener, TLS listeners with the test CA (scripts/services/certs.sh):
#   SSL       single 127.0.0.1:19095, cluster 29292-29294: a client certificate is required
#   SASL_SSL  single 127.0.0.1:19096, cluster 29392-29394: SCRAM-SHA-512 or PLAIN, user
#             `zerolost`, password `zerolost-secret` (the SCRAM user is made at format time)
# Usage: kafka.sh start|stop|restart|status|url|ssl-url|sasl-url [single|cluster]
#        kafka.sh kill NODE | restart-node NODE     (cluster nodes 1..3; kill is kill -9)
# start is idempotent: running nodes are left alone. Jars are cached in the state dir.
source "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$STATE_DIR/kafka"
LIB="$ROOT/lib"
SINGLE_PORT="${ZEROLOST_KAFKA_PORT:-19092}"
HEAP="${ZEROLOST_KAFKA_HEAP:--Xms128m -Xmx512m}"

jars() { maven_jars kafka "$HERE/kafka" "$LIB"; }

java_run() { java $HEAP -XX:+UseSerialGC -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$LIB/*" "$@"; }

nodes_of() { if [ "$1" = cluster ]; then echo 1 2 3; else echo 1; fi; }
node_dir() { echo "$ROOT/$1/node$2"; }
broker_port() { if [ "$1" = cluster ]; then echo $((29091 + $2)); else echo "$SINGLE_PORT"; fi; }
ssl_port() { if [ "$1" = cluster ]; then echo $((29291 + $2)); else echo $((SINGLE_PORT + 3)); fi; }
sasl_port() { if [ "$1" = cluster ]; then echo $((29391 + $2)); else echo $((SINGLE_PORT + 4)); fi; }
SCRAM_USER=zerolost
SCRAM_PASSWORD=zerolost-secret
controller_port() { if [ "$1" = cluster ]; then echo $((29191 + $2)); else echo $((SINGLE_PORT + 1)); fi; }

bootstrap() {
  local layout=$1 out="" n
  for n in $(nodes_of "$layout"); do out="$out${out:+,}127.0.0.1:$(broker_port "$layout" "$n")"; done
  echo "$out"
}

tls_bootstrap() {
  local port_of=$1 layout=$2 out="" n
  for n in $(nodes_of "$layout"); do out="$out${out:+,}127.0.0.1:$("$port_of" "$layout" "$n")"; done
  echo "$out"
}

voters() {
  local layout=$1 out="" n
  for n in $(nodes_of "$layout"); do out="$out${out:+,}$n@127.0.0.1:$(controller_port "$layout" "$n")"; done
  echo "$out"
}

write_properties() {
  local layout=$1 n=$2 dir; dir=$(node_dir "$layout" "$n")
  local rf=1 isr=1
  [ "$layout" = cluster ] && rf=3 isr=2
  mkdir -p "$dir/data"
  local plain="127.0.0.1:$(broker_port "$layout" "$n")" ssl="127.0.0.1:$(ssl_port "$layout" "$n")"
  local sasl="127.0.0.1:$(sasl_port "$layout" "$n")" tls="$ROOT/tls"
  tls_files "$tls"
  cat > "$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(voters "$layout")
listeners=PLAINTEXT://$plain,CONTROLLER://127.0.0.1:$(controller_port "$layout" "$n"),SSL://$ssl,SASL_SSL://$sasl
advertised.listeners=PLAINTEXT://$plain,SSL://$ssl,SASL_SSL://$sasl
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL
inter.broker.listener.name=PLAINTEXT
ssl.keystore.type=PKCS12
ssl.keystore.location=$STATE_DIR/tls/server.p12
ssl.keystore.password=zerolost
ssl.key.password=zerolost
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.crt
listener.name.ssl.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SCRAM_USER="$SCRAM_PASSWORD";
log.dirs=$dir/data
num.partitions=3
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
unclean.leader.election.enable=false
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=10000
log.flush.interval.ms=1000
log.segment.bytes=67108864
num.network.threads=2
num.io.threads=2
background.threads=2
# A dead follower leaves the in-sync set after 5 s (default 30 s), so a topic that needs
# more in-sync replicas than remain answers NOT_ENOUGH_REPLICAS quickly in chaos tests.
replica.lag.time.max.ms=5000
EOF
}

pid_of() { local f; f="$(node_dir "$1" "$2")/kafka.pid"; [ -f "$f" ] && head -n1 "$f"; }
# The node's java names its own directory (its log file) on the command line.
node_running() { local dir; dir=$(node_dir "$1" "$2"); pid_alive "$dir/kafka.pid" "$dir/server.log"; }
node_ready() { node_running "$1" "$2" && grep -q "Kafka Server started" "$(node_dir "$1" "$2")/server.log"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cluster_id() {
  local file="$ROOT/$1/cluster-id"
  if [ ! -s "$file" ]; then
    mkdir -p "$ROOT/$1"
    java_run kafka.tools.StorageTool random-uuid > "$file.tmp" && mv "$file.tmp" "$file"
  fi
  cat "$file"
}

start_node() {
  local layout=$1 n=$2 dir; dir=$(node_dir "$layout" "$n")
  # A node started before its TLS listeners existed is restarted with them.
  if node_ready "$layout" "$n" && ! port_open "$(sasl_port "$layout" "$n")"; then
    stop_node "$layout" "$n"
  fi
  node_running "$layout" "$n" && return 0
  if port_open "$(broker_port "$layout" "$n")"; then
    die "port $(broker_port "$layout" "$n") is taken by another program"
  fi
  write_properties "$layout" "$n"
  if [ ! -f "$dir/data/meta.properties" ]; then
    java_run kafka.tools.StorageTool format -t "$(cluster_id "$layout")" \
      -c "$dir/server.properties" --ignore-formatted \
      --add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]" >/dev/null
    touch "$dir/scram-user"
  fi
  log "kafka: starting $layout node $n on 127.0.0.1:$(broker_port "$layout" "$n")"
  : > "$dir/server.log"
  nohup java $HEAP -XX:+UseSerialGC -Dorg.slf4j.simpleLogger.defaultLogLevel=info -Dorg.slf4j.simpleLogger.showDateTime=true \
    -Dorg.slf4j.simpleLogger.logFile="$dir/server.log" -cp "$LIB/*" \
    kafka.Kafka "$dir/server.properties" >>"$dir/server.log" 2>&1 &
  echo $! > "$dir/kafka.pid"
}

wait_node() {
  local layout=$1 n=$2
  local deadline=$((SECONDS + 120))
  until node_ready "$layout" "$n"; do
    if ! node_running "$layout" "$n"; then
      { grep -E ' (ERROR|FATAL) ' "$(node_dir "$layout" "$n")/server.log" | head -n 20
        tail -n 30 "$(node_dir "$layout" "$n")/server.log"; } >&2
      die "kafka $layout node $n exited"
    fi
    [ $SECONDS -lt $deadline ] || die "kafka $layout node $n did not start within 120s"
    sleep 0.3
  done
}

start() {
  local layout=$1 n
  jars
  need_java
  for n in $(nodes_of "$layout"); do start_node "$layout" "$n"; done
  for n in $(nodes_of "$layout"); do wait_node "$layout" "$n"; done
  scram_user "$layout"
}

# The SASL user on data formatted before it was made at format time (once per layout).
scram_user() {
  local layout=$1 stamp; stamp="$(node_dir "$1" 1)/scram-user"
  [ -f "$stamp" ] && return 0
  java_run kafka.admin.ConfigCommand --bootstrap-server "$(bootstrap "$layout")" --alter \
    --add-config "SCRAM-SHA-512=[password=$SCRAM_PASSWORD]" --entity-type users \
    --entity-name "$SCRAM_USER" >/dev/null
  touch "$stamp"
}

stop_node() {
  local layout=$1 n=$2 pid
  node_running "$layout" "$n" || return 0
  pid=$(pid_of "$layout" "$n")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

stop() {
  local layout=$1 n
  # Brokers first, the last controller standing last, so shutdowns do not wait on a quorum.
  for n in $(nodes_of "$layout"); do stop_node "$layout" "$n" & done
  wait
}

status() {
  local layout=$1 n
  for n in $(nodes_of "$layout"); do node_ready "$layout" "$n" || return 1; done
  echo "kafka ($layout) up at $(bootstrap "$layout")"
}

node_arg() {
  case "${1:-}" in 1|2|3) echo "$1" ;; *) die "name a cluster node: 1, 2 or 3" ;; esac
}

case "${1:-start}" in
  start) start "${2:-single}" ;;
  stop) stop "${2:-single}" ;;
  restart) stop "${2:-single}"; start "${2:-single}" ;;
  status) status "${2:-single}" ;;
  url) bootstrap "${2:-single}" ;;
  ssl-url) tls_bootstrap ssl_port "${2:-single}" ;;
  sasl-url) tls_bootstrap sasl_port "${2:-single}" ;;
  kill)
    n=$(node_arg "${2:-}")
    kill_pidfile "$(node_dir cluster "$n")/kafka.pid" "$(node_dir cluster "$n")/server.log" ;;
  restart-node)
    n=$(node_arg "${2:-}")
    stop_node cluster "$n"; jars; start_node cluster "$n"; wait_node cluster "$n" ;;
  *) echo "usage: $0 start|stop|restart|status|url|ssl-url|sasl-url [single|cluster] | kill NODE | restart-node NODE" >&2; exit 2 ;;
esac
