#!/usr/bin/env bash
# fleet-netns.sh: emulate a fleet of edge devices on one host with full network
# realism (root). One network namespace for the edge server (eb-srv) and one per
# device (eb-dev1 .. eb-devN), each device joined to the server namespace by its
# own veth pair and /30 subnet, both directions shaped with tc.
#
# Addressing (exists only inside these namespaces; nothing is routed to or from
# the host or any other network, and no namespace gets a default route):
#   device i:  server side  eb-s<i>  10.213.<i>.1/30   (in eb-srv)
#              device side  eb-d<i>  10.213.<i>.2/30   (in eb-dev<i>)
# A server started in eb-srv with --listen 0.0.0.0:PORT is reachable from device
# i at 10.213.<i>.1:PORT (`fleet-netns.sh addr i`).
#
# Shaping: egress of eb-d<i> (device -> server) is the uplink, egress of eb-s<i>
# (server -> device) the downlink; each is a tbf at the given rate, with a netem
# delay in front of it when --delay is given (the delay is added in each
# direction, so the round trip grows by twice --delay).
set -eEuo pipefail

PROG=$(basename "$0")
SRV_NS=eb-srv
DEV_NS_PREFIX=eb-dev
NET=10.213
MAX_DEVICES=250

usage() {
    cat <<EOF
Usage: $PROG COMMAND [ARGS]

Full-realism fleet emulation on one host: a server network namespace ($SRV_NS),
one namespace per device (${DEV_NS_PREFIX}1..N), a veth pair and /30 subnet per
device, tc shaping in both directions. Needs root and iproute2 (ip, tc).

Commands:
  up N [--rate-up R] [--rate-down R] [--delay MS]
        Create (or reconcile to) N devices. R is a tc rate such as 8mbit,
        500kbit or 1gbit (bits per second); --rate-up shapes device -> server,
        --rate-down server -> device; a direction without a rate is unshaped.
        --delay adds MS milliseconds of one-way delay in each direction (needs
        the kernel's netem qdisc). Re-running up replaces the shaping and
        removes devices numbered above N. Idempotent.
  down [--kill]
        Remove every namespace this script creates (and with them the veths
        and qdiscs). With --kill, first send SIGTERM to processes still
        running inside them. Idempotent.
  status
        Show namespaces, addresses, qdiscs and processes.
  exec I CMD [ARG...]
        Run CMD inside device namespace ${DEV_NS_PREFIX}I.
  srv-exec CMD [ARG...]
        Run CMD inside the server namespace $SRV_NS.
  addr I [--device]
        Print the server-side address device I must dial (with --device, the
        device's own address).
  -h, --help
        Show this help.

Example:
  $PROG up 4 --rate-up 8mbit --rate-down 16mbit --delay 10
  $PROG srv-exec edgebed-server --listen 0.0.0.0:50051 --events spans.jsonl &
  for i in 1 2 3 4; do
    $PROG exec \$i edgebed-device --server "\$($PROG addr \$i):50051" --name dev\$i &
  done
  $PROG status
  $PROG down --kill
EOF
}

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

note() {
    echo "$PROG: $*" >&2
}

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        die "must run as root: network namespaces, veths and tc need CAP_NET_ADMIN (try: sudo $0 ...)"
    fi
}

need_netns() {
    command -v ip >/dev/null 2>&1 || die "'ip' not found: install iproute2"
    local err
    if ! err=$(ip netns list 2>&1); then
        die "'ip netns' is unavailable (${err:-no output}): this kernel or iproute2 build has no network namespace support"
    fi
}

need_tc() {
    command -v tc >/dev/null 2>&1 || die "'tc' not found: install iproute2 (traffic control is needed for shaping)"
}

# Namespace names this script owns, one per line: eb-srv and eb-dev<digits>.
our_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' \
        | grep -E "^(${SRV_NS}|${DEV_NS_PREFIX}[0-9]+)\$" || true
}

device_indices() {
    our_namespaces | sed -n "s/^${DEV_NS_PREFIX}\([0-9][0-9]*\)\$/\1/p" | sort -n
}

ns_exists() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$1"
}

check_index() {
    case "${1:-}" in
        '' | *[!0-9]* | 0*) die "device index must be an integer from 1 to $MAX_DEVICES, got '${1:-}'" ;;
    esac
    [ "$1" -le "$MAX_DEVICES" ] || die "device index must be at most $MAX_DEVICES, got $1"
}

srv_ip() { echo "$NET.$1.1"; }
dev_ip() { echo "$NET.$1.2"; }

# tc rate -> bits per second (decimal units, as tc reads them). Rejects bare
# numbers and byte units (tc's "bps" means bytes per second, a common trap).
rate_bits() {
    local r
    r=$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')
    printf '%s' "$r" | grep -Eq '^[0-9]+(\.[0-9]+)?(bit|kbit|mbit|gbit|tbit)$' \
        || die "bad rate '$1': use a number with bit, kbit, mbit, gbit or tbit (e.g. 8mbit)"
    printf '%s' "$r" | awk '{
        n = $0; sub(/[a-z]+$/, "", n); u = $0; sub(/^[0-9.]+/, "", u);
        m = 1; if (u == "kbit") m = 1e3; else if (u == "mbit") m = 1e6;
        else if (u == "gbit") m = 1e9; else if (u == "tbit") m = 1e12;
        v = n * m; if (v < 8000) exit 1; printf "%.0f\n", v }' \
        || die "rate '$1' is too low (at least 8kbit)"
}

# Replace the egress qdisc of DEV in NS: netem delay (optional) then tbf rate.
shape() {
    local ns=$1 dev=$2 rate=$3 delay=$4 bits burst
    tc -n "$ns" qdisc del dev "$dev" root >/dev/null 2>&1 || true
    if [ -n "$rate" ]; then
        bits=$(rate_bits "$rate")
        # Burst: 10 ms at the rate, at least 10 full-size frames; queue: 50 ms.
        burst=$(awk -v b="$bits" 'BEGIN { v = b / 8 / 100; if (v < 15140) v = 15140; printf "%.0f", v }')
    fi
    if [ -n "$delay" ]; then
        tc -n "$ns" qdisc add dev "$dev" root handle 1: netem delay "${delay}ms" limit 100000
        if [ -n "$rate" ]; then
            tc -n "$ns" qdisc add dev "$dev" parent 1:1 handle 10: tbf \
                rate "$(printf '%s' "$rate" | tr '[:upper:]' '[:lower:]')" burst "$burst" latency 50ms
        fi
    elif [ -n "$rate" ]; then
        tc -n "$ns" qdisc add dev "$dev" root handle 1: tbf \
            rate "$(printf '%s' "$rate" | tr '[:upper:]' '[:lower:]')" burst "$burst" latency 50ms
    fi
}

ensure_ns() {
    if ! ns_exists "$1"; then
        ip netns add "$1"
    fi
    ip -n "$1" link set lo up
}

setup_device() {
    local i=$1 rate_up=$2 rate_down=$3 delay=$4
    local ns="${DEV_NS_PREFIX}$i" s_if="eb-s$i" d_if="eb-d$i"
    ensure_ns "$ns"
    if ! ip -n "$SRV_NS" link show "$s_if" >/dev/null 2>&1 \
        || ! ip -n "$ns" link show "$d_if" >/dev/null 2>&1; then
        ip -n "$SRV_NS" link del "$s_if" >/dev/null 2>&1 || true
        ip -n "$ns" link del "$d_if" >/dev/null 2>&1 || true
        # Both ends are created directly in their namespaces: no name ever
        # appears in the host's namespace.
        ip link add "$s_if" netns "$SRV_NS" type veth peer name "$d_if" netns "$ns"
    fi
    ip -n "$SRV_NS" addr flush dev "$s_if" scope global
    ip -n "$ns" addr flush dev "$d_if" scope global
    ip -n "$SRV_NS" addr add "$(srv_ip "$i")/30" dev "$s_if"
    ip -n "$ns" addr add "$(dev_ip "$i")/30" dev "$d_if"
    ip -n "$SRV_NS" link set "$s_if" up
    ip -n "$ns" link set "$d_if" up
    shape "$ns" "$d_if" "$rate_up" "$delay"
    shape "$SRV_NS" "$s_if" "$rate_down" "$delay"
}

cmd_up() {
    local n="" rate_up="" rate_down="" delay=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --rate-up) [ $# -ge 2 ] || die "--rate-up needs a value"; rate_up=$2; shift 2 ;;
            --rate-up=*) rate_up=${1#*=}; shift ;;
            --rate-down) [ $# -ge 2 ] || die "--rate-down needs a value"; rate_down=$2; shift 2 ;;
            --rate-down=*) rate_down=${1#*=}; shift ;;
            --delay) [ $# -ge 2 ] || die "--delay needs a value in ms"; delay=$2; shift 2 ;;
            --delay=*) delay=${1#*=}; shift ;;
            -h | --help) usage; exit 0 ;;
            -*) die "up: unknown option '$1' (see --help)" ;;
            *) [ -z "$n" ] || die "up: unexpected argument '$1'"; n=$1; shift ;;
        esac
    done
    [ -n "$n" ] || die "up: how many devices? (usage: $PROG up N [--rate-up R] [--rate-down R] [--delay MS])"
    check_index "$n"
    [ -z "$rate_up" ] || rate_bits "$rate_up" >/dev/null
    [ -z "$rate_down" ] || rate_bits "$rate_down" >/dev/null
    if [ -n "$delay" ]; then
        printf '%s' "$delay" | grep -Eq '^[0-9]+(\.[0-9]+)?$' || die "bad --delay '$delay': milliseconds, e.g. 20"
    fi
    need_root
    need_netns
    need_tc

    local created_srv=0
    ns_exists "$SRV_NS" || created_srv=1
    ensure_ns "$SRV_NS"
    if [ -n "$delay" ]; then
        # Probe netem once, before any veth exists, so a kernel without it fails cleanly.
        if ! tc -n "$SRV_NS" qdisc add dev lo root netem delay 1ms >/dev/null 2>&1; then
            [ "$created_srv" -eq 0 ] || ip netns del "$SRV_NS" >/dev/null 2>&1 || true
            die "--delay needs the netem qdisc, which this kernel lacks (module sch_netem); run without --delay"
        fi
        tc -n "$SRV_NS" qdisc del dev lo root >/dev/null 2>&1 || true
    fi

    trap 'note "up failed part way; the fleet may be incomplete: run \"$PROG down\" or \"$PROG up\" again"' ERR
    local i
    for i in $(seq 1 "$n"); do
        setup_device "$i" "$rate_up" "$rate_down" "$delay"
    done
    for i in $(device_indices); do
        if [ "$i" -gt "$n" ]; then
            ip netns del "${DEV_NS_PREFIX}$i"
        fi
    done
    trap - ERR

    echo "fleet up: $n device(s); uplink ${rate_up:-unshaped}, downlink ${rate_down:-unshaped}, delay ${delay:-0} ms each way"
    for i in $(seq 1 "$n"); do
        printf '  %s%-4s %s -> server %s\n' "$DEV_NS_PREFIX" "$i" "$(dev_ip "$i")" "$(srv_ip "$i")"
    done
}

cmd_down() {
    local kill=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --kill) kill=1; shift ;;
            -h | --help) usage; exit 0 ;;
            *) die "down: unexpected argument '$1'" ;;
        esac
    done
    need_root
    need_netns
    local namespaces ns pids
    namespaces=$(our_namespaces)
    if [ -z "$namespaces" ]; then
        echo "fleet down: nothing to remove"
        return 0
    fi
    if [ "$kill" -eq 1 ]; then
        for ns in $namespaces; do
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            if [ -n "$pids" ]; then
                note "stopping processes in $ns: $(echo $pids)"
                # shellcheck disable=SC2086
                kill -TERM $pids 2>/dev/null || true
            fi
        done
        local waited=0
        while [ "$waited" -lt 50 ]; do
            pids=""
            for ns in $namespaces; do
                pids="$pids$(ip netns pids "$ns" 2>/dev/null || true)"
            done
            [ -n "$pids" ] || break
            sleep 0.1
            waited=$((waited + 1))
        done
    fi
    for ns in $namespaces; do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [ -n "$pids" ]; then
            note "warning: processes still in $ns ($(echo $pids)) keep it and its veths alive, unnamed, until they exit (use: down --kill)"
        fi
        ip netns del "$ns"
    done
    echo "fleet down: removed $(echo $namespaces)"
}

cmd_status() {
    need_root
    need_netns
    local namespaces i ns pids
    namespaces=$(our_namespaces)
    if [ -z "$namespaces" ]; then
        echo "no fleet (run: $PROG up N)"
        return 0
    fi
    if ns_exists "$SRV_NS"; then
        echo "== $SRV_NS (server)"
        ip -n "$SRV_NS" -brief addr show | sed 's/^/  addr   /'
        tc -n "$SRV_NS" qdisc show | grep -v ' dev lo ' | sed 's/^/  qdisc  /' || true
        pids=$(ip netns pids "$SRV_NS" 2>/dev/null || true)
        [ -z "$pids" ] || echo "  pids   $(echo $pids)"
    else
        echo "== $SRV_NS missing (device links are down; run: $PROG up N)"
    fi
    for i in $(device_indices); do
        ns="${DEV_NS_PREFIX}$i"
        echo "== $ns (dials $(srv_ip "$i"))"
        ip -n "$ns" -brief addr show | sed 's/^/  addr   /'
        tc -n "$ns" qdisc show | grep -v ' dev lo ' | sed 's/^/  qdisc  /' || true
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -z "$pids" ] || echo "  pids   $(echo $pids)"
    done
}

cmd_exec() {
    [ $# -ge 1 ] || die "exec: usage: $PROG exec I CMD [ARG...]"
    local i=$1
    shift
    check_index "$i"
    [ $# -ge 1 ] || die "exec: no command given (usage: $PROG exec I CMD [ARG...])"
    need_root
    need_netns
    ns_exists "${DEV_NS_PREFIX}$i" || die "no namespace ${DEV_NS_PREFIX}$i (run: $PROG up N with N >= $i)"
    exec ip netns exec "${DEV_NS_PREFIX}$i" "$@"
}

cmd_srv_exec() {
    [ $# -ge 1 ] || die "srv-exec: no command given (usage: $PROG srv-exec CMD [ARG...])"
    need_root
    need_netns
    ns_exists "$SRV_NS" || die "no namespace $SRV_NS (run: $PROG up N)"
    exec ip netns exec "$SRV_NS" "$@"
}

cmd_addr() {
    [ $# -ge 1 ] || die "addr: usage: $PROG addr I [--device]"
    check_index "$1"
    case "${2:-}" in
        '') srv_ip "$1" ;;
        --device) dev_ip "$1" ;;
        *) die "addr: unexpected argument '$2'" ;;
    esac
}

main() {
    [ $# -ge 1 ] || { usage >&2; exit 2; }
    local cmd=$1
    shift
    case "$cmd" in
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        status) cmd_status "$@" ;;
        exec) cmd_exec "$@" ;;
        srv-exec) cmd_srv_exec "$@" ;;
        addr) cmd_addr "$@" ;;
        -h | --help | help) usage ;;
        *) usage >&2; die "unknown command '$cmd'" ;;
    esac
}

main "$@"
