#!/usr/bin/env bash
# Builds wa-gateway, installs the pinned Baileys (npm registry) and runs the companion judge:
# linking, then texts both ways with a simulated user and with our client.
# Not part of `cargo test`: it needs the npm registry. Usage: tools/baileys-companion/run.sh [stay seconds]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
cargo build --release --bin wa-gateway
cd "$here"
npm install --no-audit --no-fund --loglevel=error
node companion.mjs "$here/../../target/release/wa-gateway" "${1:-75}"
