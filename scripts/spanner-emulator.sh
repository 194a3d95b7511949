#!/usr/bin/env bash
# The Cloud Spanner emulator (in memory, loopback only), for the Spanner tests.
#
#   scripts/spanner-emulator.sh start [DIR]   start its REST gateway on 127.0.0.1:19020
#                                             (gRPC 19010), wait until it answers, print host:port
#   scripts/spanner-emulator.sh stop [DIR]    stop it (gateway and emulator) by its process group
#
# The emulator comes with the Google Cloud SDK's `cloud-spanner-emulator` component
# (`gcloud emulators spanner start` runs the same binaries). DIR keeps the pid and the log.
set -euo pipefail

cmd="${1:-}"
dir="${2:-/tmp/instar-spanner}"
bin="${INSTAR_SPANNER_EMULATOR_BIN:-/usr/lib/google-cloud-sdk/bin/cloud_spanner_emulator}"
http_port=19020
grpc_port=19010

case "$cmd" in
  start)
    if [ ! -x "$bin/gateway_main" ] || [ ! -x "$bin/emulator_main" ]; then
      echo "the Spanner emulator is not installed ($bin/gateway_main): install the Google Cloud SDK's cloud-spanner-emulator component" >&2
      exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null; then
      echo "port $http_port is taken (an emulator left running? scripts/spanner-emulator.sh stop)" >&2
      exit 1
    fi
    mkdir -p "$dir"
    setsid "$bin/gateway_main" --hostname 127.0.0.1 --http_port "$http_port" --grpc_port "$grpc_port" \
      --grpc_binary "$bin/emulator_main" >"$dir/emulator.log" 2>&1 < /dev/null &
    echo $! >"$dir/pid"
    for _ in $(seq 1 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null; then
        echo "127.0.0.1:$http_port"
        exit 0
      fi
      sleep 0.2
    done
    echo "the Spanner emulator did not answer on $http_port within 20 s; see $dir/emulator.log" >&2
    exit 1
    ;;
  stop)
    if [ -f "$dir/pid" ]; then
      pid="$(cat "$dir/pid")"
      kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
      rm -f "$dir/pid"
    fi
    ;;
  *)
    echo "usage: $0 start|stop [DIR]" >&2
    exit 2
    ;;
esac
