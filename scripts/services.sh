#!/usr/bin/env bash
# Make sure PostgreSQL, Redis and RabbitMQ answer on 127.0.0.1 (the integration and
# end-to-end tests use the real services). Installs (apt) and starts what is missing.
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

port_open() { (echo > "/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }
wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 1; done
  echo "services: $2 did not start on port $1" >&2; return 1
}
apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! port_open 5432; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  wait_port 5432 PostgreSQL
fi
if ! port_open 6379; then
  command -v redis-server >/dev/null || apt_install redis-server
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --save "" --appendonly no
  wait_port 6379 Redis
fi
if ! port_open 5672; then
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  $SUDO rabbitmq-server -detached
  wait_port 5672 RabbitMQ
fi
# The tests connect as the postgres role without a password (trust auth on loopback).
if ! psql -h 127.0.0.1 -U postgres -tAc 'select 1' >/dev/null 2>&1; then
  echo "services: cannot connect to PostgreSQL as postgres@127.0.0.1 (trust auth expected)" >&2
  exit 1
fi
echo "services: PostgreSQL, Redis and RabbitMQ are up"
