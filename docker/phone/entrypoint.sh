#!/bin/bash
# A PeerBX demo phone: baresip registered as PHONE_USER@PEERBX_DOMAIN at its node, answering
# every call automatically, and (when CALL_TO is set) calling CALL_TO@PEERBX_DOMAIN after
# CALL_DELAY seconds, hanging up after CALL_SECONDS, and calling again every CALL_INTERVAL
# seconds (0: once).
#   PHONE_USER      user name (required), e.g. alice
#   PHONE_NODE      the node's SIP address HOST[:PORT] (required), e.g. node1:5060
#   PHONE_PASSWORD  digest password, when the node asks for one (it does on non-loopback
#                   addresses unless its auth is off)
#   PEERBX_DOMAIN   the overlay's SIP domain (default peerbx.local)
#   PHONE_LISTEN    baresip's SIP listen address (default 0.0.0.0:5060)
#   PHONE_CTRL      baresip's ctrl_tcp address (default 127.0.0.1:4444)
#   PHONE_TRANSPORT udp or tcp, to the node (default udp)
#   PHONE_WEBRTC    1: media as a browser phone takes it (ICE, DTLS-SRTP, RTP and RTCP on one
#                   port), so that browsers can call this phone and be called; 0 (default):
#                   plain RTP, as other softphones take it
#   BARESIP_CONF    configuration directory (default $HOME/.baresip)
set -euo pipefail

: "${PHONE_USER:?set PHONE_USER, e.g. alice}"
: "${PHONE_NODE:?set PHONE_NODE, the node HOST[:PORT], e.g. node1:5060}"
DOMAIN=${PEERBX_DOMAIN:-peerbx.local}
LISTEN=${PHONE_LISTEN:-0.0.0.0:5060}
CTRL=${PHONE_CTRL:-127.0.0.1:4444}
TRANSPORT=${PHONE_TRANSPORT:-udp}
case $TRANSPORT in udp | tcp) ;; *) echo "PHONE_TRANSPORT must be udp or tcp, not '$TRANSPORT'" >&2; exit 1 ;; esac
WEBRTC=${PHONE_WEBRTC:-0}
case $WEBRTC in 0 | 1) ;; *) echo "PHONE_WEBRTC must be 0 or 1, not '$WEBRTC'" >&2; exit 1 ;; esac
CONF=${BARESIP_CONF:-$HOME/.baresip}
TEMPLATE=${PHONE_TEMPLATE:-/etc/peerbx-phone/config}
CALL_TO=${CALL_TO:-}
CALL_DELAY=${CALL_DELAY:-15}
CALL_SECONDS=${CALL_SECONDS:-10}
CALL_INTERVAL=${CALL_INTERVAL:-60}

log() { echo "[phone $PHONE_USER] $*" >&2; }

node_host=${PHONE_NODE%:*}
node_port=${PHONE_NODE##*:}
[ "$node_port" = "$PHONE_NODE" ] && node_port=5060
# The outbound proxy is written as an address: the node's service name is resolved here once,
# waiting for it to appear (compose starts services in dependency order, DNS may lag).
node_ip=""
for _ in $(seq 1 60); do
  node_ip=$(getent ahostsv4 "$node_host" | awk 'NR==1 {print $1}') || true
  [ -n "$node_ip" ] && break
  sleep 1
done
[ -n "$node_ip" ] || { log "cannot resolve node host $node_host"; exit 1; }

mkdir -p "$CONF"
sed -e "s|@SIP_LISTEN@|$LISTEN|" -e "s|@CTRL_LISTEN@|$CTRL|" "$TEMPLATE" >"$CONF/config"
account="<sip:$PHONE_USER@$DOMAIN>;outbound=\"sip:$node_ip:$node_port;transport=$TRANSPORT\";regint=60;answermode=auto"
if [ -n "${PHONE_PASSWORD:-}" ]; then
  # An account line parameter ends at ';' and cannot hold quotes or spaces.
  case $PHONE_PASSWORD in *[\;\"[:space:]]*)
    log "PHONE_PASSWORD cannot contain ';', '\"' or white space in a baresip account line"
    exit 1
    ;;
  esac
  account="$account;auth_user=$PHONE_USER;auth_pass=$PHONE_PASSWORD"
fi
if [ "$WEBRTC" = 1 ]; then
  # Browsers send media only with ICE and DTLS-SRTP, and refuse an answer without rtcp-mux.
  sed -i -e 's/^rtcp_mux.*/rtcp_mux\t\tyes/' "$CONF/config"
  printf 'module\t\t\tice.so\nmodule\t\t\tdtls_srtp.so\n' >>"$CONF/config"
  account="$account;mediaenc=dtls_srtp;medianat=ice"
fi
printf '%s\n' "$account" >"$CONF/accounts"
: >"$CONF/contacts"
log "registering sip:$PHONE_USER@$DOMAIN at $node_ip:$node_port over $TRANSPORT (auto-answer on, WebRTC media $WEBRTC)"

baresip -f "$CONF" &
BARESIP=$!
trap 'kill -TERM "$BARESIP" 2>/dev/null; wait "$BARESIP"; exit 0' TERM INT

# One command through ctrl_tcp (a netstring holding JSON); prints baresip's reply.
ctrl() {
  local json="{\"command\":\"$1\",\"params\":\"${2:-}\",\"token\":\"$1\"}"
  exec 3<>"/dev/tcp/${CTRL%:*}/${CTRL##*:}" || return 1
  printf '%d:%s,' "${#json}" "$json" >&3
  timeout 2 cat <&3 || true
  exec 3<&- 3>&-
}

if [ -n "$CALL_TO" ]; then
  sleep "$CALL_DELAY"
  while kill -0 "$BARESIP" 2>/dev/null; do
    log "calling sip:$CALL_TO@$DOMAIN"
    ctrl dial "sip:$CALL_TO@$DOMAIN" >/dev/null || log "ctrl_tcp not reachable"
    sleep "$CALL_SECONDS"
    log "hanging up"
    ctrl hangup >/dev/null || true
    [ "$CALL_INTERVAL" -gt 0 ] || break
    sleep "$CALL_INTERVAL"
  done
fi
wait "$BARESIP"
