"""Export benchmark: render time and RSS at 4k / 20k / 70k series, scrape latency with
10 concurrent clients. Not a test: run it, read the JSON, update docs/export.md.

    .venv/bin/python benchmarks/export_bench.py [--sizes 4000,20000,70000] [--out FILE]

Each size runs in a fresh subprocess so RSS (VmHWM) belongs to that size alone. Sizes
count exposition sample lines (as the reference measurements in the design do: a
histogram series is 14 lines); the mix per pod is one run-queue histogram and two
counters (16 lines), with namespace/pod/container/node labels of realistic length.
Scrape latency is measured by 10 concurrent curl processes (independent clients that
do not share the server's interpreter), 30 requests each, half asking for gzip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def one_size(n: int) -> dict[str, object]:
    from tests.sdk_reference import SdkPrometheus
    from tests.unit.export_helpers import cycle_samples

    from kpodmetrics.export.otel import metrics_data
    from kpodmetrics.export.pipeline import Pipeline
    from kpodmetrics.export.store import SeriesStore
    from kpodmetrics.pods.owner import Owner

    class Resolver:
        owner_label_names = ("namespace", "pod", "container")

        def resolve(self, cid: int) -> Owner:
            return Owner(f"p{cid}", (("namespace", f"team-payments-{cid % 40}"),
                                     ("pod", f"checkout-api-7f9c8d6b5-{cid:06d}"),
                                     ("container", "checkout-api")))

        def drain_removed(self) -> list[Owner]:
            return []

    pods = n // 16
    store = SeriesStore((("node", "ip-10-0-12-34.eu-west-1.compute.internal"),),
                        max_series=0, max_series_per_family=0)
    t0 = time.perf_counter()
    store.apply(cycle_samples(range(pods)), Resolver())
    store.apply(cycle_samples(range(pods), 2), Resolver())
    apply_s = (time.perf_counter() - t0) / 2
    pipe = Pipeline(store, "node")
    sdk = SdkPrometheus(store)  # the SDK's exposition, kept only as the reference
    rss_store = _status("VmRSS")

    def timed(fn, reps: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
        ts, out = [], None
        for _ in range(reps):
            t = time.perf_counter()
            out = fn()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts), out

    render_s, body = timed(pipe.render, 5)
    sdk_s, _ = timed(sdk.render, 3)

    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    def otlp_encode() -> bytes:
        data = metrics_data(pipe.resource, pipe.otlp_metrics())
        return bytes(encode_metrics(data).SerializeToString())

    otlp_s, payload = timed(otlp_encode, 3)
    scrape = asyncio.run(_scrape(body))  # type: ignore[arg-type]
    return {
        "series": store.owner_series(), "lines": body.count(b"\n"),  # type: ignore[union-attr]
        "bytes": len(body), "apply_s": round(apply_s, 4),  # type: ignore[arg-type]
        "render_s": round(render_s, 4), "render_sdk_s": round(sdk_s, 4),
        "otlp_collect_encode_s": round(otlp_s, 4), "otlp_bytes": len(payload),  # type: ignore[arg-type]
        "rss_after_store_kib": rss_store, "rss_hwm_kib": _status("VmHWM"), **scrape,
    }


async def _scrape(body: bytes, clients: int = 10, per_client: int = 30) -> dict[str, float]:
    from aiohttp.test_utils import TestServer

    from kpodmetrics.export.http import Exposition, HttpState, make_app

    exp = Exposition()
    exp.set(body)
    srv = TestServer(make_app(HttpState(exp, lambda: True, lambda: [])), host="127.0.0.1")
    await srv.start_server()
    url = str(srv.make_url("/metrics"))
    lat: list[float] = []
    lat_gz: list[float] = []

    async def client(i: int) -> None:
        gz = i % 2 == 1
        args = ["curl", "-s", "-w", "%{time_total}\\n"]
        if gz:
            args += ["-H", "Accept-Encoding: gzip"]
        for _ in range(per_client):
            args += [url, "-o", "/dev/null"]
        proc = await asyncio.create_subprocess_exec(*args,
                                                    stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        (lat_gz if gz else lat).extend(float(x) for x in out.split())

    await asyncio.gather(*(client(i) for i in range(clients)))
    await srv.close()

    def q(xs: list[float], p: float) -> float:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(p * len(xs)))] * 1000, 2)

    both = lat + lat_gz
    return {"scrape_p50_ms": q(both, 0.5), "scrape_p99_ms": q(both, 0.99),
            "scrape_plain_p99_ms": q(lat, 0.99), "scrape_gzip_p99_ms": q(lat_gz, 0.99)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="4000,20000,70000")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/export_bench.json"))
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one_size(a.one)))
        return
    rows = []
    for n in (int(x) for x in a.sizes.split(",")):
        res = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True,
                             text=True, check=True, cwd=ROOT)
        row = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row))
    doc = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
           "unix_time": int(time.time()), "rows": rows}
    Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
