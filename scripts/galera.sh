#!/usr/bin/env bash
# A three-node MariaDB Galera cluster on loopback ports, for the cluster tests.
#
#   scripts/galera.sh start [DIR]   start it (data in DIR, default /tmp/instar-galera),
#                                   wait until every node is synced, print its URLs
#   scripts/galera.sh stop [DIR]    stop every node by its pid file
#   scripts/galera.sh stop-node DIR N / start-node DIR N
#                                   one node leaves, or rejoins and catches up
#
# From Debian's packages (mariadb-server brings galera-4, and rsync for the state
# transfer). The nodes run as `mysql` on data directories it owns: the rsync state
# transfer fails when they run as root. Ports: SQL 13306-13308, group 14567-14569,
# incremental transfer 14588-14590, state transfer 14444-14446.
set -euo pipefail

cmd="${1:-}"
dir="${2:-/tmp/instar-galera}"
provider=/usr/lib/galera/libgalera_smm.so
sql_ports=(13306 13307 13308)
group_ports=(14567 14568 14569)
ist_ports=(14588 14589 14590)
sst_ports=(14444 14445 14446)
cluster="gcomm://127.0.0.1:${group_ports[0]},127.0.0.1:${group_ports[1]},127.0.0.1:${group_ports[2]}"

node_cnf() {
  local i=$1 d="$dir/node$1"
  cat <<CNF
[mysqld]
user=mysql
datadir=$d/data
socket=$d/mysqld.sock
pid-file=$d/mysqld.pid
log-error=$d/error.log
port=${sql_ports[$i]}
bind-address=127.0.0.1
skip-name-resolve
binlog_format=ROW
default_storage_engine=InnoDB
innodb_autoinc_lock_mode=2
innodb_buffer_pool_size=64M
innodb_log_file_size=16M
performance_schema=OFF
wsrep_on=ON
wsrep_provider=$provider
wsrep_cluster_name=instar_test
wsrep_cluster_address=$cluster
wsrep_node_address=127.0.0.1:${group_ports[$i]}
wsrep_node_name=node$i
wsrep_provider_options=gmcast.listen_addr=tcp://127.0.0.1:${group_ports[$i]};ist.recv_addr=127.0.0.1:${ist_ports[$i]};gcache.size=32M
wsrep_sst_method=rsync
wsrep_sst_receive_address=127.0.0.1:${sst_ports[$i]}
CNF
}

state() { # the node's wsrep_local_state_comment, or nothing
  mariadb --socket="$dir/node$1/mysqld.sock" -uroot -N -e "SHOW STATUS LIKE 'wsrep_local_state_comment'" 2>/dev/null | awk '{print $2}'
}

wait_synced() { # bounded: 90 s
  for _ in $(seq 1 180); do
    [ "$(state "$1")" = "Synced" ] && return 0
    sleep 0.5
  done
  echo "node$1 did not reach Synced; its log:" >&2
  tail -30 "$dir/node$1/error.log" >&2 || true
  return 1
}

start_node() { # $1: node, $2...: extra flags
  local i=$1; shift
  local d="$dir/node$i"
  node_cnf "$i" > "$d/my.cnf"
  chmod 644 "$d/my.cnf"
  setsid /usr/sbin/mariadbd --defaults-file="$d/my.cnf" "$@" >/dev/null 2>&1 < /dev/null &
}

case "$cmd" in
  start)
    [ -f "$provider" ] || { echo "no Galera provider at $provider (apt install galera-4)" >&2; exit 1; }
    command -v rsync >/dev/null || { echo "rsync is missing (apt install rsync)" >&2; exit 1; }
    "$0" stop "$dir" >/dev/null 2>&1 || true
    for p in "${sql_ports[@]}" "${group_ports[@]}"; do
      if (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "port $p is in use (a cluster left running? scripts/galera.sh stop DIR)" >&2
        exit 1
      fi
    done
    rm -rf "$dir"
    for i in 0 1 2; do
      mkdir -p "$dir/node$i/data"
    done
    chmod 755 "$dir"
    chown -R mysql:mysql "$dir"
    mariadb-install-db --user=mysql --datadir="$dir/node0/data" --auth-root-authentication-method=normal \
      --skip-test-db > "$dir/install.log" 2>&1
    start_node 0 --wsrep-new-cluster
    wait_synced 0
    # root over TCP from loopback, empty password (like the single test server).
    mariadb --socket="$dir/node0/mysqld.sock" -uroot -e \
      "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
    # The others join and copy node0's state (rsync), one at a time.
    for i in 1 2; do
      start_node "$i"
      wait_synced "$i"
    done
    for i in 0 1 2; do
      echo "mysql://root@127.0.0.1:${sql_ports[$i]}/mysql"
    done
    ;;
  stop-node) # one node leaves (SIGTERM, as a host shutting down would)
    i="${3:?node number}"
    pidfile="$dir/node$i/mysqld.pid"
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 1 120); do
      kill -0 "$pid" 2>/dev/null || exit 0
      sleep 0.5
    done
    echo "node$i did not stop" >&2
    exit 1
    ;;
  start-node) # it rejoins, and catches up (incremental transfer) before this returns
    i="${3:?node number}"
    start_node "$i"
    wait_synced "$i"
    ;;
  stop)
    for i in 2 1 0; do
      pidfile="$dir/node$i/mysqld.pid"
      [ -f "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 120); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
      done
      kill -9 "$pid" 2>/dev/null || true
    done
    ;;
  *)
    echo "usage: $0 start|stop [DIR], $0 stop-node|start-node DIR N" >&2
    exit 2
    ;;
esac
