#!/usr/bin/env bash
# Browser end-to-end tests and the JS client's tests, against real switchboard-edge (and, for the cluster
# tests, switchboard-router and nats-server) processes:
#   - palava.test.mjs: unmodified palava-client 2.2.1 in headless Chromium, standalone and across a cluster
#     (3 nats-server nodes with JetStream, 2 switchboard-routers, 2 switchboard-edges);
#   - demo.test.mjs: the demo page the edge serves, standalone, across a cluster, calling palava-client,
#     relayed through a real coturn (turnserver) with the TURN credentials the edge mints, and with join
#     tokens (hosted mode);
#   - hosted.test.mjs: palava-client 2.2.1 with join tokens against an edge in hosted mode (--auth tokens):
#     a call, and every refusal proved by the edge's counters;
#   - sdk.test.mjs: the JS client (edge/web/sdk/switchboard.js) in node, against a spawned edge: joins,
#     signaling, typed errors, keepalive, reconnecting after restarts and shutdowns, and join tokens;
#   - examples.test.mjs: the token-minting examples of docs/hosting.md (docs/examples/, Node jsonwebtoken and
#     Python PyJWT, installed by scripts/token-examples) against an edge in hosted mode.
# The files run one after the other (two CPUs are plenty for one browser, not for several); a failing file
# does not stop the others. Shared helpers live in harness.mjs, cluster.mjs and palava.mjs.
#
#   edge/tests/browser/run.sh [FILE.test.mjs ...] [extra `node --test` arguments, e.g. --test-name-pattern=cluster]
#
# Screenshots of the pages are written to <repo>/target/browser-screenshots/ on every run.
#
# Environment: SWITCHBOARD_EDGE_BIN (default <repo>/target/debug/switchboard-edge), SWITCHBOARD_ROUTER_BIN
# (default <repo>/target/debug/switchboard-router), SWITCHBOARD_NATS_SERVER_BIN (default: nats-server on
# PATH, else in /usr/sbin or /usr/bin), SWITCHBOARD_TURNSERVER_BIN (default: turnserver on PATH, else in
# /usr/bin), CHROMIUM_BIN (default /usr/bin/chromium). Build the first two with `cargo build --bins`.
# SWITCHBOARD_EXAMPLES_PYTHON is set here to the Python scripts/token-examples installs.
#
# Network isolation: the tests, the servers and Chromium run in a fresh network namespace, so nothing they
# do (WebRTC candidate gathering, STUN, Chromium's own background requests) can reach anything but loopback.
# Inside it:
#   - `lo` is up: every address the tests use is 127.0.0.1.
#   - a veth pair whose two ends both stay inside the namespace is up, with no IPv4 address and only the
#     kernel's automatic IPv6 link-local addresses. Chromium reports navigator.onLine === false when no
#     non-loopback interface has an address, and palava-client then refuses to connect
#     (`signaling_not_reachable`). WebRTC ignores IPv6 link-local addresses, so ICE still only gathers
#     127.0.0.1 candidates (the palava test asserts this). There is no route anywhere: the namespace has no
#     other link.
# It is also a fresh PID namespace: when the test process ends, however it ends, the kernel kills every
# server (edges, routers, nats-server nodes) and every Chromium process with it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The veth pair created inside the namespace; the test accepts their link-local addresses and no others.
NETNS_LINKS=(sbv0 sbv1)
# The test files, in the order they run.
TEST_FILES=(sdk.test.mjs examples.test.mjs palava.test.mjs hosted.test.mjs demo.test.mjs)
# Backstop above the tests' own timeouts, in case node itself hangs: they run one after the other, and add up
# to 11 x 30 s (sdk.test.mjs, examples.test.mjs) + 10 x 90 s (the browser tests) = 1230 s. A passing run
# takes about two minutes.
OUTER_TIMEOUT=1320

die() { echo "run.sh: error: $*" >&2; exit 1; }

if [[ "${_SWITCHBOARD_IN_NETNS:-}" != 1 ]]; then
  # ---- outside the namespace: prerequisites, dependencies, then re-enter this script isolated ----
  CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"
  [[ -x "$CHROMIUM_BIN" ]] || die "chromium not found at $CHROMIUM_BIN (install it: apt-get install -y chromium)"
  for tool in node npm unshare ip timeout python3; do
    command -v "$tool" >/dev/null || die "'$tool' is required but not on PATH"
  done
  # Debian installs nats-server in /usr/sbin, which is not on every user's PATH.
  SWITCHBOARD_NATS_SERVER_BIN="${SWITCHBOARD_NATS_SERVER_BIN:-$(PATH="$PATH:/usr/sbin:/usr/bin" command -v nats-server || true)}"
  [[ -x "$SWITCHBOARD_NATS_SERVER_BIN" ]] \
    || die "nats-server not found (install it: apt-get install -y nats-server, or set SWITCHBOARD_NATS_SERVER_BIN)"
  # The TURN test relays a call through a real coturn.
  [[ -n "${SWITCHBOARD_TURNSERVER_BIN:-}" ]] || PATH="$PATH:/usr/bin:/usr/sbin" command -v turnserver >/dev/null \
    || die "turnserver not found (install Debian's coturn package: apt-get install -y coturn, as scripts/test does)"
  node_major="$(node -p 'process.versions.node.split(".")[0]')"
  (( node_major >= 18 )) || die "node >= 18 is required (found $(node --version))"

  # npm records what it installed in node_modules/.package-lock.json; reinstall when that is missing or
  # older than the lock file or the manifest. This is the only step that uses the network (the npm registry),
  # and it runs before entering the namespace.
  hidden_lock="$HERE/node_modules/.package-lock.json"
  if [[ ! -f "$hidden_lock" || "$HERE/package-lock.json" -nt "$hidden_lock" || "$HERE/package.json" -nt "$hidden_lock" ]]; then
    echo "run.sh: installing test dependencies (npm ci)" >&2
    (cd "$HERE" && npm ci --no-audit --no-fund)
  fi
  # The token-minting examples' jsonwebtoken (npm) and PyJWT (a virtualenv under target/tools/), also from
  # the registries, so also here.
  SWITCHBOARD_EXAMPLES_PYTHON="$("$HERE/../../../scripts/token-examples")" \
    || die "cannot install the token examples' dependencies (scripts/token-examples)"

  # Everything temporary (ready files, NATS configurations and JetStream stores, Chromium's throwaway
  # profile) goes under one directory that is removed here even when the run is killed half-way.
  scratch="$(mktemp -d "${TMPDIR:-/tmp}/switchboard-browser-test.XXXXXX")"
  trap 'rm -rf "$scratch"' EXIT

  # Root can create a network namespace directly; anyone else needs a user namespace mapped to root in it.
  unshare_args=(--net --pid --fork --kill-child)
  (( EUID == 0 )) || unshare_args+=(--map-root-user)
  status=0
  _SWITCHBOARD_IN_NETNS=1 CHROMIUM_BIN="$CHROMIUM_BIN" SWITCHBOARD_NATS_SERVER_BIN="$SWITCHBOARD_NATS_SERVER_BIN" \
    SWITCHBOARD_EXAMPLES_PYTHON="$SWITCHBOARD_EXAMPLES_PYTHON" TMPDIR="$scratch" \
    timeout --kill-after=10s "$OUTER_TIMEOUT" unshare "${unshare_args[@]}" -- "$BASH" "${BASH_SOURCE[0]}" "$@" \
    || status=$?
  (( status != 124 )) || echo "run.sh: error: the tests did not finish within ${OUTER_TIMEOUT}s" >&2
  exit "$status"
fi

# ---- inside the fresh network + PID namespace (this shell is PID 1) ----
ip link set lo up
ip link add "${NETNS_LINKS[0]}" type veth peer name "${NETNS_LINKS[1]}" \
  || die "cannot create a veth pair inside the test's network namespace"
for link in "${NETNS_LINKS[@]}"; do
  # No duplicate-address detection: the link-local address is usable at once, so no waiting for it.
  sysctl -qw "net.ipv6.conf.$link.accept_dad=0"
  ip link set "$link" up
done
export SWITCHBOARD_NETNS_LINKS
SWITCHBOARD_NETNS_LINKS="$(IFS=,; echo "${NETNS_LINKS[*]}")"

cd "$HERE"
# Arguments naming test files select those; the others go to `node --test`.
files=()
node_args=()
for arg in "$@"; do
  if [[ "$arg" == *.test.mjs ]]; then files+=("$arg"); else node_args+=("$arg"); fi
done
((${#files[@]})) || files=("${TEST_FILES[@]}")
# Not exec: node must not become PID 1 (which ignores default signal actions); when this shell exits, the
# kernel kills whatever is left in the namespace.
status=0
failed=()
for file in "${files[@]}"; do
  echo "run.sh: $file" >&2
  node --test --test-reporter=spec "${node_args[@]}" "$file" || { status=1; failed+=("$file"); }
done
((status == 0)) || echo "run.sh: failed: ${failed[*]}" >&2
exit "$status"
