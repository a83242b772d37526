#!/usr/bin/env bash
# Installs the services the test suite starts for real, idempotently and only when missing:
#   Debian's redis-server (the Celery broker of tests/celery/, started by devstack/redis_server.py
#   on a free port; the system service is not enabled or started here).
set -euo pipefail

need_apt=()
command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || need_apt+=(redis-server)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "[install-test-services] apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # The tests never use a system-wide redis (if the package starts one on :6379): each test
  # starts its own on a free port.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null
fi
echo "[install-test-services] ready: $(redis-server --version | cut -d' ' -f1-3)"
