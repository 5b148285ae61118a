#!/usr/bin/env bash
# Builds wa-gateway, installs the pinned Baileys (npm registry) and runs the judges:
# companion.mjs (linking, then texts both ways with a simulated user, with our client and in
# groups) and kinds.mjs (Baileys sends our REST account, `wa-gateway serve`, a location, a contact
# card, a reaction, an edit and a revoke; each checked in our history and signed webhook) and
# media.mjs (Baileys sends our REST account a JPEG, an Ogg Opus voice note and a PDF, checked in
# history, webhook and `GET …/media` byte for byte; our REST sends Baileys an image, a document and
# a voice note, which Baileys' downloadMediaMessage fetches from the simulator's HTTPS CDN) and
# appstate.mjs (Baileys and our REST account as two companions of one phone: Baileys archives, pins
# and mutes with its own app-state encoder and our GET …/chats shows it; our unarchive, mute and
# unmute are decoded by Baileys' resyncAppState).
# Not part of `cargo test`: it needs the npm registry.
# Usage: tools/baileys-companion/run.sh [stay seconds]
#   (JUDGE=companion, kinds, media or appstate runs one; the default runs all four)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
cargo build --release --bin wa-gateway
cd "$here"
npm install --no-audit --no-fund --loglevel=error
bin="$here/../../target/release/wa-gateway"
status=0
judge="${JUDGE:-all}"
case "$judge" in
all | companion | kinds | media | appstate) ;;
*)
	echo "JUDGE must be companion, kinds, media or appstate (or unset for all), not $judge" >&2
	exit 2
	;;
esac
if [ "$judge" = all ] || [ "$judge" = companion ]; then
	node companion.mjs "$bin" "${1:-75}" || status=1
fi
if [ "$judge" = all ] || [ "$judge" = kinds ]; then
	node kinds.mjs "$bin" || status=1
fi
if [ "$judge" = all ] || [ "$judge" = media ]; then
	node media.mjs "$bin" || status=1
fi
if [ "$judge" = all ] || [ "$judge" = appstate ]; then
	node appstate.mjs "$bin" || status=1
fi
exit "$status"
