#!/usr/bin/env bash
# Measures what docs/deploy.md sizes a deployment from: one API and one worker on a private
# Redis, loaded by wrk through `POST /recommend?wait_ms=10000` at a fixed concurrency; prints
# requests per second, CPU seconds per 1,000 requests of the API, the worker and Redis (from
# /proc, so it holds on a shared machine), and Redis commands per request (INFO commandstats).
#
#   deploy/sizing.sh BINARY DATABASE_ROOT CHECKPOINT_DIR [CONCURRENCY] [SECONDS]
# Needs wrk and redis-server. The catalogue is ml-latest-small under DATABASE_ROOT.
set -euo pipefail
lua=$(realpath "$(dirname "$0")/wrk/recommend.lua")
bin=$(realpath "$1"); db_root=$(realpath "$2"); checkpoint=$(realpath "$3")
concurrency=${4:-32}; seconds=${5:-20}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
    >"$work/redis.log" 2>&1 &
redis_pid=$!; pids+=("$redis_pid")
api_port=$(free_port)
secret=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
export REDIS_URL="redis://127.0.0.1:$redis_port" DATABASE_ROOT="$db_root" RECSYS_SECRET="$secret" \
    RECSYS_CHECKPOINT="$checkpoint" MOVIELENS_VERSION=ml-latest-small RECSYS_LOG_FORMAT=json \
    RUST_LOG=warn RECSYS_QUEUE="sizing:$$"
"$bin" serve --port "$api_port" >"$work/api.log" 2>&1 &
api_pid=$!; pids+=("$api_pid")
"$bin" worker >"$work/worker.log" 2>&1 &
worker_pid=$!; pids+=("$worker_pid")
for _ in $(seq 1 120); do
    curl -fsS -o /dev/null "http://127.0.0.1:$api_port/health/ready" 2>/dev/null && break
    sleep 0.5
done
curl -fsS -o /dev/null "http://127.0.0.1:$api_port/health/ready" || { tail "$work"/*.log; exit 1; }

target="http://127.0.0.1:$api_port"
# Warm-up, unmeasured.
wrk -t1 -c"$concurrency" -d3s -s "$lua" "$target" >/dev/null
calls() { redis-cli -p "$redis_port" info commandstats | awk -F'[=,:]' '/^cmdstat_/ {s += $3} END {print s}'; }
a0=$(cpu_s "$api_pid"); w0=$(cpu_s "$worker_pid"); r0=$(cpu_s "$redis_pid"); c0=$(calls)
wrk -t1 -c"$concurrency" -d"${seconds}s" --latency -s "$lua" "$target" >"$work/wrk.txt"
a1=$(cpu_s "$api_pid"); w1=$(cpu_s "$worker_pid"); r1=$(cpu_s "$redis_pid"); c1=$(calls)
requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.txt"); non2xx=${non2xx:-0}
python3 - "$requests" "$seconds" "$a0" "$a1" "$w0" "$w1" "$r0" "$r1" "$c0" "$c1" "$concurrency" "$non2xx" <<'PY'
import sys
req, secs, a0, a1, w0, w1, r0, r1, c0, c1, conc, bad = sys.argv[1:]
req, secs = int(req), float(secs)
per_k = lambda a, b: (float(b) - float(a)) / req * 1000
api, worker, redis = per_k(a0, a1), per_k(w0, w1), per_k(r0, r1)
print(f"concurrency {conc}: {req} requests in {secs:.0f} s = {req / secs:.0f} req/s, non-2xx {bad}")
print(f"CPU seconds per 1000 requests: API {api:.3f}, worker {worker:.3f}, Redis {redis:.3f}")
print(f"requests per CPU-second (one core): API {1000 / api:.0f}, worker {1000 / worker:.0f}, Redis {1000 / redis:.0f}")
print(f"Redis commands per request: {(int(c1) - int(c0)) / req:.1f}")
PY
grep -m 3 -E "Latency|50%|99%" "$work/wrk.txt"
