"""Capture throughput: the real server (`experiments serve`) on a fresh PostgreSQL database,
16 concurrent clients posting batches of 100 events to `/batch/`.

Prints accepted events per second and checks that the stored count equals the accepted count.
Then it measures what PostgreSQL itself accepts for the same rows on the same machine: the stored
events are read back and written with `COPY` (the same columns, `--copy-rows` rows per COPY from
`--copy-connections` connections) into a copy of the events table with the same indexes and
defaults, and the ratio of the two rates is printed.

    .venv/bin/python bench/ingest.py [--events 200000] [--seconds 30] [--clients 16] [--workers 2]

The PostgreSQL server comes from `--database-url` (default `$TEST_DATABASE_URL`, else
`postgresql+asyncpg://postgres@127.0.0.1:5432/postgres`); a database is created for the run and
dropped afterwards.
"""

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
import uvloop
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.flags.live_server import bootstrap, create_postgres_database, drop_postgres_database, running_server  # noqa: E402

DEFAULT_SERVER_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
VARIANTS = ("control", "test")


def database_cpu_seconds(database: str) -> float:
    """User+system CPU time of the PostgreSQL backends serving `database`, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not (cmdline.startswith("postgres:") and f" {database} " in cmdline):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def build_batches(project_api_key: str, batches: int, batch_size: int, seed: int = 7) -> list[bytes]:
    """Realistic SDK batches, serialised before the clock starts: page views, exposures,
    purchases, and a few person updates."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    bodies = []
    for _ in range(batches):
        events = []
        for _ in range(batch_size):
            distinct_id = f"user-{rng.randrange(50_000)}"
            roll = rng.random()
            properties: dict = {"$lib": "posthog-python", "$lib_version": "7.0.0", "$geoip_disable": True}
            if roll < 0.4:
                name = "$pageview"
                properties |= {"$current_url": f"https://shop.example/p/{rng.randrange(500)}", "$referrer": "direct"}
            elif roll < 0.7:
                name = "$feature_flag_called"
                properties |= {"$feature_flag": "new-checkout", "$feature_flag_response": rng.choice(VARIANTS)}
            elif roll < 0.95:
                name = "purchase"
                properties |= {"revenue": round(rng.uniform(5, 200), 2), "$feature/new-checkout": rng.choice(VARIANTS)}
            else:
                name = "$set"
                properties |= {"$set": {"plan": rng.choice(("free", "pro")), "country": "NO"}}
            events.append(
                {
                    "event": name,
                    "distinct_id": distinct_id,
                    "uuid": str(uuid.uuid4()),
                    "timestamp": (now - timedelta(seconds=rng.randrange(3600))).isoformat(),
                    "properties": properties,
                }
            )
        bodies.append(orjson.dumps({"api_key": project_api_key, "batch": events, "sent_at": now.isoformat()}))
    return bodies


class KeepAliveConnection:
    """A minimal HTTP/1.1 keep-alive client: the load generator shares the machine with the
    server, so it spends as little CPU per request as possible."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def send_all(host: str, port: int, bodies: list[bytes], clients: int, seconds: float, batch_size: int) -> dict:
    """Post the prepared bodies from `clients` concurrent connections until done or out of time."""
    next_index = 0
    accepted_events = 0
    failures = 0
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal next_index, accepted_events, failures
        connection = KeepAliveConnection(host, port)
        try:
            while next_index < len(bodies) and time.monotonic() < deadline:
                body = bodies[next_index]
                next_index += 1
                started = time.perf_counter()
                status = await connection.post("/batch/", body)
                latencies.append(time.perf_counter() - started)
                if status == 200:
                    accepted_events += batch_size
                else:
                    failures += 1
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "failed_requests": failures,
        "accepted_events": accepted_events,
        "elapsed_seconds": elapsed,
        "latency_p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "latency_p99_ms": latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000 if latencies else 0.0,
    }


async def run(args: argparse.Namespace) -> int:
    database_url = await create_postgres_database(args.database_url)
    database = make_url(database_url).database
    try:
        project = bootstrap(database_url, "ingest bench")
        bodies = build_batches(project["project_api_key"], args.events // args.batch_size, args.batch_size)
        with running_server(database_url, workers=args.workers) as server:
            server_cpu, database_cpu = server.cpu_seconds(), database_cpu_seconds(database)
            client_cpu = time.process_time()
            result = await send_all("127.0.0.1", server.port, bodies, args.clients, args.seconds, args.batch_size)
            client_cpu = time.process_time() - client_cpu
            server_cpu = server.cpu_seconds() - server_cpu
            database_cpu = database_cpu_seconds(database) - database_cpu

        url = make_url(database_url)
        check = await asyncpg.connect(
            host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username or "postgres",
            password=url.password, database=database,
        )
        try:
            stored = await check.fetchval("SELECT count(*) FROM events")
            persons = await check.fetchval("SELECT count(*) FROM persons")
        finally:
            await check.close()
        copy = await copy_rate(database_url, args.copy_rows, args.copy_connections)
    finally:
        await drop_postgres_database(database_url)

    rate = result["accepted_events"] / result["elapsed_seconds"]
    per_thousand = 1000 / max(result["accepted_events"], 1)
    projected = result["accepted_events"] / max(server_cpu + database_cpu, 1e-9) * os.cpu_count()
    print(
        f"capture bench: {args.workers} workers, {args.clients} clients, batches of {args.batch_size}\n"
        f"  requests            {result['requests']} ({result['failed_requests']} failed)\n"
        f"  accepted events     {result['accepted_events']} in {result['elapsed_seconds']:.2f} s\n"
        f"  throughput          {rate:,.0f} events/s\n"
        f"  request latency     p50 {result['latency_p50_ms']:.1f} ms, p99 {result['latency_p99_ms']:.1f} ms\n"
        f"  stored events       {stored} ({'matches' if stored == result['accepted_events'] else 'MISMATCH'})\n"
        f"  persons             {persons}\n"
        f"  server CPU          {server_cpu:.2f} s ({server_cpu * per_thousand * 1000:.1f} ms per 1000 events)\n"
        f"  PostgreSQL CPU      {database_cpu:.2f} s ({database_cpu * per_thousand * 1000:.1f} ms per 1000 events)\n"
        f"  load generator CPU  {client_cpu:.2f} s\n"
        f"  CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} when done; with the CPUs to itself the server\n"
        f"  and database would sustain about {projected:,.0f} events/s (projection from the CPU they used, not a measurement)\n"
        f"  PostgreSQL COPY     {copy['rows']} rows in {copy['seconds']:.2f} s = {copy['rate']:,.0f} rows/s "
        f"({args.copy_rows} rows per COPY, {args.copy_connections} connections, same columns and indexes)\n"
        f"  capture / COPY      {rate / copy['rate']:.2f}"
    )
    return 0 if stored == result["accepted_events"] and result["failed_requests"] == 0 else 1


async def copy_rate(database_url: str, rows_per_copy: int, connections: int) -> dict:
    """Rows per second PostgreSQL accepts by `COPY` for the rows capture stored, into a table
    like `events` (same columns, indexes, defaults), on the same server."""
    url = make_url(database_url)
    connect = dict(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username or "postgres",
                   password=url.password, database=url.database)  # fmt: skip
    setup = await asyncpg.connect(**connect)
    try:
        await setup.execute("CREATE TABLE events_copy (LIKE events INCLUDING ALL)")
        # Columns with a database default (the id, the inserting transaction) are left to it, as capture does.
        columns = [
            record["column_name"] for record in await setup.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'events' "
                "AND column_default IS NULL ORDER BY ordinal_position"
            )
        ]  # fmt: skip
        rows = await setup.fetch(f"SELECT {', '.join(columns)} FROM events")
    finally:
        await setup.close()
    chunks = [rows[i : i + rows_per_copy] for i in range(0, len(rows), rows_per_copy)]
    pool = [await asyncpg.connect(**connect) for _ in range(connections)]
    try:
        queue = iter(chunks)

        async def writer(connection) -> None:
            for chunk in queue:
                await connection.copy_records_to_table("events_copy", records=chunk, columns=columns)

        started = time.perf_counter()
        await asyncio.gather(*(writer(connection) for connection in pool))
        seconds = time.perf_counter() - started
    finally:
        for connection in pool:
            await connection.close()
    return {"rows": len(rows), "seconds": seconds, "rate": len(rows) / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to prepare and send at most")
    parser.add_argument("--seconds", type=float, default=30.0, help="stop sending after this long")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--copy-rows", type=int, default=100, help="rows per COPY in the PostgreSQL comparison")
    parser.add_argument("--copy-connections", type=int, default=16, help="connections in the COPY comparison")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TEST_DATABASE_URL", DEFAULT_SERVER_URL),
        help="a PostgreSQL server URL; the bench creates and drops its own database there",
    )
    return uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
