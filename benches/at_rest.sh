#!/usr/bin/env bash
# The daemon at rest (issue 6, item 4): `salespulse run` on the embedded demo config in a
# fresh temporary directory, left alone for SECONDS (default 120) between two schedule
# slots; reports resident memory (all of it, and its anonymous part: RssAnon, the heap and
# stacks without the binary's code pages), peak, threads and the CPU time it used while idle,
# from /proc/<pid>. Stops the daemon it started with SIGTERM and reports its exit code.
# Usage: benches/at_rest.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-120}"
cargo build --release --bin salespulse
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/salespulse"
dir="$(mktemp -d)"
cd "$dir"
"$bin" run > "$dir/stdout" 2> "$dir/stderr" &
pid=$!
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
field() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$pid/status"; }
sleep 5   # start-up (config, store, the demo portal's emulator if it starts one) is not rest
kill -0 "$pid"
c0=$(cpu)
echo "after 5 s: RSS $(( $(field VmRSS) / 1024 )) MiB ($(( $(field RssAnon) / 1024 )) MiB anonymous), threads $(field Threads)"
sleep "$secs"
c1=$(cpu)
echo "after $((secs + 5)) s: RSS $(( $(field VmRSS) / 1024 )) MiB ($(( $(field RssAnon) / 1024 )) MiB anonymous), peak $(( $(field VmHWM) / 1024 )) MiB, threads $(field Threads)"
echo "CPU while at rest: $(( c1 - c0 )) ticks of 1/${ticks} s over ${secs} s"
kill -TERM "$pid"
set +e
wait "$pid"
echo "exit code after SIGTERM: $?"
echo "e-mails written meanwhile: $(find "$dir/outbox" -name '*.eml' 2>/dev/null | wc -l)"
tail -n 5 "$dir/stderr"
rm -rf "$dir"
