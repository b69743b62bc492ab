#!/usr/bin/env bash
# Side-by-side throughput on the same generated capture, in one run:
#   dpaudit flows and dpaudit audit (1 thread, all threads), tshark -z conv,tcp, tshark
#   field extraction, ndpiReader, and the floor: cat.
# Usage: bash benches/compare.sh [SIZE] [MIX...]     e.g. bash benches/compare.sh 1G handshake bulk
# Prints wall time, MB/s, packets/s, peak RSS and the ratios to tshark's field extraction
# and to ndpiReader.
set -euo pipefail

SIZE=${1:-1G}
shift || true
MIXES=${*:-handshake bulk}
HERE=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/dpaudit-compare}
mkdir -p "$WORK"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need tshark || ! need ndpiReader; then
    if need apt-get; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y tshark libndpi-bin >/dev/null 2>&1 || true
    fi
fi

cargo build --release --manifest-path "$HERE/Cargo.toml" >/dev/null 2>&1
DPAUDIT="$HERE/target/release/dpaudit"
THREADS=$(nproc)

# The fields dpaudit reports, for tshark to extract.
FIELDS=(-e frame.number -e tcp.stream -e udp.stream -e tls.handshake.type -e http.authorization
        -e ntlmssp.messagetype -e ldap.authentication -e dcerpc.auth_level -e smtp.req.command
        -e kerberos.msg_type)

# run NAME CMD...: wall seconds and peak RSS (KiB) of a command, output discarded. The
# tools that take seconds run REPEAT times (default 3) and the fastest run counts (the
# machine is shared and noisy); tshark, which takes minutes, runs once.
run() {
    local name=$1
    shift
    local n=${REPEAT:-3} best="" secs rss
    case $name in tshark*) n=1 ;; esac
    for _ in $(seq "$n"); do
        /usr/bin/time -o "$WORK/time.txt" -f "%e %M" "$@" >/dev/null 2>&1 || true
        read -r secs rss < <(tail -1 "$WORK/time.txt")
        if [ -z "$best" ] || awk -v a="$secs" -v b="${best%% *}" 'BEGIN { exit !(a < b) }'; then
            best="$secs $rss"
        fi
    done
    echo "$name $best"
}

for MIX in $MIXES; do
    CAP="$WORK/$MIX-$SIZE.pcap"
    if [ ! -s "$CAP" ]; then
        "$DPAUDIT" gen -o "$CAP" --size "$SIZE" --mix "$MIX" --seed 42 >/dev/null
    fi
    BYTES=$(stat -c %s "$CAP")
    PACKETS=$("$DPAUDIT" frames "$CAP" | awk '{print $(NF-1)}')
    echo "== $MIX mix: $CAP, $BYTES bytes, $PACKETS packets, $THREADS cores"
    cat "$CAP" >/dev/null # warm the page cache
    RESULTS=()
    RESULTS+=("$(run cat cat "$CAP")")
    RESULTS+=("$(run flows-1-thread "$DPAUDIT" flows -q -j1 --format jsonl "$CAP")")
    RESULTS+=("$(run "flows-$THREADS-threads" "$DPAUDIT" flows -q -j"$THREADS" --format jsonl "$CAP")")
    # audit: the same analysis, then roles, classification, findings, and the report
    # (JSON: every flow with its data paths, and every finding).
    RESULTS+=("$(run audit-1-thread "$DPAUDIT" audit -j1 --format json "$CAP")")
    RESULTS+=("$(run "audit-$THREADS-threads" "$DPAUDIT" audit -j"$THREADS" --format json "$CAP")")
    if need tshark; then
        RESULTS+=("$(run tshark-conv tshark -r "$CAP" -q -z conv,tcp)")
        RESULTS+=("$(run tshark-fields tshark -r "$CAP" -T fields "${FIELDS[@]}")")
    fi
    if need ndpiReader; then
        RESULTS+=("$(run ndpiReader ndpiReader -i "$CAP" -q)")
    fi
    BASE=$(printf '%s\n' "${RESULTS[@]}" | awk '$1 == "tshark-fields" {print $2}')
    NDPI=$(printf '%s\n' "${RESULTS[@]}" | awk '$1 == "ndpiReader" {print $2}')
    printf '%-20s %9s %10s %12s %10s %9s %8s\n' tool seconds MB/s packets/s "RSS MiB" "x fields" "x ndpi"
    for r in "${RESULTS[@]}"; do
        # shellcheck disable=SC2086
        set -- $r
        awk -v n="$1" -v s="$2" -v k="$3" -v b="$BYTES" -v p="$PACKETS" -v base="${BASE:-0}" \
            -v ndpi="${NDPI:-0}" 'BEGIN {
            if (s <= 0) s = 0.001;
            ratio = (base > 0) ? sprintf("%.0fx", base / s) : "-";
            vs_ndpi = (ndpi > 0) ? sprintf("%.1fx", ndpi / s) : "-";
            printf "%-20s %9.2f %10.1f %12.0f %10.1f %9s %8s\n", n, s, b / s / 1e6, p / s, k / 1024, ratio, vs_ndpi
        }'
    done
done
