"""The ``bayesdyn`` command.

``bayesdyn demo`` runs the main job on the embedded default (the shipped
solar-neighbourhood disk mock); ``bayesdyn mock`` writes a mock catalog;
``bayesdyn catalog`` reads a Gaia file and prints its summary.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _timing_table(rows: list[tuple[str, float]]) -> str:
    width = max(len(name) for name, _ in rows)
    lines = [f"{'step'.ljust(width)}  time [s]", f"{'-' * width}  --------"]
    lines += [f"{name.ljust(width)}  {sec:8.2f}" for name, sec in rows]
    lines.append(f"{'total'.ljust(width)}  {sum(s for _, s in rows):8.2f}")
    return "\n".join(lines)


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import mocks

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    timings: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    cat, truth = mocks.load_default()
    if args.n is not None:
        cat = cat.select(_first(cat.n, args.n), reason=f"first {args.n} stars (--n)")
    timings.append(("load embedded disk mock", time.perf_counter() - t0))
    summary = cat.summary()
    print(summary)
    (out / "catalog_summary.txt").write_text(summary + "\n")
    (out / "truth.json").write_text(json.dumps(truth.to_dict(), indent=2) + "\n")
    meta = {
        "command": "bayesdyn demo",
        "argv": sys.argv,
        "python": platform.python_version(),
        "machine": platform.platform(),
        "timings_s": dict(timings),
    }
    (out / "run_metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    print()
    print(_timing_table(timings))
    print(f"\nreport folder: {out.resolve()}")
    return 0


def _first(n_total: int, n: int):
    import numpy as np

    keep = np.zeros(n_total, dtype=bool)
    keep[: max(1, min(n, n_total))] = True
    return keep


def _cmd_mock(args: argparse.Namespace) -> int:
    from . import mocks

    makers = {
        "plummer": mocks.plummer,
        "spherical": mocks.spherical_tracer,
        "disk": mocks.solar_neighbourhood_disk,
    }
    cat, truth = makers[args.name](n=args.n, seed=args.seed)
    cat.meta["truth"] = truth.to_dict()
    cat.save(args.output)
    print(cat.summary())
    print(f"\nwrote {args.output}")
    return 0


def _cmd_catalog(args: argparse.Namespace) -> int:
    from .catalog import Catalog

    cat = Catalog.from_gaia(args.path, strict=args.strict)
    print(cat.summary())
    if args.output:
        cat.save(args.output)
        print(f"\nwrote {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayesdyn`` command."""
    p = argparse.ArgumentParser(prog="bayesdyn", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the main job on the embedded default disk mock")
    d.add_argument("--output", default="bayesdyn-report", help="report folder (default: ./bayesdyn-report)")
    d.add_argument("--n", type=int, default=None, help="use only the first N stars (default: all)")
    d.set_defaults(func=_cmd_demo)

    m = sub.add_parser("mock", help="generate a mock catalog with known truth")
    m.add_argument("name", choices=["plummer", "spherical", "disk"])
    m.add_argument("--n", type=int, default=10_000, help="number of stars")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--output", required=True, help="output .npz file")
    m.set_defaults(func=_cmd_mock)

    c = sub.add_parser("catalog", help="read a Gaia file (FITS, VOTable, CSV, ECSV, Parquet, HDF5) and summarise it")
    c.add_argument("path")
    c.add_argument("--strict", action="store_true", help="fail on rows without a 6D point instead of dropping them")
    c.add_argument("--output", default=None, help="save the catalog to this .npz file")
    c.set_defaults(func=_cmd_catalog)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesdyn`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
