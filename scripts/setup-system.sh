#!/usr/bin/env bash
# Install the system tools crank's tests use for real (Debian/Ubuntu, as root),
# then verify each one: a missing tool must fail here, not turn into skipped tests.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -ne 0 ]; then
  echo "setup-system.sh: run as root (sudo) so apt-get can install packages" >&2
  exit 2
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  redis-server pandoc docker.io mmdebstrap ca-certificates git curl >/dev/null
missing=0
for tool in redis-server redis-cli pandoc dockerd docker mmdebstrap git curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "setup-system.sh: required tool '$tool' is missing after install" >&2
    missing=1
  fi
done
[ "$missing" -eq 0 ] || exit 1
# A Redis on loopback for the README's examples and `--broker redis://127.0.0.1:6379/0`;
# the fault-injection tests start their own servers on free ports.
if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
fi
for _ in $(seq 50); do redis-cli -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p 6379 ping >/dev/null
echo "setup-system.sh: redis-server $(redis-server --version | awk '{print $3}'), $(pandoc --version | head -1), $(dockerd --version)"
