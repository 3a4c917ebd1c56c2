#!/usr/bin/env bash
# The soak: a release iamd under 80% of its measured capacity for 10 minutes, while a new
# bundle is published every second and an admin write lands every 100 ms. It passes when no
# request fails, no answer disagrees with the bundle revision that decided it (a decision from a
# mixed snapshot would), no admin write fails, and p99 latency and the server's memory in the
# last minute are within bounds of the first minute's.
#
#   scripts/soak.sh                      # 10 minutes
#   SOAK_SECONDS=120 scripts/soak.sh     # a shorter run
#
# Not part of `cargo test`: it takes the whole machine for its duration. The result is printed
# as a summary and kept, with the server's log, in target/soak/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${SOAK_SECONDS:-600}
interval=${SOAK_INTERVAL:-60}
load_share=${SOAK_LOAD_SHARE:-0.8}
users=${SOAK_USERS:-1000}

cargo build --release --locked --bin iamd
iamd=$PWD/target/release/iamd
out=$PWD/target/soak
rm -rf "$out"
# The link iamd watches lives in a directory of its own: the watch covers the link's directory,
# and the server's log beside it would trigger reloads.
mkdir -p "$out/bundles" "$out/bundle"
server=
flipper=
cleanup() {
    [ -n "$flipper" ] && kill "$flipper" 2>/dev/null || true
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
}
trap cleanup EXIT

# Revision soak-N: in even revisions the two canary policies allow `iamd-bench:Canary` on
# canary/0, in odd ones they deny it. Each file differs between revisions, so a snapshot built
# from parts of two bundles answers what neither revision would (see `iamd bench
# --revision-canary`).
write_bundle() {
    local n=$1 dir="$out/bundles/soak-$1" allowed denied
    if (( n % 2 == 0 )); then allowed=0 denied=1; else allowed=1 denied=0; fi
    mkdir -p "$dir/policies"
    printf '{"revision": "soak-%d", "account": "111122223333"}\n' "$n" > "$dir/manifest.json"
    printf '{"Version": "2012-10-17", "Statement": {"Sid": "Rev%d", "Effect": "Allow", "Action": "iamd-bench:Canary", "Resource": "arn:aws:s3:::iamd-bench-canary/%d"}}\n' \
        "$n" "$allowed" > "$dir/policies/BenchCanaryA.json"
    printf '{"Version": "2012-10-17", "Statement": {"Sid": "Rev%d", "Effect": "Deny", "Action": "iamd-bench:Canary", "Resource": "arn:aws:s3:::iamd-bench-canary/%d"}}\n' \
        "$n" "$denied" > "$dir/policies/BenchCanaryB.json"
    # The symlink swap Kubernetes uses for ConfigMaps: readers see the old or the new bundle.
    ln -sfn "../bundles/soak-$n" "$out/bundle/current.next"
    mv -T "$out/bundle/current.next" "$out/bundle/current"
    rm -rf "$out/bundles/soak-$((n - 3))"
}

write_bundle 0
"$iamd" serve --data "$out/data" --bundle "$out/bundle/current" --root-credentials-file "$out/root.env" \
    --listen 127.0.0.1:50061 --admin-listen 127.0.0.1:50062 --query-listen 127.0.0.1:50063 \
    > "$out/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
    grep -q "iamd is serving" "$out/server.log" && break
    sleep 0.1
done
grep -q "iamd is serving" "$out/server.log" || { cat "$out/server.log"; exit 1; }
set -a
. "$out/root.env"
set +a
export IAMD_ENDPOINT=http://127.0.0.1:50061 IAMD_ADMIN_ENDPOINT=http://127.0.0.1:50062

# The bundle changes every second from here on, during the capacity run too: the load the soak
# keeps up is a share of what iamd serves while reloading and taking writes.
(
    n=1
    while sleep 1; do
        write_bundle "$n"
        n=$((n + 1))
    done
) &
flipper=$!

echo "== capacity (closed loop, 16 in flight, 20 s, with the reloads and admin writes)"
"$iamd" bench --users "$users" --revision-canary --duration 20 --warmup 2 --admin-write-interval-ms 100 \
    --json > "$out/capacity.json"
rate=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['throughput_per_second'] * float(sys.argv[2])))" \
    "$out/capacity.json" "$load_share")
echo "capacity $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['throughput_per_second'])" "$out/capacity.json")/s; soaking at $rate/s for $seconds s"

echo "== soak"
status=0
"$iamd" bench --users "$users" --revision-canary --rate "$rate" --duration "$seconds" --warmup 0 \
    --interval "$interval" --admin-write-interval-ms 100 --server-pid "$server" --json \
    > "$out/soak.json" || status=$?
kill "$flipper" 2>/dev/null || true
flipper=

python3 - "$out/soak.json" "$out/server.log" "$status" "$rate" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
log = open(sys.argv[2]).read()
status = int(sys.argv[3])
rate = float(sys.argv[4])
intervals = result.get("intervals", [])
published = log.count("bundle published")
rejected = log.count("bundle rejected")
print(f"requests {result['requests']} at {result['throughput_per_second']}/s: "
      f"{result['errors']} failed, {result['wrong_decisions']} wrong")
print(f"admin writes {result['admin_writes']['writes']}, failed {result['admin_writes']['failures']}")
print(f"bundles published {published}, rejected {rejected}")
print("   at s  requests/s  p50 ms  p99 ms  p99.9 ms  p99 from schedule ms  server CPU µs/decision  RSS MB")
failures = []
for i in intervals:
    l = i["latency_us"]
    if not l:
        failures.append(f"no answers in the interval ending at {i['at_seconds']} s")
        continue
    behind = (i.get("schedule_latency_us") or {}).get("p99", 0)
    print(f"{i['at_seconds']:>7.0f}  {i['throughput_per_second']:>10.0f}  {l['p50']/1000:>6.2f}  "
          f"{l['p99']/1000:>6.2f}  {l['p99_9']/1000:>8.2f}  {behind/1000:>20.2f}  "
          f"{i['server_cpu_us_per_decision'] or 0:>22.1f}  {i['server_rss_mb']:>6.1f}")
if result["throughput_per_second"] < 0.95 * rate:
    failures.append(f"the load reached {result['throughput_per_second']}/s of the {rate:.0f}/s asked")
if len(intervals) < 2:
    failures.append("fewer than two intervals: too short to tell whether latency and memory stay flat")
if status != 0 or result["errors"] or result["wrong_decisions"] or result["admin_writes"]["failures"]:
    failures.append("requests or admin writes failed, or answers were wrong")
if rejected:
    failures.append("a bundle was rejected")
if published < len(intervals) * 0.5 * (intervals[0]["seconds"] if intervals else 0):
    failures.append(f"only {published} bundles were published")
if len(intervals) >= 2 and intervals[0]["latency_us"] and intervals[-1]["latency_us"]:
    first, last = intervals[0], intervals[-1]
    # Flat: the last interval's p99 within twice the first's (or 1 ms more, for tiny values),
    # and memory grown by under 20%.
    p99_first, p99_last = first["latency_us"]["p99"], last["latency_us"]["p99"]
    if p99_last > max(2 * p99_first, p99_first + 1000):
        failures.append(f"p99 grew from {p99_first} µs to {p99_last} µs")
    # Measured from when requests were due: it grows without bound when the load is more than
    # iamd keeps up with, however flat the latency of the requests that do get sent.
    behind_first = first["schedule_latency_us"]["p99"]
    behind_last = last["schedule_latency_us"]["p99"]
    if behind_last > max(2 * behind_first, behind_first + 5000):
        failures.append(f"p99 from the schedule grew from {behind_first} µs to {behind_last} µs: "
                        "iamd fell behind the load")
    if last["server_rss_mb"] > first["server_rss_mb"] * 1.2:
        failures.append(f"RSS grew from {first['server_rss_mb']} MB to {last['server_rss_mb']} MB")
if failures:
    print("SOAK FAILED: " + "; ".join(failures))
    sys.exit(1)
print("soak passed")
PY
