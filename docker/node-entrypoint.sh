#!/bin/sh
# Starts `peerbx start` from environment variables, so compose files and `docker run -e` can
# configure a node without repeating the whole command line. Extra arguments are appended.
#   PEERBX_DATA_DIR   data directory (default /data)
#   PEERBX_OVERLAY    overlay listen HOST:PORT (default 0.0.0.0:7400)
#   PEERBX_BOOTSTRAP  bootstrap HOST:PORT list, comma or space separated; empty founds an overlay
#   PEERBX_SIP        SIP UDP+TCP listen HOST:PORT (default 0.0.0.0:5060)
#   PEERBX_WS         SIP over WebSocket listen HOST:PORT (default 0.0.0.0:5066)
#   PEERBX_DOMAIN     the overlay's SIP domain (default peerbx.local)
#   PEERBX_LOG_LEVEL  trace|debug|info|warn|error|fatal|silent (default info)
set -eu

set -- --data-dir "${PEERBX_DATA_DIR:-/data}" \
  --overlay "${PEERBX_OVERLAY:-0.0.0.0:7400}" \
  --sip "${PEERBX_SIP:-0.0.0.0:5060}" \
  --ws "${PEERBX_WS:-0.0.0.0:5066}" \
  --domain "${PEERBX_DOMAIN:-peerbx.local}" \
  --log-level "${PEERBX_LOG_LEVEL:-info}" \
  "$@"

for b in $(echo "${PEERBX_BOOTSTRAP:-}" | tr ',' ' '); do
  set -- "$@" --bootstrap "$b"
done
# The flags above carry every setting; keep the CLI from reading a second, differently
# formatted copy of the bootstrap list from the environment.
unset PEERBX_BOOTSTRAP

# exec: node replaces this shell, so `docker stop`'s SIGTERM reaches it directly and the node
# leaves the overlay gracefully.
exec node "${PEERBX_BIN:-/app/packages/cli/dist/src/bin.js}" start "$@"
