#!/usr/bin/env bash
# Multi-host test without Docker: the docker-compose.yml topology in Linux network namespaces.
#
# Creates a private bridge and four namespaces joined to it by veth pairs (10.203.0.1-4/24 by
# default; the subnet exists only inside the namespaces this script creates, the bridge has no
# address in the host namespace), starts one `peerbx start` node per namespace (node 1 founds
# the overlay, 2-4 bootstrap from it), registers a SIPp UAS as bob at node 3 and places a call
# from a SIPp UAC as alice at node 1 (INVITE/180/200/ACK/BYE through the overlay), and checks
# both SIPp exit codes. With PEERBX_NETNS_PHONES=baresip the phones are instead the demo's
# baresip phones (docker/phone/entrypoint.sh), each on a host of its own as in
# docker-compose.yml: alice at node 2, bob at node 3, carol at node 4 (10.203.0.21-23); alice
# calls bob and carol calls alice, and each call must be answered with media flowing both ways
# and end with the caller's BYE. Everything it created is removed on exit, on error and on
# Ctrl-C.
#
# Usage: sudo bash test/netns/run.sh        (after `npm ci && npm run build`)
# Exit: 0 call completed; 1 a step failed (the message says which, with log tails);
#       2 cannot run here (not root, no `ip netns`, no sipp) unless PEERBX_NETNS_OPTIONAL=1,
#       which turns those cases into "skipped: ..." and exit 0.
# Environment:
#   PEERBX_NETNS_OPTIONAL=1   skip (exit 0) instead of failing when the host cannot run this
#   PEERBX_NETNS_SUBNET       first three octets of the /24 to use (default 10.203.0)
#   PEERBX_NETNS_TIMEOUT      seconds to wait for each node's ready line (default 60)
#   PEERBX_NETNS_KEEP_LOGS=1  keep the work directory (data dirs, logs) after the run
#   PEERBX_NETNS_PASSWORD     if set, the nodes ask for digest auth and the phones answer with it
#   PEERBX_NETNS_PHONES       sipp (default) or baresip (needs Debian's baresip-core)
#   PEERBX_NETNS_SIP_ANY=1    the nodes listen for SIP on every interface (0.0.0.0), as an
#                             office box does; phones still reach each node at its address
#   PEERBX_BIN                the CLI entry (default packages/cli/dist/src/bin.js)
#   PEERBX_LOG_LEVEL          the nodes' log level (default info)
#   PEERBX_NETNS_NODE_ARGS    extra arguments for every `peerbx start` (word-split)
#   PEERBX_NETNS_HOST_GONE=1  after the call (sipp phones, no password): bob's host is
#                             unplugged while his phone rings, then called twice more; alice
#                             must get 480 each time
#   PEERBX_NETNS_NAT=1        after the call (sipp phones): carol's phone sits in a home network
#                             (192.168.77.0/24) behind a router namespace that masquerades onto
#                             the bridge; alice calls carol, then carol calls alice, who hangs
#                             up; every request must get through the router (needs iptables)
#   PEERBX_NETNS_NAT_SUBNET   first three octets of the home /24 (default 192.168.77)

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SCEN="$HERE/sipp"
BIN=${PEERBX_BIN:-$ROOT/packages/cli/dist/src/bin.js}
NET=${PEERBX_NETNS_SUBNET:-10.203.0}
READY_TIMEOUT=${PEERBX_NETNS_TIMEOUT:-60}
LOG_LEVEL=${PEERBX_LOG_LEVEL:-info}
DOMAIN=peerbx.local
NODES=4
PHONES=${PEERBX_NETNS_PHONES:-sipp}
case $PHONES in
  sipp) HOSTS=$NODES ;;
  baresip) HOSTS=$((NODES + 3)) ;;
  *)
    echo "error: PEERBX_NETNS_PHONES must be sipp or baresip, not '$PHONES'" >&2
    exit 2
    ;;
esac
OVERLAY_PORT=7400
SIP_PORT=5060
WS_PORT=5066

# Names unique to this run (interface names stay within 15 characters), so a leftover of a
# killed run or a concurrent run cannot collide with this one.
TAG=$(printf '%x' $(($$ % 65536)))
BR="pbx${TAG}-br0"
ns() { echo "pbx${TAG}-ns$1"; }
veth() { echo "pbx${TAG}-v$1"; }

log() { printf '[netns] %s\n' "$*" >&2; }

# Host i: nodes 1-4 at $NET.1-4, phone hosts 5-7 (baresip mode) at $NET.21-23.
host_ip() { if [ "$1" -le $NODES ]; then echo "$NET.$1"; else echo "$NET.$((16 + $1))"; fi; }

cannot_run() {
  if [ "${PEERBX_NETNS_OPTIONAL:-}" = 1 ]; then
    echo "skipped: $1"
    exit 0
  fi
  echo "error: $1 (set PEERBX_NETNS_OPTIONAL=1 to skip instead)" >&2
  exit 2
}

# --- can this host run it? -----------------------------------------------------------------
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null 2>&1 || ! ip netns list >/dev/null 2>&1; then
  cannot_run "needs root and ip netns"
fi
PROBE="pbx${TAG}-probe"
if ! ip netns add "$PROBE" >/dev/null 2>&1; then
  cannot_run "needs root and ip netns"
fi
ip netns del "$PROBE" >/dev/null 2>&1
if ! ip link add "pbx${TAG}-pb" type bridge >/dev/null 2>&1; then
  cannot_run "needs root and ip netns (cannot create a bridge)"
fi
ip link del "pbx${TAG}-pb" >/dev/null 2>&1
if [ "$PHONES" = sipp ] && ! command -v sipp >/dev/null 2>&1; then
  cannot_run "needs sipp (apt-get install sip-tester)"
fi
if [ "$PHONES" = baresip ] && ! command -v baresip >/dev/null 2>&1; then
  cannot_run "needs baresip (apt-get install baresip-core)"
fi
NAT=${PEERBX_NETNS_NAT:-}
if [ "$NAT" = 1 ] && ! command -v iptables >/dev/null 2>&1; then
  cannot_run "needs iptables for the NAT router (apt-get install iptables)"
fi
NODE=$(command -v node) || cannot_run "needs node"
if [ ! -f "$BIN" ]; then
  echo "error: $BIN not found; run 'npm ci && npm run build' first" >&2
  exit 1
fi
# phone-ctl.mjs uses the phone control client the CLI's tests build.
if [ "$PHONES" = baresip ] && [ ! -f "$ROOT/packages/cli/dist/test/baresip.js" ]; then
  echo "error: packages/cli/dist/test/baresip.js not found; run 'npm run build' first" >&2
  exit 1
fi

if [ "${PEERBX_NETNS_HOST_GONE:-}" = 1 ] && { [ "$PHONES" != sipp ] || [ -n "${PEERBX_NETNS_PASSWORD:-}" ]; }; then
  echo "error: PEERBX_NETNS_HOST_GONE=1 runs with the SIPp phones and no PEERBX_NETNS_PASSWORD" >&2
  exit 2
fi
if [ "$NAT" = 1 ] && [ "$PHONES" != sipp ]; then
  echo "error: PEERBX_NETNS_NAT=1 runs with the SIPp phones" >&2
  exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/peerbx-netns.XXXXXX")
PIDS=()
CREATED_NS=()
CREATED_LINKS=()
FAILED=""

# --- cleanup: always, exactly once ----------------------------------------------------------
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  # SIPp and nodes: SIGTERM (the nodes leave the overlay), then SIGKILL what is left.
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 1 50); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  wait 2>/dev/null
  # Anything still running inside our namespaces (children we did not track).
  for n in "${CREATED_NS[@]}"; do
    for pid in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  done
  for n in "${CREATED_NS[@]}"; do ip netns del "$n" 2>/dev/null; done
  for l in "${CREATED_LINKS[@]}"; do
    ip link show "$l" >/dev/null 2>&1 && ip link del "$l" 2>/dev/null
  done
  if [ "${PEERBX_NETNS_KEEP_LOGS:-}" = 1 ] || [ -n "$FAILED" ]; then
    log "logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; FAILED=interrupted; exit 130' INT
trap 'log "terminated"; FAILED=terminated; exit 143' TERM HUP

fail() {
  FAILED=$1
  echo "FAIL: $1" >&2
  shift
  for f in "$@"; do
    if [ -s "$f" ]; then
      echo "--- tail of $f" >&2
      tail -n 30 "$f" >&2
    fi
  done
  exit 1
}

run() { "$@" || fail "command failed: $*"; }

# Runs a command in the background and waits for it, so SIGINT/SIGTERM reach our traps at once
# instead of after the command ends; returns the command's exit status.
fg_wait() {
  "$@" &
  local pid=$!
  PIDS+=("$pid")
  wait "$pid"
}

# --- network: a bridge, and per node a namespace with one end of a veth pair ----------------
log "creating bridge $BR and $HOSTS namespaces on $NET.0/24 (work dir $WORK)"
run ip link add "$BR" type bridge
CREATED_LINKS+=("$BR")
run ip link set "$BR" up
for i in $(seq 1 $HOSTS); do
  n=$(ns "$i")
  v=$(veth "$i")
  run ip netns add "$n"
  CREATED_NS+=("$n")
  run ip link add "$v" type veth peer name "${v}p"
  CREATED_LINKS+=("$v")
  run ip link set "${v}p" netns "$n"
  run ip -n "$n" link set "${v}p" name eth0
  run ip -n "$n" addr add "$(host_ip "$i")/24" dev eth0
  run ip -n "$n" link set eth0 up
  run ip -n "$n" link set lo up
  run ip link set "$v" master "$BR"
  run ip link set "$v" up
done

# Bridged traffic can be filtered by the host firewall when br_netfilter is loaded (hosts that
# run Docker set FORWARD to DROP); check reachability before blaming the nodes.
if command -v ping >/dev/null 2>&1; then
  for i in $(seq 2 $HOSTS); do
    ip="$(host_ip "$i")"
    ip netns exec "$(ns 1)" ping -c 1 -W 2 "$ip" >/dev/null 2>&1 || {
      ip netns exec "$(ns 1)" ping -c 2 -W 2 "$ip" >/dev/null 2>&1 ||
        fail "$NET.1 cannot reach $ip over bridge $BR (host firewall on bridged traffic? see /proc/sys/net/bridge/bridge-nf-call-iptables)"
    }
  done
  log "namespaces reach each other over $BR"
fi

# --- NAT (PEERBX_NETNS_NAT=1): a home network behind a masquerading router --------------------
# The router has one leg on the bridge ($NET.31, the home's one public address) and one in the
# home network ($HOME_NET.1); the home host ($HOME_NET.2, carol's phone) routes everything
# through it. The nodes have no route to $HOME_NET.0/24: only the router's conntrack mappings
# lead in, and only for packets from the address:port the home host's packets went to (Linux
# NAT is address-and-port-dependent), so a node must answer from the socket the phone's
# REGISTER reached. UDP source ports are remapped (20000-29999), as many home routers and every
# carrier-grade NAT do: the phone's Via and Contact name neither its public address nor port.
# The rules live in the router's namespace and go with it on cleanup; the host's are untouched.
HOME_NET=${PEERBX_NETNS_NAT_SUBNET:-192.168.77}
ROUTER_IP=$NET.31
ROUTER_NS=$(ns r)
HOME_NS=$(ns h)
CAROL_IP=$HOME_NET.2
if [ "$NAT" = 1 ]; then
  log "NAT: router $ROUTER_IP (ns $ROUTER_NS) masquerades home network $HOME_NET.0/24 (ns $HOME_NS)"
  run ip netns add "$ROUTER_NS"
  CREATED_NS+=("$ROUTER_NS")
  run ip netns add "$HOME_NS"
  CREATED_NS+=("$HOME_NS")
  # Public leg: a veth to the bridge, like the nodes'.
  v=$(veth r)
  run ip link add "$v" type veth peer name "${v}p"
  CREATED_LINKS+=("$v")
  run ip link set "${v}p" netns "$ROUTER_NS"
  run ip -n "$ROUTER_NS" link set "${v}p" name eth0
  run ip -n "$ROUTER_NS" addr add "$ROUTER_IP/24" dev eth0
  run ip -n "$ROUTER_NS" link set eth0 up
  run ip -n "$ROUTER_NS" link set lo up
  run ip link set "$v" master "$BR"
  run ip link set "$v" up
  # Home leg: a veth whose two ends both live in namespaces (router eth1, home eth0).
  v=$(veth h)
  run ip link add "$v" type veth peer name "${v}p"
  CREATED_LINKS+=("$v")
  run ip link set "$v" netns "$ROUTER_NS"
  run ip link set "${v}p" netns "$HOME_NS"
  run ip -n "$ROUTER_NS" link set "$v" name eth1
  run ip -n "$ROUTER_NS" addr add "$HOME_NET.1/24" dev eth1
  run ip -n "$ROUTER_NS" link set eth1 up
  run ip -n "$HOME_NS" link set "${v}p" name eth0
  run ip -n "$HOME_NS" addr add "$CAROL_IP/24" dev eth0
  run ip -n "$HOME_NS" link set eth0 up
  run ip -n "$HOME_NS" link set lo up
  run ip -n "$HOME_NS" route add default via "$HOME_NET.1"
  run ip netns exec "$ROUTER_NS" sysctl -qw net.ipv4.ip_forward=1
  # Masquerade what leaves for the bridge (UDP and TCP onto remapped ports); let in from the
  # bridge only what answers a mapping, as a home router's firewall does.
  ipt() { ip netns exec "$ROUTER_NS" iptables -w "$@"; }
  {
    ipt -t nat -A POSTROUTING -o eth0 -p udp -j MASQUERADE --to-ports 20000-29999 &&
      ipt -t nat -A POSTROUTING -o eth0 -p tcp -j MASQUERADE --to-ports 20000-29999 &&
      ipt -t nat -A POSTROUTING -o eth0 -j MASQUERADE &&
      ipt -A FORWARD -i eth0 -o eth1 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT &&
      ipt -A FORWARD -i eth0 -o eth1 -j DROP
  } >"$WORK/iptables.out" 2>&1 ||
    cannot_run "cannot set up NAT with iptables in a namespace (nf_nat/conntrack missing?): $(tail -n 3 "$WORK/iptables.out")"
  # The test proves nothing if a node could reach the home network directly (the REGISTER's
  # 200 then shows the home host's packets do pass the router).
  for i in $(seq 1 $NODES); do
    ip -n "$(ns "$i")" route get "$CAROL_IP" >/dev/null 2>&1 &&
      fail "node $i's host has a route to $CAROL_IP: the home network is not behind the NAT"
  done
fi

# --- nodes ----------------------------------------------------------------------------------
NODE_PID=()
# Nodes on non-loopback addresses ask phones for digest auth by default. By default the test
# turns phone authentication off (PEERBX_AUTH=never), as docker-compose.yml does. With
# PEERBX_NETNS_PASSWORD, the nodes instead get a config file that requires auth, offers MD5
# only (SIPp 3.6 and baresip 1.0 give up on SHA-256) and knows alice, bob and carol, and the
# phones answer the challenges.
AUTH_ENV=(PEERBX_AUTH=never)
AUTH_ARGS=()
if [ -n "${PEERBX_NETNS_PASSWORD:-}" ]; then
  AUTH_ENV=()
  PEERBX_NETNS_PASSWORD=$PEERBX_NETNS_PASSWORD "$NODE" -e '
    const password = process.env.PEERBX_NETNS_PASSWORD;
    process.stdout.write(JSON.stringify({ auth: "always", authAlgorithms: ["MD5"], users: { alice: { password }, bob: { password }, carol: { password } } }));
  ' >"$WORK/auth.json" || fail "cannot write $WORK/auth.json"
  AUTH_ARGS=(--config "$WORK/auth.json")
fi
AUTH_HINT="a 401/407 means the node asks for digest auth: check its auth setting (PEERBX_AUTH) and users"
start_node() {
  local i=$1
  local args=(start
    --data-dir "$WORK/node$i"
    --overlay "$NET.$i:$OVERLAY_PORT"
    --sip "$([ "${PEERBX_NETNS_SIP_ANY:-}" = 1 ] && echo 0.0.0.0 || echo "$NET.$i"):$SIP_PORT"
    --ws "$NET.$i:$WS_PORT"
    --domain "$DOMAIN"
    --log-level "$LOG_LEVEL")
  [ "$i" != 1 ] && args+=(--bootstrap "$NET.1:$OVERLAY_PORT")
  # shellcheck disable=SC2206 # word splitting intended
  args+=("${AUTH_ARGS[@]}" ${PEERBX_NETNS_NODE_ARGS:-})
  mkdir -p "$WORK/node$i"
  # `ip netns exec` execs the command, so $! is the node's own pid.
  ip netns exec "$(ns "$i")" env -u PEERBX_BOOTSTRAP -u PEERBX_CONFIG -u PEERBX_AUTH "${AUTH_ENV[@]}" \
    "$NODE" "$BIN" "${args[@]}" >"$WORK/node$i.out" 2>"$WORK/node$i.err" </dev/null &
  PIDS+=($!)
  NODE_PID[i]=$!
}

wait_ready() {
  local i=$1 deadline=$((SECONDS + READY_TIMEOUT))
  while :; do
    if grep -q '^peerbx ready ' "$WORK/node$i.out" 2>/dev/null; then
      log "node $i: $(grep -m1 '^peerbx ready ' "$WORK/node$i.out")"
      return 0
    fi
    if ! kill -0 "${NODE_PID[$i]}" 2>/dev/null; then
      wait "${NODE_PID[$i]}" 2>/dev/null
      fail "node $i ($NET.$i) exited (status $?) before its ready line" "$WORK/node$i.out" "$WORK/node$i.err"
    fi
    [ $SECONDS -ge $deadline ] &&
      fail "node $i ($NET.$i) printed no ready line within ${READY_TIMEOUT}s" "$WORK/node$i.out" "$WORK/node$i.err"
    sleep 0.2
  done
}

log "starting node 1 ($NET.1, founds the overlay)"
start_node 1
wait_ready 1
log "starting nodes 2-$NODES (bootstrap $NET.1:$OVERLAY_PORT)"
for i in $(seq 2 $NODES); do start_node "$i"; done
for i in $(seq 2 $NODES); do wait_ready "$i"; done

# --- baresip phones on hosts of their own (PEERBX_NETNS_PHONES=baresip) ----------------------
if [ "$PHONES" = baresip ]; then
  # As in docker-compose.yml: alice at node 2, bob at node 3, carol at node 4, each phone in a
  # namespace of its own (hosts 5-7), started by the demo phone's entrypoint. Each namespace
  # has its own loopback, so every phone's ctrl_tcp is 127.0.0.1:4444 inside it.
  phone_host() { case $1 in alice) echo 5 ;; bob) echo 6 ;; carol) echo 7 ;; esac; }
  for user in alice bob carol; do
    h=$(phone_host "$user")
    node=$((h - 3))
    log "$user: baresip on $(host_ip "$h") (ns $(ns "$h")), registering at node $node ($NET.$node:$SIP_PORT)"
    ip netns exec "$(ns "$h")" env PHONE_USER="$user" PHONE_NODE="$NET.$node:$SIP_PORT" \
      PEERBX_DOMAIN="$DOMAIN" PHONE_LISTEN="$(host_ip "$h"):5060" PHONE_CTRL=127.0.0.1:4444 \
      BARESIP_CONF="$WORK/phone-$user" PHONE_TEMPLATE="$ROOT/docker/phone/config" \
      ${PEERBX_NETNS_PASSWORD:+PHONE_PASSWORD="$PEERBX_NETNS_PASSWORD"} \
      bash "$ROOT/docker/phone/entrypoint.sh" >"$WORK/phone-$user.out" 2>&1 </dev/null &
    PIDS+=($!)
  done
  # phone-ctl.mjs inside the phone's namespace: commands and the events they cause.
  ctl() {
    local user=$1
    shift
    ip netns exec "$(ns "$(phone_host "$user")")" "$NODE" "$HERE/phone-ctl.mjs" 127.0.0.1:4444 "$@"
  }
  for user in alice bob carol; do
    fg_wait ctl "$user" registered >"$WORK/ctl-$user.out" 2>&1 ||
      fail "$user's phone did not register at its node ($AUTH_HINT)" "$WORK/ctl-$user.out" "$WORK/phone-$user.out"
  done
  log "alice, bob and carol registered"
  # One call: the callee's phone answers by itself; both must see the call up and the other's
  # RTP, then the caller hangs up and the callee sees the BYE.
  call() {
    local caller=$1 callee=$2 out="$WORK/call-$1-$2"
    ctl "$callee" "wait:CALL_ESTABLISHED=sip:$caller@" wait:CALL_RTPESTAB \
      "wait:CALL_CLOSED=reset by peer" >"$out-callee.out" 2>&1 &
    local watcher=$!
    PIDS+=("$watcher")
    for _ in $(seq 1 $((${PHONE_CTL_TIMEOUT:-20} * 10))); do
      grep -q '^ready' "$out-callee.out" 2>/dev/null && break
      kill -0 "$watcher" 2>/dev/null || break
      sleep 0.1
    done
    grep -q '^ready' "$out-callee.out" 2>/dev/null ||
      fail "cannot reach $callee's phone through its ctrl_tcp" "$out-callee.out" "$WORK/phone-$callee.out"
    log "$caller calls $callee"
    fg_wait ctl "$caller" "do:dial sip:$callee@$DOMAIN" wait:CALL_ESTABLISHED wait:CALL_RTPESTAB \
      >"$out-caller.out" 2>&1 ||
      fail "$caller's call to $callee failed at $caller's phone" "$out-caller.out" "$out-callee.out" \
        "$WORK/phone-$caller.out" "$WORK/phone-$callee.out"
    # Hang up only once the callee has the caller's RTP too.
    for _ in $(seq 1 200); do
      grep -q '^done wait:CALL_RTPESTAB' "$out-callee.out" 2>/dev/null && break
      kill -0 "$watcher" 2>/dev/null || break
      sleep 0.1
    done
    fg_wait ctl "$caller" do:hangup wait:CALL_CLOSED >>"$out-caller.out" 2>&1 ||
      fail "$caller could not hang up the call to $callee" "$out-caller.out" "$WORK/phone-$caller.out"
    wait "$watcher" ||
      fail "$caller's call to $callee failed at $callee's phone" "$out-callee.out" "$out-caller.out" \
        "$WORK/phone-$callee.out"
  }
  call alice bob
  call carol alice
  for i in $(seq 1 $NODES); do
    kill -0 "${NODE_PID[$i]}" 2>/dev/null || fail "node $i exited during the test" "$WORK/node$i.err"
  done
  echo "PASS: baresip phones on their own hosts: alice@node2 called bob@node3, carol@node4 called alice@node2; answered, RTP both ways, BYE"
  exit 0
fi

# --- phones: bob (SIPp UAS) at node 3, alice (SIPp UAC) at node 1 ---------------------------
SIPP_COMMON=(-m 1 -nostdin -timeout 30s -timeout_error -max_recv_loops 10)
AUTH_BOB=()
AUTH_ALICE=()
if [ -n "${PEERBX_NETNS_PASSWORD:-}" ]; then
  AUTH_BOB=(-au bob -ap "$PEERBX_NETNS_PASSWORD")
  AUTH_ALICE=(-au alice -ap "$PEERBX_NETNS_PASSWORD")
fi
BOB_NS=$(ns 3)
ALICE_NS=$(ns 1)
BOB_IP=$NET.3
ALICE_IP=$NET.1
UAS_PORT=5070

# start_uas who ns ip port scenario logs [sipp args...]: a SIPp UAS in the background, its
# output in $WORK/<logs>.out and errors in $WORK/<logs>.err.log; its PID in STARTED_PID.
start_uas() {
  local who=$1 ns=$2 ip=$3 port=$4 scenario=$5 logs=$WORK/$6
  shift 6
  ip netns exec "$ns" sipp -sf "$SCEN/$scenario" -i "$ip" -p "$port" "${SIPP_COMMON[@]}" \
    -trace_err -error_file "$logs.err.log" "$@" >"$logs.out" 2>&1 </dev/null &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  sleep 0.5
  kill -0 "$STARTED_PID" 2>/dev/null || fail "SIPp UAS ($who) did not start" "$logs.out" "$logs.err.log"
}

log "bob: SIPp UAS on $BOB_IP:$UAS_PORT (ns $BOB_NS)"
start_uas bob "$BOB_NS" "$BOB_IP" "$UAS_PORT" uas-call.xml uas
UAS_PID=$STARTED_PID

log "bob: REGISTER sip:bob@$DOMAIN at node 3 ($BOB_IP:$SIP_PORT), Contact $BOB_IP:$UAS_PORT"
fg_wait ip netns exec "$BOB_NS" sipp "$BOB_IP:$SIP_PORT" -sf "$SCEN/register.xml" -i "$BOB_IP" -p 5071 \
  -s bob -set domain "$DOMAIN" -set contact_port "$UAS_PORT" "${AUTH_BOB[@]}" "${SIPP_COMMON[@]}" \
  -trace_err -error_file "$WORK/register.err.log" >"$WORK/register.out" 2>&1 </dev/null
rc=$?
[ $rc = 0 ] || fail "bob's REGISTER at node 3 failed (sipp exit $rc; $AUTH_HINT)" \
  "$WORK/register.err.log" "$WORK/register.out" "$WORK/node3.err"

log "alice: INVITE sip:bob@$DOMAIN via node 1 ($ALICE_IP:$SIP_PORT)"
fg_wait ip netns exec "$ALICE_NS" sipp "$ALICE_IP:$SIP_PORT" -sf "$SCEN/uac-call.xml" -i "$ALICE_IP" -p 5061 \
  -s bob -set domain "$DOMAIN" -set caller alice "${AUTH_ALICE[@]}" "${SIPP_COMMON[@]}" \
  -trace_err -error_file "$WORK/uac.err.log" >"$WORK/uac.out" 2>&1 </dev/null
rc=$?
[ $rc = 0 ] || fail "alice's call to bob across nodes 1 -> 3 failed (sipp UAC exit $rc)" \
  "$WORK/uac.err.log" "$WORK/uac.out" "$WORK/uas.err.log" "$WORK/node1.err" "$WORK/node3.err"

# The UAS ends after the BYE; give it a few seconds to exit, then read its status.
for _ in $(seq 1 50); do kill -0 "$UAS_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$UAS_PID" 2>/dev/null; then
  fail "SIPp UAS (bob) still running after the call ended" "$WORK/uas.err.log" "$WORK/uas.out"
fi
wait "$UAS_PID"
rc=$?
[ $rc = 0 ] || fail "bob's side of the call failed (sipp UAS exit $rc)" "$WORK/uas.err.log" "$WORK/uas.out"

# --- carol behind NAT (PEERBX_NETNS_NAT=1) ---------------------------------------------------
# carol's phone (SIPp, $CAROL_IP:5070 in the home network) registers at node 3 through the
# router: its Via and Contact name $CAROL_IP:5070, its packets arrive from $ROUTER_IP and a
# remapped port. Her UAS uses that one local port, as a phone uses one socket, so the router
# keeps the one mapping the REGISTER opened (the nodes cannot reach her otherwise).
# 1. alice (node 1) calls carol: node 3 must send the INVITE, and alice's ACK and BYE, to that
#    mapping, not to the private Contact (unreachable from the nodes).
# 2. carol calls alice (node 1, public), who answers and hangs up: alice's BYE must come back
#    in to carol through node 3 and the router. She calls from another local port than the one
#    she registered from (a second line, an app with a socket of its own), so node 3 knows
#    that mapping only from the INVITE itself: its Record-Route carries it for the dialog.
NAT_NOTE=""
if [ "$NAT" = 1 ]; then
  AUTH_CAROL=()
  [ -n "${PEERBX_NETNS_PASSWORD:-}" ] && AUTH_CAROL=(-au carol -ap "$PEERBX_NETNS_PASSWORD")
  CAROL_PORT=5070
  # alice's phone for the call from carol: a UAS of its own, registered from another port.
  ALICE_UAS_PORT=5080
  nat_wait_uas() { # pid name log...: the UAS must end (by itself, after the BYE) with status 0
    local pid=$1 what=$2
    shift 2
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && fail "$what still running after the call ended" "$@"
    wait "$pid"
    local rc=$?
    [ $rc = 0 ] || fail "$what failed (sipp exit $rc)" "$@"
  }

  log "carol: REGISTER sip:carol@$DOMAIN at node 3 from $CAROL_IP:$CAROL_PORT, behind the router ($ROUTER_IP)"
  fg_wait ip netns exec "$HOME_NS" sipp "$NET.3:$SIP_PORT" -sf "$SCEN/register.xml" -i "$CAROL_IP" \
    -p "$CAROL_PORT" -s carol -set domain "$DOMAIN" -set contact_port "$CAROL_PORT" "${AUTH_CAROL[@]}" \
    "${SIPP_COMMON[@]}" -trace_err -error_file "$WORK/nat-register.err.log" \
    -trace_msg -message_file "$WORK/nat-register.msg" >"$WORK/nat-register.out" 2>&1 </dev/null
  rc=$?
  [ $rc = 0 ] || fail "carol's REGISTER at node 3 through the NAT failed (sipp exit $rc; $AUTH_HINT)" \
    "$WORK/nat-register.err.log" "$WORK/nat-register.out" "$WORK/node3.err"
  # The node's 200 says where the REGISTER came from (Via received/rport, RFC 3581): the
  # router's address and a remapped port, else the test is not going through the NAT.
  via=$(grep -i 'Via:.*received=' "$WORK/nat-register.msg" 2>/dev/null | tail -n 1)
  MAPPED="$(sed -n 's/.*received=\([0-9.]*\).*/\1/p' <<<"$via"):$(sed -n 's/.*rport=\([0-9]*\).*/\1/p' <<<"$via")"
  case $MAPPED in
    "$ROUTER_IP":2[0-9][0-9][0-9][0-9]) log "carol's REGISTER came to node 3 from $MAPPED (the router's mapping)" ;;
    *) fail "node 3's 200 to carol's REGISTER names no source $ROUTER_IP:20000-29999 (got '$MAPPED'): not through the NAT?" "$WORK/nat-register.msg" ;;
  esac

  log "carol: SIPp UAS on $CAROL_IP:$CAROL_PORT (the port she registered from)"
  start_uas carol "$HOME_NS" "$CAROL_IP" "$CAROL_PORT" uas-call.xml nat-uas \
    -trace_msg -message_file "$WORK/nat-uas.msg"
  NAT_UAS_PID=$STARTED_PID

  log "alice: INVITE sip:carol@$DOMAIN via node 1; it must reach carol through the NAT"
  fg_wait ip netns exec "$ALICE_NS" sipp "$ALICE_IP:$SIP_PORT" -sf "$SCEN/uac-call.xml" -i "$ALICE_IP" \
    -p 5062 -s carol -set domain "$DOMAIN" -set caller alice "${AUTH_ALICE[@]}" "${SIPP_COMMON[@]}" \
    -trace_err -error_file "$WORK/nat-uac.err.log" >"$WORK/nat-uac.out" 2>&1 </dev/null
  rc=$?
  [ $rc = 0 ] || fail "alice's call to carol behind the NAT failed (sipp UAC exit $rc)" \
    "$WORK/nat-uac.err.log" "$WORK/nat-uac.out" "$WORK/nat-uas.err.log" "$WORK/node1.err" "$WORK/node3.err"
  # The UAS ends only once alice's BYE got through the router to it.
  nat_wait_uas "$NAT_UAS_PID" "carol's side of alice's call (the BYE must reach her through the NAT)" \
    "$WORK/nat-uas.err.log" "$WORK/nat-uas.out" "$WORK/node3.err"

  log "alice: SIPp UAS on $ALICE_IP:$ALICE_UAS_PORT that answers and hangs up, registered at node 1"
  start_uas alice "$ALICE_NS" "$ALICE_IP" "$ALICE_UAS_PORT" uas-hangup.xml nat-alice-uas
  NAT_ALICE_PID=$STARTED_PID
  fg_wait ip netns exec "$ALICE_NS" sipp "$ALICE_IP:$SIP_PORT" -sf "$SCEN/register.xml" -i "$ALICE_IP" \
    -p $((ALICE_UAS_PORT + 1)) -s alice -set domain "$DOMAIN" -set contact_port "$ALICE_UAS_PORT" \
    "${AUTH_ALICE[@]}" "${SIPP_COMMON[@]}" -trace_err -error_file "$WORK/nat-alice-reg.err.log" \
    >"$WORK/nat-alice-reg.out" 2>&1 </dev/null
  rc=$?
  [ $rc = 0 ] || fail "alice's REGISTER at node 1 failed (sipp exit $rc; $AUTH_HINT)" \
    "$WORK/nat-alice-reg.err.log" "$WORK/nat-alice-reg.out" "$WORK/node1.err"

  log "carol: INVITE sip:alice@$DOMAIN via node 3 from behind the NAT (port $((CAROL_PORT + 2)), not the registered one); alice answers and hangs up"
  fg_wait ip netns exec "$HOME_NS" sipp "$NET.3:$SIP_PORT" -sf "$SCEN/uac-hungup.xml" -i "$CAROL_IP" \
    -p $((CAROL_PORT + 2)) -s alice -set domain "$DOMAIN" -set caller carol "${AUTH_CAROL[@]}" \
    "${SIPP_COMMON[@]}" -trace_err -error_file "$WORK/nat-out.err.log" \
    >"$WORK/nat-out.out" 2>&1 </dev/null
  rc=$?
  [ $rc = 0 ] || fail "carol's call out from behind the NAT to alice failed, or alice's BYE did not reach her (sipp UAC exit $rc)" \
    "$WORK/nat-out.err.log" "$WORK/nat-out.out" "$WORK/nat-alice-uas.err.log" "$WORK/node3.err" "$WORK/node1.err"
  nat_wait_uas "$NAT_ALICE_PID" "alice's side of carol's call (her BYE must be answered)" \
    "$WORK/nat-alice-uas.err.log" "$WORK/nat-alice-uas.out" "$WORK/node1.err"

  NAT_NOTE="; carol behind NAT ($CAROL_IP:$CAROL_PORT seen as $MAPPED) at node 3: called by alice@node1, called alice@node1 who hung up"
fi

# --- bob's host unplugged (PEERBX_NETNS_HOST_GONE=1) ----------------------------------------
# A host that is really gone (its cable pulled: nothing answers, not even its kernel, unlike a
# frozen process) while bob's phone rings, then for new calls: alice must hear 480, not ring
# until Timer C (3 min) nor wait 32 s for a 408. SIPp's -timeout (25 s) bounds each wait.
GONE_NOTE=""
if [ "${PEERBX_NETNS_HOST_GONE:-}" = 1 ]; then
  GONE_SIPP=(-m 1 -nostdin -timeout 25s -timeout_error -max_recv_loops 10)
  now() { date +%s.%N; }
  since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
  log "bob: a SIPp UAS that rings and is never answered"
  ip netns exec "$BOB_NS" sipp -sf "$SCEN/uas-ring.xml" -i "$BOB_IP" -p "$UAS_PORT" \
    "${SIPP_COMMON[@]}" -trace_msg -message_file "$WORK/uas-ring.msg" \
    >"$WORK/uas-ring.out" 2>&1 </dev/null &
  PIDS+=($!)
  sleep 0.5
  # Alice's n-th call to bob that must be answered 480 (SIPp's logs: $WORK/uac-gone<n>.*).
  unavailable_call() {
    ip netns exec "$ALICE_NS" sipp "$ALICE_IP:$SIP_PORT" -sf "$SCEN/uac-unavailable.xml" \
      -i "$ALICE_IP" -p $((5061 + $1)) -s bob -set domain "$DOMAIN" -set caller alice \
      "${GONE_SIPP[@]}" -trace_err -error_file "$WORK/uac-gone$1.err.log" \
      >"$WORK/uac-gone$1.out" 2>&1 </dev/null
  }
  gone_fail() { fail "$1 (sipp UAC exit $2)" "$WORK/uac-gone$3.err.log" "$WORK/uac-gone$3.out" "$WORK/node1.err"; }
  log "alice: INVITE sip:bob@$DOMAIN; bob's host is unplugged once his phone rings"
  unavailable_call 1 &
  UAC_PID=$!
  PIDS+=("$UAC_PID")
  for _ in $(seq 1 100); do
    grep -q 'SIP/2.0 180' "$WORK/uas-ring.msg" 2>/dev/null && break
    kill -0 "$UAC_PID" 2>/dev/null || break
    sleep 0.1
  done
  grep -q 'SIP/2.0 180' "$WORK/uas-ring.msg" 2>/dev/null ||
    fail "bob's phone did not ring (or alice's call ended before it did)" "$WORK/uas-ring.out" \
      "$WORK/uac-gone1.err.log" "$WORK/uac-gone1.out" "$WORK/node3.err"
  sleep 0.3 # the 180 on its way to alice
  run ip link set "$(veth 3)" down
  T0=$(now)
  wait "$UAC_PID" || gone_fail "alice did not get 480 after bob's host went while ringing" $? 1
  RINGING=$(since "$T0")
  log "alice got 480 ${RINGING}s after bob's host went (his phone was ringing)"
  T0=$(now)
  fg_wait unavailable_call 2 || gone_fail "a new call to bob, whose host is gone, did not get 480" $? 2
  NEWCALL=$(since "$T0")
  log "a new call got 480 in ${NEWCALL}s (node 1 dialled node 3 and gave up)"
  # Node 1 remembers the dial that failed: the next call is not made to wait for another.
  T0=$(now)
  fg_wait unavailable_call 3 || gone_fail "a third call to bob did not get 480" $? 3
  NEXTCALL=$(since "$T0")
  log "the call after that got 480 in ${NEXTCALL}s"
  GONE_NOTE="; bob's host unplugged: 480 ${RINGING}s after while ringing, ${NEWCALL}s for a new call, ${NEXTCALL}s for the next"
fi

# Every node must still be running: a crash during the call is a failure too.
for i in $(seq 1 $NODES); do
  kill -0 "${NODE_PID[$i]}" 2>/dev/null || fail "node $i exited during the test" "$WORK/node$i.err"
done

echo "PASS: alice@node1 ($ALICE_IP) called bob@node3 ($BOB_IP) across $NODES namespaces: INVITE/180/200/ACK/BYE$NAT_NOTE$GONE_NOTE"
