#!/usr/bin/env bash
# Start what the tests talk to and that no init system starts here: dockerd.  Idempotent.
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
if ! docker info >/dev/null 2>&1; then
  echo "start-services: starting dockerd (log: /var/log/dockerd.log)"
  nohup dockerd >>/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start:"; tail -20 /var/log/dockerd.log; exit 1; }
fi
