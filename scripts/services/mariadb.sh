#!/usr/bin/env bash
# MariaDB on 127.0.0.1:${ZEROLOST_MYSQL_PORT:-53306}, database/user/password zerolost.
# TLS on the same port (the test CA's server certificate from certs.sh; optional for
# clients): `url-tls` prints a URL that verifies the server's certificate and name. It
# listens on 127.0.0.2 too: this machine, but a name the certificate does not list.
# start is idempotent: a running server is left alone.
source "$(dirname "$0")/lib.sh"
PORT="${ZEROLOST_MYSQL_PORT:-53306}"
DIR="$STATE_DIR/mariadb"
DATA="$DIR/data"
SOCK="$DIR/mysqld.sock"
PIDFILE="$DIR/mysqld.pid"
MARK="--datadir=$DATA "
URL="mysql://zerolost:zerolost@127.0.0.1:$PORT/zerolost"

command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server mariadb-client
SERVER=$(command -v mariadbd || echo /usr/sbin/mariadbd)

TLS="$DIR/tls"
URL_TLS="$URL?ssl-mode=verify_identity&ssl-ca=$STATE_DIR/tls/ca.crt"

ready() { mariadb-admin --socket="$SOCK" -uroot ping >/dev/null 2>&1; }
running() { pid_alive "$PIDFILE" "$MARK"; }

tls_on() {
  [ "$(mariadb --socket="$SOCK" -uroot -N -B -e "SELECT @@have_ssl" 2>/dev/null)" = YES ] &&
    (exec 3<>"/dev/tcp/127.0.0.2/$PORT") 2>/dev/null
}

start() {
  if running && ready && tls_on; then return 0; fi
  # A server started before TLS was configured is restarted with it.
  if running && ready; then stop; fi
  mkdir -p "$DATA"
  tls_files "$TLS"
  [ "$(id -u)" -eq 0 ] && chown -R mysql:mysql "$DIR"
  if [ ! -d "$DATA/mysql" ]; then
    log "mariadb: initialising $DATA"
    mariadb-install-db --user=mysql --datadir="$DATA" --auth-root-authentication-method=socket \
      --skip-test-db >"$DIR/install.log" 2>&1 || { tail -n 30 "$DIR/install.log" >&2; die "mariadb-install-db failed"; }
  fi
  log "mariadb: starting on 127.0.0.1:$PORT"
  setsid "$SERVER" --no-defaults --user=mysql --datadir="$DATA" --socket="$SOCK" --pid-file="$PIDFILE" \
    --port="$PORT" --bind-address=127.0.0.1,127.0.0.2 --innodb-flush-log-at-trx-commit=1 --max-connections=300 \
    --ssl-cert="$TLS/server.crt" --ssl-key="$TLS/server.key" --ssl-ca="$TLS/ca.crt" \
    --log-error="$DIR/server.log" </dev/null >/dev/null 2>&1 &
  wait_until 90 mariadb ready
  mariadb --socket="$SOCK" -uroot -e "
    CREATE DATABASE IF NOT EXISTS zerolost;
    CREATE USER IF NOT EXISTS 'zerolost'@'127.0.0.1' IDENTIFIED BY 'zerolost';
    CREATE USER IF NOT EXISTS 'zerolost'@'localhost' IDENTIFIED BY 'zerolost';
    GRANT ALL PRIVILEGES ON *.* TO 'zerolost'@'127.0.0.1';
    GRANT ALL PRIVILEGES ON *.* TO 'zerolost'@'localhost';"
}

stop() {
  running || return 0
  mariadb-admin --socket="$SOCK" -uroot shutdown >/dev/null 2>&1 || kill_pidfile "$PIDFILE" "$MARK"
  for _ in $(seq 1 100); do running || break; sleep 0.1; done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  kill) kill_pidfile "$PIDFILE" "$MARK"; start ;;
  status) running && ready && echo "mariadb up at 127.0.0.1:$PORT" ;;
  url) echo "$URL" ;;
  url-tls) echo "$URL_TLS" ;;
  *) usage ;;
esac
