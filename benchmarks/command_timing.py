"""Wall and CPU time of the commands whose durations README.md and docs/howto/gaia.md quote.

Run: ``python benchmarks/command_timing.py [--full] [--keep DIR]``

Each command runs as its own process, as a user would type it, in a fresh run folder and with a fresh JAX
compilation cache (a first run: compiling is included):

- ``bayesdyn demo --fast`` (README's "checks an installation in about a minute");
- ``bayesdyn demo --likelihood weak_form`` (README's status table);
- ``bayesdyn run examples/gaia_dr2_4096.toml`` (docs/howto/gaia.md; needs the shared Gaia rows at
  ``../shared/data/gaia/``, skipped with a note where they are missing);
- with ``--full``, ``bayesdyn demo`` itself (README: "several minutes on two CPU cores").

There is no outside peer that runs these commands; the figures are the time a user waits, and the comparison
printed is between the commands, measured in the same run on the same machine (printed with its load before and
after: the machine may be shared, so the CPU time, children's user + system, is the steadier figure). Exit codes
are printed; a failed command's time is not a figure.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def timed(args: list[str], folder: Path) -> tuple[int, float, float]:
    """(exit code, wall [s], CPU [s]) of ``python -m bayesdyn.cli ARGS`` (the `bayesdyn` command) with its own compilation cache."""
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(folder / "jax-cache"), "MPLBACKEND": "Agg"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(folder / "log.txt", "w") as log:
        rc = subprocess.run([sys.executable, "-m", "bayesdyn.cli", *args], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rc, wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="also time `bayesdyn demo` (several minutes)")
    ap.add_argument("--keep", type=Path, help="keep the run folders and logs here (default: a temporary folder)")
    a = ap.parse_args()
    gaia = ROOT.parent / "shared" / "data" / "gaia" / "gdr2_rv_4096_within100pc.fits"
    commands = [("demo --fast", ["demo", "--fast"]), ("demo --likelihood weak_form", ["demo", "--likelihood",
                                                                                        "weak_form"])]
    if gaia.is_file():
        commands.append(("run examples/gaia_dr2_4096.toml", ["run", "examples/gaia_dr2_4096.toml"]))
    else:
        print(f"(skipping the Gaia run: {gaia} is missing)")
    if a.full:
        commands.append(("demo", ["demo"]))
    print(f"machine before: {machine()}")
    base = a.keep or Path(tempfile.mkdtemp(prefix="bayesdyn-timing-"))
    rows = []
    for name, args in commands:
        folder = base / name.replace(" ", "_").replace("/", "_").replace("-", "")
        folder.mkdir(parents=True, exist_ok=True)
        rc, wall, cpu = timed([*args, "--output", str(folder / "run")], folder)
        rows.append((name, rc, wall, cpu))
        print(f"bayesdyn {name}: exit {rc}, {wall:.0f} s wall, {cpu:.0f} CPU-s (log: {folder / 'log.txt'})",
              flush=True)
    print(f"machine after: {machine()}")
    print()
    print("| command | exit | wall [s] | CPU [s] |")
    print("|---|---|---|---|")
    for name, rc, wall, cpu in rows:
        print(f"| `bayesdyn {name}` | {rc} | {wall:.0f} | {cpu:.0f} |")
    if any(rc != 0 for _, rc, _, _ in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
