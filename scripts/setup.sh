#!/usr/bin/env bash
# Installs what building and running the gateway needs on a fresh Debian machine with only the
# Rust toolchain: Debian packages (cmake, espeak-ng) and the pinned model files. Idempotent and
# quick when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null 2>&1 || {
  echo "error: cargo not found; install the Rust toolchain (https://rustup.rs) first" >&2
  exit 1
}
bash scripts/fetch-models.sh
command -v cmake >/dev/null 2>&1 || {
  echo "error: cmake is needed to build the local Whisper engine (apt-get install cmake)" >&2
  exit 1
}
