#!/usr/bin/env bash
# Sets up a fresh machine (system packages, model files), builds the gateway in release mode and
# starts it on its embedded default configuration: local providers, no API key needed.
#   scripts/start.sh [waav-gateway options…]      e.g. scripts/start.sh --port 4000
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/waav/target}"
# Built here to run here: the compiler may use this CPU's vector units (the denoiser costs
# ~20-30 % less with AVX2/FMA, see docs/PERFORMANCE.md). A RUSTFLAGS set by the caller wins;
# RUSTFLAGS= (empty) builds the portable binary that plain `cargo build --release` gives.
export RUSTFLAGS="${RUSTFLAGS--C target-cpu=native}"
echo "==> cargo build --release (the first build takes a while: it compiles the local engines)"
cargo build --release --locked -p waav-server
exec "$CARGO_TARGET_DIR/release/waav-gateway" --config "${WAAV_CONFIG:-config/default.yaml}" "$@"
