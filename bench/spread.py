#!/usr/bin/env python3
"""Median and range over the runs of one `bench/run.sh` results directory.

`loadgen table --dir DIR` prints the medians; this prints, for the figures
docs/BENCHMARKS.md quotes, the median with the lowest and highest run, and the
server ÷ bare-sink ratios computed per run (each run's server against the same
run's sink) before taking their median.

    bench/spread.py target/bench-results/<time>
"""

import json
import statistics
import sys
from pathlib import Path


def reports(directory: Path, stem: str) -> list[dict]:
    """The reports `<stem>-<run>.json`, in run order."""
    found = sorted(directory.glob(f"{stem}-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return [json.loads(p.read_text()) for p in found]


def spread(values: list[float], unit: str = "", digits: int = 2) -> str:
    if not values:
        return "n/a"
    fmt = f"{{:.{digits}f}}"
    median = fmt.format(statistics.median(values))
    if len(values) == 1:
        return f"{median}{unit} (1 run)"
    return f"{median}{unit} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def field(rows: list[dict], *path: str) -> list[float]:
    out = []
    for row in rows:
        value = row
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            out.append(float(value))
    return out


def ratio(tops: list[dict], bottoms: list[dict], *path: str) -> list[float]:
    pairs = zip(field(tops, *path), field(bottoms, *path))
    return [top / bottom for top, bottom in pairs if bottom]


def main() -> None:
    directory = Path(sys.argv[1])
    server = reports(directory, "sessions-server")
    sink = reports(directory, "sessions-bare")
    http = reports(directory, "http-server")
    lookup = reports(directory, "lookup-server")
    lookup_sink = reports(directory, "lookup-bare")
    nowrites = reports(directory, "sessions-nowrites")
    embedded = reports(directory, "sessions-embedded")
    cassandra = reports(directory, "sessions-cassandra")
    ticking = reports(directory, "ticking-server")
    ticking_sink = reports(directory, "ticking-bare")
    engines_paced = reports(directory, "engines-paced")
    engines_max = reports(directory, "engines-max")
    paced = reports(directory, "store-paced")
    paced_5ms = reports(directory, "store-delay5")
    kib = lambda rows: [v / 1024 for v in field(rows, "rss_per_viewer_bytes")]
    engine = lambda rows, name, key: [e[key] for row in rows for e in row.get("engines", []) if e["engine"] == name]
    lines = [
        ("runs", f"{len(server)} server, {len(sink)} bare sink"),
        ("1 server CPU per tick, µs", spread(field(server, "cpu_us_per_message"))),
        ("2 bare sink CPU per tick, µs", spread(field(sink, "cpu_us_per_message"))),
        ("CPU per tick, server ÷ sink (per run)", spread(ratio(server, sink, "cpu_us_per_message"))),
        ("1 server RSS per session, KiB", spread(kib(server))),
        ("2 bare sink RSS per session, KiB", spread(kib(sink))),
        ("RSS per session, server ÷ sink (per run)",
         spread([a / b for a, b in zip(kib(server), kib(sink)) if b])),
        ("1 upgrades/s, server", spread(field(server, "connects_per_second"), digits=0)),
        ("2 upgrades/s, bare sink", spread(field(sink, "connects_per_second"), digits=0)),
        ("1 saved delay beyond flush, plateau p50 ms", spread(field(server, "window_ack_delay_p50_ms"), digits=1)),
        ("1 saved delay beyond flush, plateau p99 ms", spread(field(server, "window_ack_delay_p99_ms"), digits=1)),
        ("1 store write p50 / p99 ms (p50)", spread(field(server, "write_p50_ms"), digits=1)),
        ("1 store write p99 ms", spread(field(server, "write_p99_ms"), digits=1)),
        ("5 storm: all back after, s", spread(field(server, "storm", "seconds"), digits=1)),
        ("5 storm: refused and retried attempts", spread(field(server, "storm", "retries"), digits=0)),
        ("3 HTTP CPU per viewer-second, µs", spread(field(http, "cpu_us_per_viewer_second"))),
        ("WS ÷ HTTP CPU per viewer-second (per run)",
         spread(ratio(server, http, "cpu_us_per_viewer_second"))),
        ("3 HTTP RSS per viewer, KiB", spread(kib(http))),
        ("4 lookups/s, server", spread(field(lookup, "per_second"), digits=0)),
        ("4 lookups/s, bare sink", spread(field(lookup_sink, "per_second"), digits=0)),
        ("lookups/s, server ÷ sink (per run)", spread(ratio(lookup, lookup_sink, "per_second"))),
        ("4 lookup p99 ms, server", spread(field(lookup, "p99_ms"))),
        ("4 lookup CPU per request µs, server", spread(field(lookup, "cpu_us_per_request"))),
        ("4 lookup CPU per request µs, bare sink", spread(field(lookup_sink, "cpu_us_per_request"))),
        ("lookup CPU per request, sink ÷ server (per run)",
         spread(ratio(lookup_sink, lookup, "cpu_us_per_request"))),
        ("7 CPU per tick µs: no writes", spread(field(nowrites, "cpu_us_per_message"))),
        ("7 CPU per tick µs: embedded", spread(field(embedded, "cpu_us_per_message"))),
        ("7 CPU per tick µs: Cassandra", spread(field(cassandra, "cpu_us_per_message"))),
        ("7 no-writes ÷ bare sink CPU per tick (per run)", spread(ratio(nowrites, sink, "cpu_us_per_message"))),
        ("7 RSS per session KiB: no writes", spread(kib(nowrites))),
        ("7 RSS per session KiB: embedded", spread(kib(embedded))),
        ("7 RSS per session KiB: Cassandra", spread(kib(cassandra))),
        ("7 store write p50 ms: embedded", spread(field(embedded, "write_p50_ms"), digits=1)),
        ("7 store write p99 ms: embedded", spread(field(embedded, "write_p99_ms"), digits=1)),
        ("7 store write p50 ms: Cassandra", spread(field(cassandra, "write_p50_ms"), digits=1)),
        ("7 store write p99 ms: Cassandra", spread(field(cassandra, "write_p99_ms"), digits=1)),
        ("7 writes in flight: embedded", spread(field(embedded, "writes_in_flight_mean"), digits=1)),
        ("7 writes in flight: Cassandra", spread(field(cassandra, "writes_in_flight_mean"), digits=1)),
        ("7 saved delay plateau p50 ms: Cassandra", spread(field(cassandra, "window_ack_delay_p50_ms"), digits=1)),
        ("7 saved delay plateau p99 ms: Cassandra", spread(field(cassandra, "window_ack_delay_p99_ms"), digits=1)),
        ("7 saved delay plateau max ms: Cassandra", spread(field(cassandra, "window_ack_delay_max_ms"), digits=1)),
        ("7 saved delay plateau p50 ms: embedded", spread(field(embedded, "window_ack_delay_p50_ms"), digits=1)),
        ("7 saved delay plateau p99 ms: embedded", spread(field(embedded, "window_ack_delay_p99_ms"), digits=1)),
        ("7 writes/s: Cassandra",
         spread([w / s for w, s in zip(field(cassandra, "window_writes"), field(cassandra, "window_seconds")) if s], digits=0)),
        ("7 upgrades/s: no writes / embedded / Cassandra",
         " / ".join(spread(field(rows, "connects_per_second"), digits=0) for rows in (nowrites, embedded, cassandra))),
        ("7 CQL test node CPU cores in the plateau",
         spread([c / s for c, s in zip(field(cassandra, "store_node", "window_cpu_seconds"),
                                      field(cassandra, "window_seconds")) if s])),
        ("7 CQL test node peak writes in hand", spread(field(cassandra, "store_node", "peak_writes_in_flight"), digits=0)),
        ("8 lookups/s while ticking, server", spread(field(ticking, "window_lookups", "per_second"), digits=0)),
        ("8 lookups/s while ticking, bare sink", spread(field(ticking_sink, "window_lookups", "per_second"), digits=0)),
        ("lookups/s while ticking, server ÷ sink (per run)",
         spread(ratio(ticking, ticking_sink, "window_lookups", "per_second"))),
        ("8 lookup p99 ms while ticking, server", spread(field(ticking, "window_lookups", "p99_ms"))),
        ("8 lookup p99 ms while ticking, bare sink", spread(field(ticking_sink, "window_lookups", "p99_ms"))),
        ("6 paced store CPU µs per write, default commit delay", spread(field(paced, "cpu_us_per_write"), digits=1)),
        ("6 paced store CPU µs per write, 5 ms commit delay", spread(field(paced_5ms, "cpu_us_per_write"), digits=1)),
        ("6 paced store writes per commit: default / 5 ms",
         f'{spread(field(paced, "writes_per_commit"), digits=0)} / {spread(field(paced_5ms, "writes_per_commit"), digits=0)}'),
        ("6 engines, paced batch: redb CPU µs per write", spread(engine(engines_paced, "redb", "cpu_us_per_write"))),
        ("6 engines, paced batch: fjall CPU µs per write", spread(engine(engines_paced, "fjall", "cpu_us_per_write"))),
        ("6 engines, 4096 batch: redb CPU µs per write", spread(engine(engines_max, "redb", "cpu_us_per_write"))),
        ("6 engines, 4096 batch: fjall CPU µs per write", spread(engine(engines_max, "fjall", "cpu_us_per_write"))),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
