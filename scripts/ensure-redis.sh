#!/usr/bin/env bash
# Makes sure a Redis answers on 127.0.0.1:6379, installing and starting Debian's redis-server when needed.
set -euo pipefail
ping_redis() {
  if command -v redis-cli >/dev/null; then
    redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG
  else
    (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3 | grep -q PONG) 2>/dev/null
  fi
}
ping_redis && exit 0
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "ensure-redis: no Redis on 127.0.0.1:6379 and redis-server is not installed (apt-get install redis-server)" >&2
    exit 1
  fi
fi
mkdir -p /tmp/immunize-redis
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp/immunize-redis \
  --logfile /tmp/immunize-redis/redis.log
for _ in $(seq 1 50); do
  ping_redis && exit 0
  sleep 0.2
done
echo "ensure-redis: redis-server did not answer on 127.0.0.1:6379 (see /tmp/immunize-redis/redis.log)" >&2
exit 1
