"""The bench's rows on a GPU, sized for a short lease: `bmrl-bench bench --device cuda` with fewer repeats.

    python benchmarks/gpu_bench.py --out bench-cuda.json --only learners,time --repeats 5 --min-time 0.5

Same rows, FLOP counts and bounds as `bmrl-bench bench` (the matmul ground is a 4096^3 fp32 product on
the GPU); prints the table and writes the JSON. Issue 15 asks for K-batched learners against one task at a
time (K=16 SAC at least 8x) and tiMe's phases on a GPU when one is lent.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from bmrl_bench.bench import BenchReport, bench_info, run_bench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--only", default="learners,time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.5)
    args = ap.parse_args()
    rows = run_bench(device=args.device, threads=args.threads, only=args.only.split(","), repeats=args.repeats,
                     min_time=args.min_time, progress=lambda m: print(m, flush=True))
    report = BenchReport(rows, bench_info(args.threads, args.device))
    report.write_json(args.out)
    Console(width=200).print(report.table())
    for note in report.notes():
        print(note)


if __name__ == "__main__":
    main()
