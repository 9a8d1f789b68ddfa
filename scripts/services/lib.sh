# Shared helpers of the service scripts. Sourced, not run.
# State (data directories, logs, pid files) lives in $ZEROLOST_STATE_DIR, by default
# /var/tmp/zerolost, so every clone on the machine shares one set of servers.
set -euo pipefail

STATE_DIR="${ZEROLOST_STATE_DIR:-/var/tmp/zerolost}"
mkdir -p "$STATE_DIR"
export DEBIAN_FRONTEND=noninteractive

log() { printf '[zerolost services] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The services listen on fixed ports inside Linux's ephemeral range (32768-60999). After a
# `kill` the port is free until the restart, and any client connection opened meanwhile may
# take it as its local port: the restarted server then fails with EADDRINUSE (seen in CI:
# RabbitMQ after kill -9). Reserving the ports keeps the kernel from handing them out as
# ephemeral ports. Best effort: without permission a note is printed and nothing else changes.
SERVICE_PORTS="50909,50911,50912,51909,51911,51912,52909,52911,52912,53306,55432,55672-55676,56379,56380,58474,59876"
reserve_service_ports() {
  local file=/proc/sys/net/ipv4/ip_local_reserved_ports current
  [ -r "$file" ] || return 0
  current=$(cat "$file")
  case ",$current," in *",55672-55676,"*) return 0 ;; esac
  if [ -w "$file" ] && printf '%s' "${current:+$current,}$SERVICE_PORTS" > "$file" 2>/dev/null; then
    return 0
  fi
  log "note: cannot reserve the service ports ($SERVICE_PORTS) in $file; a restarted server may find its port taken by a client connection"
}
reserve_service_ports

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $* (install it by hand, or run as root)"; fi
}

# Runs a command as a system user when we are root (servers refuse to run as root),
# as ourselves otherwise.
as_user() {
  local user=$1; shift
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

# Installs Debian packages that are missing; `apt-get update` at most once per boot.
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local stamp=/tmp/.zerolost-apt-updated
  if [ ! -f "$stamp" ]; then
    log "apt-get update"
    as_root apt-get update -qq >/dev/null
    touch "$stamp"
  fi
  log "installing ${missing[*]}"
  # Keep package scripts from starting the distribution's own service instances.
  as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  as_root rm -f /usr/sbin/policy-rc.d
}

# wait_until SECONDS WHAT CMD...: polls CMD every 0.2 s.
wait_until() {
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what did not come up within ${seconds}s"
    sleep 0.2
  done
}

# pid_alive PIDFILE MARK: the pid file names a live process whose command line contains MARK.
# A pid file left by an earlier boot (or in a copied state directory) may name a pid the
# kernel has since given to another program; its command line tells them apart. (Seen in CI on
# a fresh machine: two Kafka cluster nodes were taken for running, the third waited for a
# controller quorum that never formed and shut itself down after 60 s.)
pid_alive() {
  local file=$1 mark=$2 pid
  [ -f "$file" ] || return 1
  pid=$(head -n1 "$file")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$mark"
}

# kill_pidfile PIDFILE MARK: SIGKILL to the process in a pid file (for chaos tests), only if it
# is still the one the pid file was written for (see pid_alive).
kill_pidfile() {
  local pidfile=$1 mark=$2
  pid_alive "$pidfile" "$mark" || return 0
  local pid; pid=$(head -n1 "$pidfile")
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
}

# wait_port_closed SECONDS PORT...: waits until nothing listens on the loopback ports (a
# killed server's sockets close only when its process is fully gone).
wait_port_closed() {
  local seconds=$1; shift
  local deadline=$((SECONDS + seconds)) port
  for port in "$@"; do
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
      [ $SECONDS -lt $deadline ] || die "port $port is still taken ${seconds}s after the server was killed"
      sleep 0.2
    done
  done
}

# Java and Maven, for the brokers assembled from Maven Central.
need_java() {
  command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null 2>&1 || apt_install maven
}

# maven_jars NAME POM_DIR LIB: resolves the dependencies of POM_DIR/pom.xml into LIB once
# (a stamp with the pom's hash marks a complete download).
maven_jars() {
  local name=$1 pom_dir=$2 lib=$3
  local stamp="$lib/.pom-$(sha256sum "$pom_dir/pom.xml" | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  need_java
  log "$name: resolving jars from Maven Central"
  rm -rf "$lib.tmp" && mkdir -p "$lib.tmp"
  (cd "$pom_dir" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$lib.tmp" >/dev/null) \
    || die "could not resolve the $name jars (is Maven Central reachable?)"
  rm -rf "$lib" && mv "$lib.tmp" "$lib" && touch "$stamp"
}

# tls_files DEST [OWNER]: the test CA's certificate and the server's pair (scripts/services/certs.sh)
# copied into DEST as ca.crt, server.crt, server.key, readable by OWNER only (servers
# refuse a key others can read). Made once; an existing copy is left alone.
tls_files() {
  local dest=$1 owner=${2:-}
  "$(dirname "${BASH_SOURCE[0]}")/certs.sh" make
  local src="$STATE_DIR/tls"
  mkdir -p "$dest"
  if [ ! -f "$dest/server.key" ]; then
    cp "$src/ca.crt" "$src/server.crt" "$src/server.key" "$dest/"
    chmod 600 "$dest/server.key"
    chmod 644 "$dest/ca.crt" "$dest/server.crt"
  fi
  [ -z "$owner" ] || [ "$(id -u)" -ne 0 ] || chown -R "$owner" "$dest"
}

# tls_port_open PORT: something listens on the loopback port.
tls_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

usage() { echo "usage: $0 start|stop|restart|kill|status|url" >&2; exit 2; }
