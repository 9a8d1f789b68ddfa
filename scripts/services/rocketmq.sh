#!/usr/bin/env bash
# Apache RocketMQ 5 assembled from Maven Central jars (scripts/services/rocketmq/pom.xml) and
# run with `java`, on loopback:
#   name server  127.0.0.1:${ZEROLOST_ROCKETMQ_NAMESRV_PORT:-59876}
#   broker       zerolost-a, cluster ZerolostCluster, 127.0.0.1:50911
#                flushDiskType=SYNC_FLUSH, brokerRole=ASYNC_MASTER (a single master; SYNC_MASTER
#                needs a slave), no topic auto-creation
#   async broker zerolost-async, cluster ZerolostAsyncCluster, 127.0.0.1:51911, ASYNC_FLUSH:
#                the unsafe layout the durability audit must flag (`start async`)
#   acl broker   zerolost-acl, cluster ZerolostAclCluster, 127.0.0.1:52911, SYNC_FLUSH, with
#                authentication (ACL 2.0): access key `zerolost`, secret key `zerolost-secret`;
#                TLS only, a client certificate of the test CA required (`start acl`)
# The name server offers TLS next to plaintext on its one port ("permissive": a TLS hello is
# answered with TLS), with the test CA's server certificate (certs.sh); the other brokers and
# the admin tool stay plaintext.
# Usage: rocketmq.sh start|stop|restart|status|url [async|acl]
#        rocketmq.sh kill            kill -9 of the SYNC_FLUSH broker, then start it again on its store
#        rocketmq.sh topic NAME [CLUSTER]   create a topic (4 queues) on a cluster
#        rocketmq.sh admin ARGS...   run mqadmin (org.apache.rocketmq.tools) against the name server
# start is idempotent: running processes are left alone. Jars are cached in the state dir.
# The brokers' stores live on a filesystem of their own (see store_dir below).
source "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$STATE_DIR/rocketmq"
LIB="$ROOT/lib"
NAMESRV_PORT="${ZEROLOST_ROCKETMQ_NAMESRV_PORT:-59876}"
NAMESRV="127.0.0.1:$NAMESRV_PORT"

jars() { maven_jars rocketmq "$HERE/rocketmq" "$LIB"; }

# java_in DIR HEAP CLASS ARGS...: runs a RocketMQ main class with its home and logs under DIR.
java_in() {
  local dir=$1 heap=$2; shift 2
  mkdir -p "$dir/home/conf"
  ROCKETMQ_HOME="$dir/home" java $heap -XX:+UseSerialGC -Duser.home="$dir" \
    -Drocketmq.home.dir="$dir/home" -cp "$LIB/*" "$@"
}

# launch DIR HEAP CLASS ARGS...: java_in in the background, detached; its pid in DIR/pid.
launch() {
  local dir=$1 heap=$2; shift 2
  mkdir -p "$dir/home/conf"
  ROCKETMQ_HOME="$dir/home" nohup java $heap -XX:+UseSerialGC -Duser.home="$dir" \
    -Drocketmq.home.dir="$dir/home" -cp "$LIB/*" "$@" >>"$dir/console.log" 2>&1 < /dev/null &
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# tls_opts NAME: the JVM's TLS settings (RocketMQ reads them as system properties).
tls_opts() {
  local tls="$ROOT/tls" mode=disabled auth=none
  case $1 in namesrv) mode=permissive ;; acl) mode=enforcing auth=require ;; *) return 0 ;; esac
  tls_files "$tls" >&2
  echo "-Dtls.server.mode=$mode -Dtls.test.mode.enable=false -Dtls.server.certPath=$tls/server.crt" \
    "-Dtls.server.keyPath=$tls/server.key -Dtls.server.need.client.auth=$auth" \
    "-Dtls.server.authClient=$([ $auth = none ] && echo false || echo true) -Dtls.server.trustCertPath=$tls/ca.crt"
}
# tls_current NAME: the running process has the TLS settings of this script.
tls_current() {
  local pid; pid=$(head -n1 "$(proc_dir "$1")/pid" 2>/dev/null) || return 1
  [ -z "$(tls_opts "$1")" ] || tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-Dtls.server.mode="
}
# proc_alive NAME: its pid file names a live java started with this process's home.
proc_alive() { pid_alive "$(proc_dir "$1")/pid" "-Duser.home=$(proc_dir "$1") "; }

# name: namesrv | broker | async
proc_dir() { echo "$ROOT/$1"; }
proc_port() { case $1 in namesrv) echo "$NAMESRV_PORT" ;; broker) echo 50911 ;; async) echo 51911 ;; acl) echo 52911 ;; esac; }
# A broker is ready once the name server knows it (clients and topic creation look it up
# there): "boot success" comes first, the registration a moment later.
registered() { grep -q "Registering current broker to name server completed" "$(proc_dir "$1")/logs/rocketmqlogs/broker.log" 2>/dev/null; }
ready() {
  proc_alive "$1" && grep -q "boot success" "$(proc_dir "$1")/console.log" 2>/dev/null || return 1
  [ "$1" = namesrv ] || registered "$1"
}

# The broker refuses every write ("the message store is not writable", a send failure with
# code 14, SERVICE_NOT_AVAILABLE) once the partition of its commit log is 90 % used, and from
# 85 % deletes commit-log files whether consumed or not. broker.conf cannot raise either mark:
# the broker caps diskSpaceWarningLevelRatio at 90 and diskSpaceCleanForciblyRatio at 85. A
# development machine's or CI runner's disk is shared with builds and often fuller than that
# (seen in CI: every RocketMQ test failed once a debug build had filled the disk past 90 %).
# So, as a production broker has a disk of its own, the stores live on a filesystem of their
# own: a sparse ext4 image (ZEROLOST_ROCKETMQ_STORE_SIZE, 8G by default; blocks taken as written),
# loop-mounted. fsync reaches the image file, so SYNC_FLUSH still means "on disk".
# Without root or loop devices the stores stay on the state dir's partition, with a warning
# when that is above 80 %.
STORE_IMG="$ROOT/store.img"
STORE_FS="$ROOT/store-fs"
STORE_FS_SIZE="${ZEROLOST_ROCKETMQ_STORE_SIZE:-8G}"

# store_dir WHICH: prints the directory of a broker's store, mounting the image if needed.
store_dir() {
  if mountpoint -q "$STORE_FS" 2>/dev/null || mount_store_fs; then
    echo "$STORE_FS/$1"
    return 0
  fi
  local used
  used=$(df -P "$ROOT" | awk 'NR==2 { sub("%", "", $5); print $5 }')
  if [ "${used:-0}" -ge 80 ]; then
    log "warning: $ROOT's partition is ${used}% used; the RocketMQ broker refuses every write from 90 % (a limit broker.conf cannot raise). Free space, or run as root so the stores get a filesystem of their own."
  fi
  echo "$(proc_dir "$1")/store"
}

mount_store_fs() {
  [ "$(id -u)" -eq 0 ] && command -v mkfs.ext4 >/dev/null && command -v losetup >/dev/null || return 1
  mkdir -p "$STORE_FS"
  if [ ! -f "$STORE_IMG" ]; then
    truncate -s "$STORE_FS_SIZE" "$STORE_IMG" && mkfs.ext4 -q -F -m 0 "$STORE_IMG" >/dev/null 2>&1 \
      || { rm -f "$STORE_IMG"; log "note: could not make a filesystem image for the RocketMQ stores"; return 1; }
  fi
  if mount -o loop "$STORE_IMG" "$STORE_FS" 2>/dev/null; then
    log "rocketmq: stores on $STORE_FS ($STORE_FS_SIZE ext4 image, loop-mounted)"
    return 0
  fi
  log "note: could not loop-mount $STORE_IMG; the RocketMQ stores stay on $ROOT's partition"
  return 1
}

write_broker_conf() {
  local which=$1 dir store; dir=$(proc_dir "$which")
  store=$(store_dir "$which")
  local name=zerolost-a cluster=ZerolostCluster flush=SYNC_FLUSH
  if [ "$which" = async ]; then name=zerolost-async cluster=ZerolostAsyncCluster flush=ASYNC_FLUSH; fi
  if [ "$which" = acl ]; then name=zerolost-acl cluster=ZerolostAclCluster; fi
  mkdir -p "$store"
  cat > "$dir/broker.conf" <<CONF
brokerClusterName=$cluster
brokerName=$name
brokerId=0
namesrvAddr=$NAMESRV
brokerIP1=127.0.0.1
listenPort=$(proc_port "$which")
storePathRootDir=$store
storePathCommitLog=$store/commitlog
flushDiskType=$flush
brokerRole=ASYNC_MASTER
# 64 MB commit log files instead of 1 GB: small disks, fast starts.
mappedFileSizeCommitLog=67108864
autoCreateTopicEnable=false
autoCreateSubscriptionGroup=true
# Redeliveries of a consume-later message: well above zerolost's own max_attempts (3).
maxReconsumeTimes=16
# Delay levels of a message given back (RECONSUME_LATER): the broker uses level 3 + the
# reconsume count. Stock: 1s 5s 10s 30s 1m 2m ... (first retry after 10 s, then 30 s, 1 m).
# Shortened at the low end for development and tests; production brokers keep the stock ones.
messageDelayLevel=1s 1s 1s 2s 3s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m
CONF
  if [ "$which" = acl ]; then
    cat >> "$dir/broker.conf" <<'CONF'
# Authentication (ACL 2.0): every request signed with an access key the broker knows; the
# first user is made at start. Authorization stays off: any known user may do anything.
authenticationEnabled=true
authenticationProvider=org.apache.rocketmq.auth.authentication.provider.DefaultAuthenticationProvider
authenticationMetadataProvider=org.apache.rocketmq.auth.authentication.provider.LocalAuthenticationMetadataProvider
initAuthenticationUser={"username":"zerolost","password":"zerolost-secret"}
innerClientAuthenticationCredentials={"accessKey":"zerolost","secretKey":"zerolost-secret"}
authorizationEnabled=false
CONF
  fi
}

start_proc() {
  local which=$1 dir; dir=$(proc_dir "$which")
  # One started before TLS was configured is restarted with it.
  if proc_alive "$which" && ! tls_current "$which"; then stop_proc "$which"; fi
  ready "$which" && return 0
  proc_alive "$which" && { wait_proc "$which"; return 0; }
  port_open "$(proc_port "$which")" && die "port $(proc_port "$which") is taken by another program"
  mkdir -p "$dir"
  : > "$dir/console.log"
  if [ "$which" = namesrv ]; then
    echo "listenPort=$NAMESRV_PORT" > "$dir/namesrv.properties"
    log "rocketmq: starting the name server on $NAMESRV"
    launch "$dir" "-Xms128m -Xmx256m $(tls_opts namesrv)" org.apache.rocketmq.namesrv.NamesrvStartup -c "$dir/namesrv.properties"
  else
    write_broker_conf "$which"
    # This start's registration is what `ready` waits for, not an earlier one.
    [ -f "$dir/logs/rocketmqlogs/broker.log" ] && mv "$dir/logs/rocketmqlogs/broker.log" "$dir/logs/rocketmqlogs/broker.log.prev"
    log "rocketmq: starting broker $which on 127.0.0.1:$(proc_port "$which")"
    launch "$dir" "-Xms256m -Xmx512m -XX:MaxDirectMemorySize=512m $(tls_opts "$which")" \
      org.apache.rocketmq.broker.BrokerStartup -c "$dir/broker.conf"
  fi
  echo $! > "$dir/pid"
}

wait_proc() {
  local which=$1 dir; dir=$(proc_dir "$which")
  local deadline=$((SECONDS + 120))
  until ready "$which"; do
    if ! proc_alive "$which"; then
      grep -v '|-INFO\||-WARN' "$dir/console.log" | tail -n 30 >&2
      die "rocketmq $which exited"
    fi
    [ $SECONDS -lt $deadline ] || die "rocketmq $which did not start within 120s"
    sleep 0.3
  done
}

stop_proc() {
  local which=$1 pidfile; pidfile="$(proc_dir "$1")/pid"
  proc_alive "$which" || return 0
  local pid; pid=$(head -n1 "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

start() {
  jars
  need_java
  start_proc namesrv; wait_proc namesrv
  local which=broker
  case "${1:-}" in async|acl) which=$1 ;; esac
  start_proc "$which"; wait_proc "$which"
}

stop() {
  case "${1:-}" in async|acl) stop_proc "$1"; return ;; esac
  # Brokers first: a broker stopping unregisters from the name server.
  stop_proc async & stop_proc acl & stop_proc broker & wait
  stop_proc namesrv
}

admin() { jars; java_in "$ROOT/admin" '-Xmx256m' org.apache.rocketmq.tools.command.MQAdminStartup "$@" -n "$NAMESRV"; }

case "${1:-start}" in
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  restart) stop "${2:-}"; start "${2:-}" ;;
  status)
    if [ "${2:-}" = async ]; then ready async && echo "rocketmq async broker up at 127.0.0.1:51911 (name server $NAMESRV)"
    elif [ "${2:-}" = acl ]; then ready acl && echo "rocketmq acl broker up at 127.0.0.1:52911 (name server $NAMESRV, access key zerolost)"
    else ready namesrv && ready broker && echo "rocketmq up: name server $NAMESRV, broker 127.0.0.1:50911 (SYNC_FLUSH)"; fi ;;
  url) echo "$NAMESRV" ;;
  kill)
    kill_pidfile "$(proc_dir broker)/pid" "-Duser.home=$(proc_dir broker) "
    start_proc broker; wait_proc broker ;;
  topic)
    [ -n "${2:-}" ] || die "usage: $0 topic NAME [CLUSTER]"
    out=$(admin updateTopic -c "${3:-ZerolostCluster}" -t "$2" -r 4 -w 4 2>&1 || true)
    case "$out" in *success*) ;; *) printf '%s\n' "$out" | grep -v '|-INFO\||-WARN' | tail -n 5 >&2; die "could not create topic $2" ;; esac ;;
  admin) shift; admin "$@" 2>&1 | grep -v '|-INFO\||-WARN' ;;
  *) echo "usage: $0 start|stop|restart|status|url [async|acl] | kill | topic NAME [CLUSTER] | admin ARGS" >&2; exit 2 ;;
esac
