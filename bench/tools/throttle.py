#!/usr/bin/env python3
"""A rate-limiting TCP proxy on loopback, for benchmarks on a kernel without
the prio qdisc (tc cannot shape one port's traffic on lo there).

    throttle.py --listen PORT --to HOST:PORT --rate 100mbit [--latency-ms N]

Accepts on 127.0.0.1:PORT and forwards each connection to HOST:PORT (which
must be a loopback address). Bytes in each direction pass one token bucket
per direction shared by all connections (the link), refilled at RATE, burst
64 KiB, so parallel connections share the rate as they would share a link.
--latency-ms adds that delay before each connection's first upstream
connect (a round trip to a remote registry). Prints "ready" on stdout once
it listens. Runs until killed.
"""
import argparse
import asyncio
import ipaddress
import re
import sys
import time

CHUNK = 16 << 10
BURST = 64 << 10


def parse_rate(s):
    """'100mbit' -> bytes per second. Units as tc: bit, kbit, mbit, gbit,
    bps (bytes), kbps, mbps; k/m/g are powers of 1000, as in tc."""
    m = re.fullmatch(r"([0-9.]+)\s*([kmg]?)(bit|bps)", s.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError("rate '%s': expected e.g. 100mbit or 12mbps" % s)
    n = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]
    if n <= 0:
        raise argparse.ArgumentTypeError("rate '%s': must be positive" % s)
    return n / 8 if m.group(3) == "bit" else n


class Bucket:
    """A token bucket: take(n) returns once n bytes may pass."""

    def __init__(self, rate):
        self.rate = rate
        self.tokens = BURST
        self.last = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, n):
        async with self.lock:  # FIFO among connections: a fair share of the link
            while True:
                now = time.monotonic()
                self.tokens = min(BURST, self.tokens + (now - self.last) * self.rate)
                self.last = now
                if self.tokens >= n:
                    self.tokens -= n
                    return
                await asyncio.sleep((n - self.tokens) / self.rate)


async def pipe(reader, writer, bucket):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            await bucket.take(len(data))
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1")
    ap.add_argument("--to", required=True, help="HOST:PORT to forward to (loopback)")
    ap.add_argument("--rate", type=parse_rate, required=True, help="e.g. 100mbit")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    a = ap.parse_args()
    host, _, port = a.to.rpartition(":")
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit("throttle.py: --to %s: only loopback addresses" % a.to)
    down, up = Bucket(a.rate), Bucket(a.rate)

    async def handle(creader, cwriter):
        if a.latency_ms:
            await asyncio.sleep(a.latency_ms / 1000)
        try:
            ureader, uwriter = await asyncio.open_connection(host, int(port))
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(pipe(creader, uwriter, up), pipe(ureader, cwriter, down))

    server = await asyncio.start_server(handle, "127.0.0.1", a.listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
