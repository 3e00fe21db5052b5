#!/usr/bin/env bash
# Installs what building and running the gateway needs on a fresh Debian machine with only the
# Rust toolchain: system packages and model files. Idempotent and quick when all is present.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
for cmd_pkg in cmake:cmake espeak-ng:espeak-ng unzip:unzip; do
  cmd="${cmd_pkg%%:*}"; pkg="${cmd_pkg##*:}"
  command -v "$cmd" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "==> apt-get install ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "error: missing packages ${need_pkgs[*]}; install them (apt-get install ${need_pkgs[*]})" >&2
    exit 1
  fi
fi

if [ -x scripts/fetch-models.sh ] || [ -f scripts/fetch-models.sh ]; then
  bash scripts/fetch-models.sh
fi
