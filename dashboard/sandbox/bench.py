"""How much the sandbox can take: `python -m dashboard.sandbox.bench [--threads 32] [--requests 4000]`.

Starts a sandbox on a free port and sends a mix of task POSTs, task GETs and item GETs from several threads,
each over one keep-alive connection; prints throughput, latency percentiles and the peak concurrency the
sandbox saw. Then, with `--latency`, checks how many slow requests it holds in flight at once.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import threading
import time
from urllib.parse import quote

from .server import Sandbox


def _worker(sandbox: Sandbox, number: int, count: int, latencies: list[float], failures: list[str]) -> None:
    connection = http.client.HTTPConnection(sandbox.host, sandbox.port, timeout=30)
    key = f"?key={quote(sandbox.api_key, safe='')}"
    for index in range(count):
        # Each group of three requests shares an item: item GET, task POST, task GET.
        item = quote(f"bench/{number}/{index // 3 % 50}", safe="")
        path = (
            f"/tasks/catalog-item/{item}/product/adbreaks/version/1{key}"
            if index % 3
            else f"/tasks/catalog-item/{item}{key}"
        )
        method = "POST" if index % 3 == 1 else "GET"
        started = time.perf_counter()
        connection.request(method, path)
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            failures.append(f"{method} -> {response.status}")
    connection.close()


def _run(sandbox: Sandbox, threads: int, per_thread: int) -> tuple[float, list[float], list[str]]:
    latencies: list[float] = []
    failures: list[str] = []
    workers = [
        threading.Thread(target=_worker, args=(sandbox, number, per_thread, latencies, failures))
        for number in range(threads)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started, latencies, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--requests", type=int, default=4000, help="total, spread over the threads")
    parser.add_argument("--latency", type=float, default=1.0, help="added latency for the concurrency check")
    parser.add_argument("--concurrent", type=int, default=128, help="slow requests sent at once")
    args = parser.parse_args()

    with Sandbox(pending_seconds=1, processing_seconds=1) as sandbox:
        per_thread = max(1, args.requests // args.threads)
        elapsed, latencies, failures = _run(sandbox, args.threads, per_thread)
        cuts = statistics.quantiles(latencies, n=100)
        print(
            f"throughput: {len(latencies)} requests from {args.threads} keep-alive connections in {elapsed:.2f} s "
            f"= {len(latencies) / elapsed:.0f} req/s; latency p50 {cuts[49] * 1000:.1f} ms, "
            f"p95 {cuts[94] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms; non-200: {len(failures)}"
        )
        print(f"peak concurrency seen by the sandbox: {sandbox.stats()['max_concurrent']}")

        sandbox.reset()
        sandbox.configure(latency=args.latency)
        elapsed, latencies, failures = _run(sandbox, args.concurrent, 1)
        print(
            f"slow requests: {args.concurrent} at once with {args.latency:g} s latency took {elapsed:.2f} s; "
            f"max in flight {sandbox.stats()['max_concurrent']}; non-200: {len(failures)}"
        )


if __name__ == "__main__":
    main()
