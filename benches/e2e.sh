#!/usr/bin/env bash
# End to end (issue 6, item 5): `salespulse send manager-weekly` on the embedded demo
# config, timed by GNU time (wall, peak RSS). Runs the release binary in a fresh temporary
# directory so that state/ and outbox/ never land in the work tree; that is what
# `cargo run --release -- send manager-weekly` runs, without cargo's own start-up.
# Usage: benches/e2e.sh [RUNS]   (default 3; each run starts from an empty state).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
[ -x /usr/bin/time ] || apt-get install -y time
cargo build --release --bin salespulse
bin="$PWD/target/release/salespulse"
for i in $(seq 1 "$runs"); do
    dir="$(mktemp -d)"
    ( cd "$dir" && /usr/bin/time -v "$bin" send manager-weekly ) > "$dir/stdout" 2> "$dir/time"
    wall=$(grep 'Elapsed (wall clock)' "$dir/time" | awk '{print $NF}')
    rss=$(grep 'Maximum resident set size' "$dir/time" | awk '{print $NF}')
    user=$(grep 'User time' "$dir/time" | awk '{print $NF}')
    sys=$(grep 'System time' "$dir/time" | awk '{print $NF}')
    emails=$(find "$dir/outbox" -name '*.eml' 2>/dev/null | wc -l)
    echo "run $i: wall $wall, user ${user}s, sys ${sys}s, peak RSS $((rss / 1024)) MiB, e-mails in outbox: $emails"
    rm -rf "$dir"
done
