#!/usr/bin/env bash
# Builds wa-gateway, installs the pinned Baileys (npm registry) and runs the judges:
# companion.mjs (linking, then texts both ways with a simulated user, with our client and in
# groups) and kinds.mjs (Baileys sends our REST account, `wa-gateway serve`, a location, a contact
# card, a reaction, an edit and a revoke; each checked in our history and signed webhook).
# Not part of `cargo test`: it needs the npm registry.
# Usage: tools/baileys-companion/run.sh [stay seconds]   (JUDGE=companion or JUDGE=kinds runs one)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
cargo build --release --bin wa-gateway
cd "$here"
npm install --no-audit --no-fund --loglevel=error
bin="$here/../../target/release/wa-gateway"
status=0
if [ "${JUDGE:-all}" != kinds ]; then
	node companion.mjs "$bin" "${1:-75}" || status=1
fi
if [ "${JUDGE:-all}" != companion ]; then
	node kinds.mjs "$bin" || status=1
fi
exit "$status"
