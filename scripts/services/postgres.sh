#!/usr/bin/env bash
# PostgreSQL on 127.0.0.1:${ZEROLOST_PG_PORT:-55432}, database/user/password zerolost.
# TLS on the same port (ssl=on, the test CA's server certificate from certs.sh; a client
# certificate is checked when one is sent, not required): `url-tls` prints a verify-full URL.
# It listens on 127.0.0.2 too: this machine, but a name the certificate does not list (the
# "name mismatch" tests).
# start is idempotent: a running server is left alone.
source "$(dirname "$0")/lib.sh"
PORT="${ZEROLOST_PG_PORT:-55432}"
DIR="$STATE_DIR/postgres"
DATA="$DIR/data"
URL="postgres://zerolost:zerolost@127.0.0.1:$PORT/zerolost"

pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [ -n "$bin" ] || { apt_install postgresql; bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1); }
  echo "$bin"
}

TLS="$DIR/tls"
URL_TLS="$URL?sslmode=verify-full&sslrootcert=$STATE_DIR/tls/ca.crt"

running() { [ -f "$DATA/postmaster.pid" ] && as_user postgres "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }
ready() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; }
psql_admin() { as_user postgres "$BIN/psql" -h "$DIR" -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }

tls_on() { [ "$(psql_admin -c 'SHOW ssl')" = on ] && (exec 3<>"/dev/tcp/127.0.0.2/$PORT") 2>/dev/null; }

start() {
  if running && ready && tls_on; then return 0; fi
  # A server started before TLS was configured is restarted with it.
  if running && ready; then stop; fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    log "postgres: initdb in $DATA"
    mkdir -p "$DATA"
    [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$DIR"
    as_user postgres "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >/dev/null
  fi
  tls_files "$TLS"
  [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$DIR"
  log "postgres: starting on 127.0.0.1:$PORT"
  as_user postgres "$BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 60 \
    -o "-p $PORT -c listen_addresses=127.0.0.1,127.0.0.2 -k $DIR -c max_connections=200 -c ssl=on -c ssl_cert_file=$TLS/server.crt -c ssl_key_file=$TLS/server.key -c ssl_ca_file=$TLS/ca.crt" start >/dev/null \
    || { tail -n 30 "$DIR/server.log" >&2; die "postgres did not start"; }
  wait_until 60 postgres ready
  if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname='zerolost'")" != 1 ]; then
    psql_admin -c "CREATE ROLE zerolost LOGIN SUPERUSER PASSWORD 'zerolost'"
  fi
  if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname='zerolost'")" != 1 ]; then
    psql_admin -c "CREATE DATABASE zerolost OWNER zerolost"
  fi
}

stop() { running && as_user postgres "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null || true; }

BIN=$(pg_bin)
case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  kill) kill_pidfile "$DATA/postmaster.pid" "-D $DATA "; rm -f "$DATA/postmaster.pid"; start ;;
  status) running && ready && echo "postgres up at 127.0.0.1:$PORT" ;;
  url) echo "$URL" ;;
  url-tls) echo "$URL_TLS" ;;
  *) usage ;;
esac
