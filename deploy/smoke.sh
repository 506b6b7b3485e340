#!/usr/bin/env bash
# End-to-end check of the compose stack, as an operator runs it: builds the image with the real
# Dockerfile (cold, then again after a change under src/), runs `up` with 3 workers, sends 500
# recommendations through the published port and checks every answer, checks that every worker
# took jobs, then SIGKILLs a worker and restarts Redis under load and checks that no accepted
# job is lost. Always ends with `down -v`. Prints the figures the README records.
#
# Needs: a docker engine, compose (v2 plugin or docker-compose 1.29), python3, curl, the
# images the Dockerfile and compose file name (deploy/standins.sh makes them offline), and
# ml-latest-small where `movierec locate` finds it (MOVIELENS_DATA, ...).
# Settings: SMOKE_WORKERS (3), SMOKE_REQUESTS (500), SMOKE_TRAIN_SECS (30), SMOKE_REBUILD (1),
# SMOKE_PRUNE (0; 1 removes dangling images, the build's layers, at the end).
# With wrk installed it also measures the throughput through the published port.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

workers=${SMOKE_WORKERS:-3}
requests=${SMOKE_REQUESTS:-500}
say() { printf 'smoke: %s\n' "$*"; }
die() { printf 'smoke: FAILED: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose_cmd=(docker-compose)
else
    die "no compose: install the docker compose plugin or docker-compose"
fi
docker info >/dev/null 2>&1 || die "no docker engine answers (start dockerd)"

# The release, found by the project's one locator.
bin=${MOVIEREC_BIN:-}
if [ -z "$bin" ]; then
    cargo build --quiet --bin movierec
    bin=target/debug/movierec
fi
data=$("$bin" locate --dataset ml-latest-small) || die "ml-latest-small not found (set MOVIELENS_DATA)"
say "release: $data"

# The build context is a copy of the working tree, so that the rebuild can change a file
# under src/ without touching the checkout.
ctx=$(mktemp -d)
project="movierec-smoke-$$"
export SMOKE_DATA="$data"
export RECSYS_SECRET
RECSYS_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
export RECSYS_PUBLISHED_PORT
RECSYS_PUBLISHED_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export MOVIEREC_IMAGE="movierec-smoke:$$"
compose() {
    "${compose_cmd[@]}" -p "$project" -f "$ctx/deploy/docker-compose.yml" \
        -f "$ctx/deploy/smoke/compose.yml" "$@"
}
cleanup() {
    status=$?
    if [ $status -ne 0 ]; then
        say "logs of the failed run (last lines):"
        compose logs --no-color --tail 30 2>&1 | tail -120 || true
    fi
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    docker image rm -f "$MOVIEREC_IMAGE" >/dev/null 2>&1 || true
    # With the vfs storage driver every build layer is a full copy: CI frees them.
    [ "${SMOKE_PRUNE:-0}" = 1 ] && docker image prune -f >/dev/null 2>&1
    rm -rf "$ctx"
    exit $status
}
trap cleanup EXIT
tar -C "$root" --exclude=./target --exclude=./.git --exclude=./resources/db \
    --exclude=./resources/datasets --exclude=./resources/checkpoints --exclude=./.env -cf - . |
    tar -C "$ctx" -xf -

say "building the image ($MOVIEREC_IMAGE)"
t=$(now)
compose build --quiet api >"$ctx/build.log" 2>&1 || { tail -40 "$ctx/build.log"; die "image build"; }
build_s=$(since "$t")
rebuild_s=-
if [ "${SMOKE_REBUILD:-1}" = 1 ]; then
    echo "// smoke rebuild $$" >>"$ctx/src/lib.rs"
    t=$(now)
    compose build --quiet api >"$ctx/rebuild.log" 2>&1 || { tail -40 "$ctx/rebuild.log"; die "image rebuild"; }
    rebuild_s=$(since "$t")
fi
image_mb=$(docker image inspect -f '{{.Size}}' "$MOVIEREC_IMAGE" | awk '{printf "%.1f", $1/1e6}')
binary_mb=$(docker run --rm --entrypoint sh "$MOVIEREC_IMAGE" -c 'stat -c %s /usr/local/bin/movierec' | awk '{printf "%.1f", $1/1e6}')
docker run --rm "$MOVIEREC_IMAGE" --version >/dev/null || die "the binary does not start in the image"
say "image: $image_mb MB (binary $binary_mb MB); build ${build_s} s, rebuild after a src/ change ${rebuild_s} s"

say "up with $workers workers on port $RECSYS_PUBLISHED_PORT"
t=$(now)
compose up -d --scale worker="$workers" >"$ctx/up.log" 2>&1 || { tail -40 "$ctx/up.log"; die "compose up"; }
url="http://127.0.0.1:$RECSYS_PUBLISHED_PORT"
healthy=false
for _ in $(seq 1 600); do
    if curl -fsS -o /dev/null "$url/health/ready" 2>/dev/null; then
        healthy=true
        break
    fi
    sleep 1
done
$healthy || die "the API was not ready within 10 minutes"
up_s=$(since "$t")
say "ready ${up_s} s after up (init: dump + ${SMOKE_TRAIN_SECS:-30} s of training)"

status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$url/recommend" \
    -H 'content-type: application/json' -d '{"sequence":[1,2,3],"k":3}')
[ "$status" = 401 ] || die "without the secret POST /recommend answered $status, not 401"

load() { python3 deploy/smoke/load.py --port "$RECSYS_PUBLISHED_PORT" --secret "$RECSYS_SECRET" --data "$data" "$@"; }
say "$requests recommendations, every answer checked"
report=$(load --requests "$requests" --concurrency 16 --seed 1) || { echo "$report"; die "answers"; }
say "load: $report"

# Every worker took jobs: each announces its count at its heartbeat (1 s here).
sleep 3
health=$(curl -fsS "$url/health/ready")
python3 - "$health" "$workers" <<'PY' || die "not every worker took jobs"
import json, sys
body, want = json.loads(sys.argv[1]), int(sys.argv[2])
workers = body.get("workers", [])
done = {w["name"]: w.get("jobs_done") for w in workers}
print("smoke: jobs per worker:", done)
sys.exit(0 if len(workers) == want and all((n or 0) > 0 for n in done.values()) else 1)
PY

if command -v wrk >/dev/null 2>&1; then
    wrk -t1 -c32 -d10s -s deploy/wrk/recommend.lua "$url" >"$ctx/wrk.txt"
    throughput=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$ctx/wrk.txt")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$ctx/wrk.txt")
    [ -z "$non2xx" ] || die "wrk saw $non2xx answers that were not 2xx"
    say "throughput through the stack: $throughput req/s (wrk, 32 connections, 10 s, wait_ms answers)"
else
    throughput="(no wrk)"
fi

say "failures under load: SIGKILL one worker, restart Redis; no accepted job may be lost"
# Workers recreated with a slow batch (300 ms), so that jobs are in flight when one dies.
RECSYS_BATCH_DELAY_MS=300 compose up -d --no-deps --scale worker="$workers" worker >"$ctx/up2.log" 2>&1 ||
    { tail -20 "$ctx/up2.log"; die "recreating the workers"; }
for _ in $(seq 1 120); do
    n=$(curl -fsS "$url/health/ready" 2>/dev/null |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)["workers"]))' 2>/dev/null || echo 0)
    [ "$n" = "$workers" ] && break
    sleep 1
done
# 600 requests started at 40 a second (15 s), from 64 threads.
load --requests 600 --concurrency 64 --rate 40 --seed 2 --wait-ms 1000 --max-seconds 240 \
    >"$ctx/failover.json" &
loader=$!
sleep 4
# Not `| head -1`: under pipefail, compose writing its second id after head has gone fails the
# pipeline with 141 (SIGPIPE), which is what a CI run once died of.
victim=$(compose ps -q worker | sed -n 1p)
docker kill -s KILL "$victim" >/dev/null
say "killed worker ${victim:0:12} 4 s into the load"
sleep 3
t=$(now)
compose restart redis >/dev/null 2>&1
say "restarted Redis 7 s into the load ($(since "$t") s)"
wait $loader || { cat "$ctx/failover.json"; die "jobs lost or wrong after the failures"; }
say "failover: $(cat "$ctx/failover.json")"

say "PASSED: image $image_mb MB, build $build_s s, rebuild $rebuild_s s, ready $up_s s after up, $throughput req/s"
