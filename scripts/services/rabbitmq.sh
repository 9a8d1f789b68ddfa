#!/usr/bin/env bash
# RabbitMQ (Debian's rabbitmq-server) as a private node `zerolost@localhost`:
# AMQP on 127.0.0.1:${ZEROLOST_AMQP_PORT:-55672}, management HTTP API on
# 127.0.0.1:${ZEROLOST_RABBITMQ_MGMT_PORT:-55673}; vhost, user and password `zerolost`.
# TLS with the test CA's server certificate (certs.sh): amqps on 127.0.0.1:55675 and the
# management API over https on 127.0.0.1:55676 (client certificates checked when sent);
# `url-tls` and `mgmt-url-tls` print their URLs.
# start is idempotent: a running node is left alone. `kill` is kill -9 of the broker's
# Erlang VM, then start again on the same data (for chaos tests).
source "$(dirname "$0")/lib.sh"
PORT="${ZEROLOST_AMQP_PORT:-55672}"
MGMT_PORT="${ZEROLOST_RABBITMQ_MGMT_PORT:-55673}"
DIST_PORT="${ZEROLOST_RABBITMQ_DIST_PORT:-55674}"
DIR="$STATE_DIR/rabbitmq"
NODE="zerolost@localhost"
URL="amqp://zerolost:zerolost@127.0.0.1:$PORT/zerolost"
MGMT_URL="http://zerolost:zerolost@127.0.0.1:$MGMT_PORT"
TLS_PORT="${ZEROLOST_AMQPS_PORT:-55675}"
MGMT_TLS_PORT="${ZEROLOST_RABBITMQ_MGMT_TLS_PORT:-55676}"
URL_TLS="amqps://zerolost:zerolost@127.0.0.1:$TLS_PORT/zerolost"
MGMT_URL_TLS="https://zerolost:zerolost@127.0.0.1:$MGMT_TLS_PORT"
TLS="$DIR/tls"
mkdir -p "$DIR/log" "$DIR/mnesia"

[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || apt_install rabbitmq-server

# The node's own environment: data, logs, config, cookie (HOME) all under $DIR.
node_env() {
  env HOME="$DIR" \
    ERL_CRASH_DUMP="$DIR/log/erl_crash.dump" \
    RABBITMQ_NODENAME="$NODE" \
    RABBITMQ_USE_LONGNAME=false \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$PORT" \
    RABBITMQ_DIST_PORT="$DIST_PORT" \
    RABBITMQ_CONFIG_FILE="$DIR/rabbitmq.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$DIR/mnesia" \
    RABBITMQ_LOG_BASE="$DIR/log" \
    RABBITMQ_PID_FILE="$DIR/rabbitmq.pid" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+S 2:2 +A 16" \
    "$@"
}

ctl() { node_env /usr/lib/rabbitmq/bin/rabbitmqctl -n "$NODE" -q "$@"; }

ready() {
  ctl status >/dev/null 2>&1 &&
    curl -fsS -o /dev/null "http://zerolost:zerolost@127.0.0.1:$MGMT_PORT/api/overview" 2>/dev/null
}

tls_ready() {
  curl -fsS -o /dev/null --cacert "$TLS/ca.crt" "$MGMT_URL_TLS/api/overview" 2>/dev/null &&
    tls_port_open "$TLS_PORT"
}

write_config() {
  cat > "$DIR/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $MGMT_PORT
loopback_users = none
default_user = zerolost
default_pass = zerolost
default_user_tags.administrator = true
default_vhost = zerolost
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
vm_memory_high_watermark.absolute = 1GiB
disk_free_limit.absolute = 200MB
log.console = false
log.file.level = warning
log.file.rotation.size = 10485760
log.file.rotation.count = 2
listeners.ssl.1 = 127.0.0.1:$TLS_PORT
ssl_options.cacertfile = $TLS/ca.crt
ssl_options.certfile = $TLS/server.crt
ssl_options.keyfile = $TLS/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
management.ssl.ip = 127.0.0.1
management.ssl.port = $MGMT_TLS_PORT
management.ssl.cacertfile = $TLS/ca.crt
management.ssl.certfile = $TLS/server.crt
management.ssl.keyfile = $TLS/server.key
EOF
  echo '[rabbitmq_management].' > "$DIR/enabled_plugins"
}

start() {
  command -v curl >/dev/null 2>&1 || apt_install curl
  tls_files "$TLS"
  if ready && tls_ready; then return 0; fi
  # A node started before TLS was configured is restarted with it.
  if ready; then stop; wait_port_closed 60 "$PORT" "$MGMT_PORT" "$DIST_PORT"; fi
  write_config
  if ! ctl status >/dev/null 2>&1; then
    log "rabbitmq: starting $NODE on 127.0.0.1:$PORT (management on $MGMT_PORT)"
    node_env setsid nohup /usr/lib/rabbitmq/bin/rabbitmq-server >"$DIR/log/console.log" 2>&1 < /dev/null &
  fi
  wait_until 120 rabbitmq ready || { tail -n 30 "$DIR/log/console.log" >&2; exit 1; }
  wait_until 30 "rabbitmq TLS listeners" tls_ready || { tail -n 30 "$DIR/log/console.log" >&2; exit 1; }
}

# Deletes the test vhost and makes it again, empty: queues left by earlier runs would
# otherwise pile up, and every quorum queue recovers its log whenever the node restarts.
purge() {
  ready || return 0
  local api="http://zerolost:zerolost@127.0.0.1:$MGMT_PORT/api"
  curl -fsS -o /dev/null -X DELETE "$api/vhosts/zerolost" || true
  curl -fsS -o /dev/null -X PUT "$api/vhosts/zerolost"
  curl -fsS -o /dev/null -X PUT -H 'content-type: application/json' \
    -d '{"configure":".*","write":".*","read":".*"}' "$api/permissions/zerolost/zerolost"
  log "rabbitmq: vhost zerolost emptied"
}

stop() {
  ctl status >/dev/null 2>&1 || return 0
  ctl stop >/dev/null 2>&1 || true
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  kill) kill_pidfile "$DIR/rabbitmq.pid" "-home $DIR "; wait_port_closed 60 "$PORT" "$MGMT_PORT" "$DIST_PORT" "$TLS_PORT" "$MGMT_TLS_PORT"; start ;;
  status) ready && echo "rabbitmq up at 127.0.0.1:$PORT (management 127.0.0.1:$MGMT_PORT)" ;;
  url) echo "$URL" ;;
  mgmt-url) echo "$MGMT_URL" ;;
  url-tls) echo "$URL_TLS" ;;
  mgmt-url-tls) echo "$MGMT_URL_TLS" ;;
  purge) purge ;;
  ctl) shift; ctl "$@" ;;
  *) echo "usage: $0 start|stop|restart|kill|purge|status|url|mgmt-url|url-tls|mgmt-url-tls|ctl ARGS" >&2; exit 2 ;;
esac
