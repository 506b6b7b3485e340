#!/usr/bin/env python3
"""Load and answer checks for deploy/smoke.sh (standard library only).

Sends recommendation requests built from real MovieLens histories to a running movierec API,
follows every accepted job to its end, and checks each answer: k items, none of the input, each
with a title. Requests refused with 429 or 503 were not accepted; they are retried after
Retry-After. Prints one JSON line of figures; exits 1 on any wrong answer or lost job.
"""

import argparse
import csv
import http.client
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def histories(ratings_csv: Path, min_len: int) -> list[list[int]]:
    """Each user's rated movies in time order."""
    by_user: dict[str, list[tuple[int, int]]] = {}
    with ratings_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            by_user.setdefault(row["userId"], []).append((int(row["timestamp"]), int(row["movieId"])))
    out = []
    for events in by_user.values():
        events.sort()
        seq = [m for _, m in events]
        if len(seq) >= min_len:
            out.append(seq)
    return out


class Client:
    """One keep-alive connection per thread."""

    def __init__(self, host: str, port: int, secret: str, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.headers = {"content-type": "application/json", "authorization": f"Bearer {secret}"}
        self.local = threading.local()

    def request(self, method: str, path: str, body: dict | None = None):
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.local.conn = conn
            try:
                data = json.dumps(body).encode() if body is not None else None
                conn.request(method, path, body=data, headers=self.headers)
                resp = conn.getresponse()
                payload = resp.read()
                return resp.status, dict(resp.getheaders()), payload
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 1:
                    raise
        raise RuntimeError("unreachable")


def run(args) -> int:
    users = histories(Path(args.data) / "ratings.csv", 6)
    client = Client(args.host, args.port, args.secret, args.timeout)
    lock = threading.Lock()
    stats = {"accepted": 0, "done": 0, "refused": {}, "wrong": [], "lost": [], "transport_errors": 0}
    deadline = time.monotonic() + args.max_seconds

    def note_refusal(status):
        with lock:
            stats["refused"][str(status)] = stats["refused"].get(str(status), 0) + 1

    def check(seq, k, result):
        items = result.get("items", [])
        problems = []
        if len(items) != k:
            problems.append(f"{len(items)} items, asked {k}")
        ids = [i.get("movie_id") for i in items]
        if set(ids) & set(seq):
            problems.append("an input movie came back")
        if len(set(ids)) != len(ids):
            problems.append("an item twice")
        if any(not i.get("title") for i in items):
            problems.append("an item without a title")
        return problems

    def one(i):
        user = users[(i * 7919 + args.seed) % len(users)]
        n = 5 + (i * 31) % 46
        start = (i * 17) % max(1, len(user) - n + 1)
        seq = user[start:start + n]
        k = 10
        job_id = None
        while job_id is None:
            if time.monotonic() > deadline:
                with lock:
                    stats["lost"].append(f"request {i}: never accepted before the deadline")
                return
            try:
                status, headers, payload = client.request(
                    "POST", f"/recommend?wait_ms={args.wait_ms}", {"sequence": seq, "k": k})
            except (OSError, http.client.HTTPException):
                with lock:
                    stats["transport_errors"] += 1
                time.sleep(0.5)
                continue
            if status in (429, 503):
                note_refusal(status)
                time.sleep(min(float(headers.get("retry-after", headers.get("Retry-After", "1"))), 2.0))
                continue
            if status not in (200, 202):
                with lock:
                    stats["wrong"].append(f"request {i}: POST answered {status}: {payload[:200]!r}")
                return
            body = json.loads(payload)
            job_id = body["job_id"]
            with lock:
                stats["accepted"] += 1
            if status == 200 and body.get("status") == "done":
                problems = check(seq, k, body["result"])
                with lock:
                    stats["done"] += 1
                    stats["wrong"].extend(f"job {job_id}: {p}" for p in problems)
                return
        # Accepted but not finished within wait_ms: follow it to its end.
        while time.monotonic() < deadline:
            try:
                status, _, payload = client.request("GET", f"/recommend/{job_id}?wait_ms=2000")
            except (OSError, http.client.HTTPException):
                with lock:
                    stats["transport_errors"] += 1
                time.sleep(0.5)
                continue
            if status == 503:
                time.sleep(0.5)
                continue
            if status == 404:
                with lock:
                    stats["lost"].append(f"job {job_id}: 404, the accepted job is gone")
                return
            body = json.loads(payload)
            if body.get("status") == "done":
                problems = check(seq, k, body["result"])
                with lock:
                    stats["done"] += 1
                    stats["wrong"].extend(f"job {job_id}: {p}" for p in problems)
                return
            if body.get("status") == "failed":
                with lock:
                    stats["wrong"].append(f"job {job_id}: failed: {body.get('error')}")
                return
        with lock:
            stats["lost"].append(f"job {job_id}: not finished before the deadline")

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(one, range(args.requests)))
    seconds = time.monotonic() - began
    report = {
        "requests": args.requests,
        "accepted": stats["accepted"],
        "done_and_checked": stats["done"] - len(stats["wrong"]),
        "refused": stats["refused"],
        "transport_errors": stats["transport_errors"],
        "wrong": len(stats["wrong"]),
        "lost": len(stats["lost"]),
        "seconds": round(seconds, 2),
        "requests_per_second": round(args.requests / seconds, 1),
        "concurrency": args.concurrency,
    }
    print(json.dumps(report))
    for line in (stats["wrong"] + stats["lost"])[:20]:
        print("  " + line, file=sys.stderr)
    ok = not stats["wrong"] and not stats["lost"] and stats["done"] == args.requests
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--data", required=True, help="extracted ml-latest-small folder")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--wait-ms", type=int, default=5000)
    p.add_argument("--timeout", type=float, default=15.0)
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=7)
    return run(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
