#!/usr/bin/env bash
# Toxiproxy (fault-injecting TCP proxy) with its API on 127.0.0.1:${ZEROLOST_TOXIPROXY_PORT:-58474},
# built with `go install` from the Go module proxy into $STATE_DIR/bin on first use.
# Tests create their proxies through the API (e.g. one in front of RabbitMQ) and cut them.
# start is idempotent: a running server is left alone.
source "$(dirname "$0")/lib.sh"
PORT="${ZEROLOST_TOXIPROXY_PORT:-58474}"
VERSION="v2.5.0"
DIR="$STATE_DIR/toxiproxy"
BIN="$STATE_DIR/bin/toxiproxy-server-$VERSION"
PIDFILE="$DIR/toxiproxy.pid"
URL="http://127.0.0.1:$PORT"

ready() { curl -fsS "$URL/version" >/dev/null 2>&1; }

install() {
  [ -x "$BIN" ] && return 0
  command -v go >/dev/null 2>&1 || die "toxiproxy needs Go (go install github.com/Shopify/toxiproxy/v2/cmd/server@$VERSION)"
  log "toxiproxy: go install github.com/Shopify/toxiproxy/v2/cmd/server@$VERSION"
  local gobin; gobin=$(mktemp -d)
  GOBIN="$gobin" go install "github.com/Shopify/toxiproxy/v2/cmd/server@$VERSION"
  mkdir -p "$(dirname "$BIN")"
  mv "$gobin/server" "$BIN"
  rmdir "$gobin"
}

start() {
  if ready; then return 0; fi
  command -v curl >/dev/null 2>&1 || apt_install curl
  install
  mkdir -p "$DIR"
  log "toxiproxy: starting on 127.0.0.1:$PORT"
  nohup "$BIN" -host 127.0.0.1 -port "$PORT" >"$DIR/server.log" 2>&1 &
  echo $! >"$PIDFILE"
  wait_until 30 toxiproxy ready
}

stop() {
  ready || return 0
  kill_pidfile "$PIDFILE" "-port $PORT"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  kill) kill_pidfile "$PIDFILE" "-port $PORT"; start ;;
  status) ready && echo "toxiproxy up at $URL" ;;
  url) echo "$URL" ;;
  *) usage ;;
esac
