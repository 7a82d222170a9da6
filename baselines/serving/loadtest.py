"""A bounded loopback load test: the API in a uvicorn thread on 127.0.0.1, async httpx clients hitting POST /search.

Each level runs ``concurrency`` client loops until ``max_requests`` requests are sent or ``seconds`` pass, whichever
comes first, and stops by itself. Per level: p50 / p95 / p99 latency, requests/s, status codes, client errors
(timeouts, refused connections: lost requests). ``swap_during`` hot-swaps the index halfway through a level to show
that a swap loses no request. Only 127.0.0.1 is ever targeted.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import numpy as np
import uvicorn

HOST = "127.0.0.1"


def free_port() -> int:
    """An unused TCP port on the loopback interface."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class LoopbackServer:
    """Run a FastAPI app with uvicorn in a background thread on 127.0.0.1 (a context manager)."""

    def __init__(self, app, port: int | None = None) -> None:
        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API server did not start within 30 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class SubprocessServer:
    """Run ``command`` (a server binding 127.0.0.1:``port``) as a child process until /health answers; stop it
    on exit. Benchmarks use it so that the client's event loop and the server do not share one interpreter."""

    def __init__(self, command: Sequence[str], port: int, *, startup_seconds: float = 180.0) -> None:
        self.command, self.port, self.startup_seconds = list(command), port, startup_seconds
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> "SubprocessServer":
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode}: {' '.join(self.command)}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"the server did not answer /health within {self.startup_seconds:.0f} s")

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


async def _level(url: str, queries: Sequence[str], *, concurrency: int, max_requests: int, seconds: float, k: int,
                 timeout: float, on_halfway: Callable[[], None] | None) -> dict[str, Any]:
    latencies, statuses, errors, versions = [], Counter(), Counter(), Counter()
    sent = 0
    started = time.perf_counter()
    halfway_done = on_halfway is None

    async def client_loop(client: httpx.AsyncClient, worker: int) -> None:
        nonlocal sent, halfway_done
        position = worker
        while sent < max_requests and time.perf_counter() - started < seconds:
            sent += 1
            if not halfway_done and sent >= max_requests // 2:
                halfway_done = True
                await asyncio.get_running_loop().run_in_executor(None, on_halfway)
            query = queries[position % len(queries)]
            position += concurrency
            begin = time.perf_counter()
            try:
                response = await client.post(f"{url}/search", json={"query": query, "k": k})
                latencies.append((time.perf_counter() - begin) * 1e3)
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    versions[response.json()["index_version"]] += 1
            except httpx.HTTPError as error:
                errors[type(error).__name__] += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        await asyncio.gather(*(client_loop(client, worker) for worker in range(concurrency)))
    elapsed = time.perf_counter() - started
    values = np.asarray(latencies) if latencies else np.asarray([np.nan])
    return {"concurrency": concurrency, "requests": int(sum(statuses.values()) + sum(errors.values())),
            "seconds": round(elapsed, 3), "requests_per_second": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(values, 50)), 3), "p95_ms": round(float(np.percentile(values, 95)), 3),
            "p99_ms": round(float(np.percentile(values, 99)), 3), "status_codes": dict(statuses),
            "client_errors": dict(errors), "index_versions": dict(versions)}


def run_load_test(url: str, queries: Sequence[str], *, concurrency_levels: Sequence[int] = (1, 4, 16),
                  max_requests: int = 2000, seconds: float = 20.0, k: int = 10, timeout: float = 10.0,
                  on_halfway: Callable[[], None] | None = None, swap_level: int | None = None) -> list[dict]:
    """One bounded run per concurrency level against ``url`` (must be a 127.0.0.1 address)."""
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError(f"the load test only targets {HOST}, got {url!r}")
    if not queries or max_requests < 1 or seconds <= 0:
        raise ValueError("need queries, max_requests >= 1 and seconds > 0")
    rows = []
    for level in concurrency_levels:
        hook = on_halfway if swap_level == level else None
        rows.append(asyncio.run(_level(url, queries, concurrency=level, max_requests=max_requests, seconds=seconds,
                                       k=k, timeout=timeout, on_halfway=hook)))
        rows[-1]["hot_swap_during"] = hook is not None
    return rows
