"""A closed-loop HTTP/1.1 load generator on asyncio sockets, run in its own process.

    python -m eval._loadgen --port P --concurrency C --requests N [--warmup W] < paths.txt

Reads one request path per line on stdin and prints one JSON object: latency_ns (one per measured
request), statuses, errors, seconds. Each of C keep-alive connections sends one precomputed
request, waits for the whole response (framed by Content-Length), then sends the next, so a
latency is what one typing user would see and throughput is what C such users get.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import sys
import time
from collections import Counter

__all__ = ["main", "HOST"]

HOST = "127.0.0.1"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


class _Conn(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.buf, self.waiter, self.transport = loop, bytearray(), None, None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        m = _CONTENT_LENGTH.search(self.buf, 0, end)
        if m is None:  # chunked or close-delimited: not what a JSON API should send
            self._fail(ValueError("response without Content-Length"))
            return
        total = end + 4 + int(m.group(1))
        if len(self.buf) >= total:
            status = int(self.buf[9:12])
            del self.buf[:total]
            waiter, self.waiter = self.waiter, None
            waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("connection closed"))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.waiter = None

    def request(self, data: bytes) -> asyncio.Future:
        self.waiter = self.loop.create_future()
        self.transport.write(data)
        return self.waiter


async def _connect(port: int) -> _Conn:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: _Conn(loop), HOST, port)
    return conn


async def _phase(conns: list[_Conn], port: int, requests: list[bytes], n: int) -> dict:
    counter, clock = itertools.count(), time.perf_counter_ns
    latency: list[int] = []
    statuses: Counter = Counter()
    errors = 0

    async def worker(slot: int) -> None:
        nonlocal errors
        while (i := next(counter)) < n:
            t0 = clock()
            try:
                status = await conns[slot].request(requests[i % len(requests)])
            except (ConnectionError, ValueError, OSError):
                errors += 1
                conns[slot].transport.abort()
                conns[slot] = await _connect(port)
                continue
            latency.append(clock() - t0)
            statuses[status] += 1
            errors += status != 200

    started = time.perf_counter()
    await asyncio.gather(*(worker(s) for s in range(len(conns))))
    return {"latency_ns": latency, "statuses": {str(k): v for k, v in statuses.items()}, "errors": errors,
            "seconds": time.perf_counter() - started}


async def _run(port: int, paths: list[str], concurrency: int, n: int, warmup: int) -> dict:
    requests = [f"GET {p} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: keystroke-bench\r\n\r\n".encode()
                for p in paths]
    conns = [await _connect(port) for _ in range(concurrency)]
    try:
        await _phase(conns, port, requests, warmup)  # fills server caches and settles the connections
        return await _phase(conns, port, requests, n)
    finally:
        for c in conns:
            c.transport.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval._loadgen", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    args = p.parse_args(argv)
    paths = [line for line in sys.stdin.read().splitlines() if line]
    if not paths:
        p.error("no request paths on stdin")
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:  # plain asyncio still works, only with more client overhead
        factory = None
    coro = asyncio.wait_for(_run(args.port, paths, args.concurrency, args.requests, args.warmup), args.timeout)
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(coro)
    result["loop"] = "uvloop" if factory else "asyncio"
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
