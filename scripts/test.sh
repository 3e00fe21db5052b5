#!/usr/bin/env bash
# Runs every check CI runs, installing what the tests need first (idempotent).
#   scripts/test.sh            fmt, clippy, the whole test suite
# Environment: CARGO_TARGET_DIR (default ~/.cache/waav/target), WAAV_MODELS_DIR (default ./models).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/waav/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

bash scripts/setup.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> cargo test"
cargo test --workspace --locked
