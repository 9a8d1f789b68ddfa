#!/usr/bin/env bash
# Redis on 127.0.0.1:${ZEROLOST_REDIS_PORT:-56379}, append-only file on (fsync every second).
# start is idempotent: a running server is left alone.
source "$(dirname "$0")/lib.sh"
PORT="${ZEROLOST_REDIS_PORT:-56379}"
DIR="$STATE_DIR/redis"
PIDFILE="$DIR/redis.pid"
URL="redis://127.0.0.1:$PORT"

command -v redis-server >/dev/null 2>&1 || apt_install redis-server

ready() { [ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" = PONG ]; }

start() {
  if ready; then return 0; fi
  mkdir -p "$DIR"
  log "redis: starting on 127.0.0.1:$PORT"
  redis-server --port "$PORT" --bind 127.0.0.1 --daemonize yes --dir "$DIR" --pidfile "$PIDFILE" \
    --logfile "$DIR/server.log" --appendonly yes --appendfsync everysec --save "" >/dev/null
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
  *) usage ;;
esac
