#!/usr/bin/env bash
# Redis on 127.0.0.1:${ZEROLOST_REDIS_PORT:-56379}, append-only file on (fsync every second);
# TLS on 127.0.0.1:${ZEROLOST_REDIS_TLS_PORT:-56380} (the test CA's server certificate from
# certs.sh, client certificates optional) with an ACL user `zerolost` / `zerolost-secret`
# next to the passwordless default user: `url-tls` prints its rediss:// URL.
# start is idempotent: a running server is left alone.
source "$(dirname "$0")/lib.sh"
PORT="${ZEROLOST_REDIS_PORT:-56379}"
DIR="$STATE_DIR/redis"
PIDFILE="$DIR/redis.pid"
URL="redis://127.0.0.1:$PORT"
TLS_PORT="${ZEROLOST_REDIS_TLS_PORT:-56380}"
URL_TLS="rediss://zerolost:zerolost-secret@127.0.0.1:$TLS_PORT"
TLS="$DIR/tls"

command -v redis-server >/dev/null 2>&1 || apt_install redis-server

ready() { [ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" = PONG ]; }

start() {
  if ready && tls_port_open "$TLS_PORT"; then return 0; fi
  # A server started before TLS was configured is restarted with it.
  if ready; then stop; fi
  mkdir -p "$DIR"
  tls_files "$TLS"
  log "redis: starting on 127.0.0.1:$PORT"
  redis-server --port "$PORT" --bind 127.0.0.1 --daemonize yes --dir "$DIR" --pidfile "$PIDFILE" \
    --logfile "$DIR/server.log" --appendonly yes --appendfsync everysec --save "" \
    --tls-port "$TLS_PORT" --tls-cert-file "$TLS/server.crt" --tls-key-file "$TLS/server.key" \
    --tls-ca-cert-file "$TLS/ca.crt" --tls-auth-clients optional \
    --user default on nopass '~*' '&*' +@all --user zerolost on '>zerolost-secret' '~*' '&*' +@all >/dev/null
  wait_until 30 redis ready
}

stop() {
  ready || return 0
  redis-cli -h 127.0.0.1 -p "$PORT" shutdown >/dev/null 2>&1 || true
  for _ in $(seq 1 100); do ready || break; sleep 0.1; done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  kill) kill_pidfile "$PIDFILE" "127.0.0.1:$PORT"; start ;;
  status) ready && echo "redis up at 127.0.0.1:$PORT" ;;
  url) echo "$URL" ;;
  url-tls) echo "$URL_TLS" ;;
  *) usage ;;
esac
