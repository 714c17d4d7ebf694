"""The ``bayesdyn`` command: the whole pipeline, or one stage at a time.

    bayesdyn demo                 the embedded default: shipped disk mock → flows → posterior → report
    bayesdyn run CONFIG.toml      catalog → PSD → accelerations → posterior → report
    bayesdyn fit-psd CONFIG.toml  stop after the flows        (artefacts cached in the run folder)
    bayesdyn infer CONFIG.toml    stop after the posterior    (reuses cached stages)
    bayesdyn report CONFIG.toml   the whole path, reusing every cached stage
    bayesdyn mock NAME            write a mock catalog with known truth
    bayesdyn catalog FILE         read a Gaia file and summarise it
    bayesdyn config               print the default configuration (TOML)

The pipeline commands (demo, run, fit-psd, infer, report) also take ``--output``, ``--seed``, ``--quiet`` and
``--likelihood nodes|weak_form`` (flows → accelerations at nodes, or the weak-form moments of the stars without
flows; docs/weak-form.md); ``bayesdyn demo --fast`` runs tiny settings that only check the installation.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "DEMO_OVERRIDES"]

#: Settings of ``bayesdyn demo``: small enough for ≤ 10 minutes on two CPU cores.
DEMO_OVERRIDES: dict[str, Any] = {
    "catalog": {"max_stars": 100_000},
    # smaller flows than the calibrated ones (the report's CAVEAT says so), at the learning rate the demo was measured with
    "psd": {"ensemble": 4, "max_epochs": 40, "patience": 8, "n_layers": 6, "width": 48, "learning_rate": 1e-3},
    "nodes": {"n": 48, "radius_kpc": 1.0, "n_velocities": 256},
    "inference": {"num_chains": 2, "num_warmup": 400, "num_samples": 600},
    "report": {"dark_disk_scale_heights_kpc": [0.05, 0.1, 0.2]},
}

#: ``bayesdyn demo --likelihood weak_form``'s NUTS draws per chain (its one posterior is cheap).
WEAK_DEMO_SAMPLES = 2000


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return repr(v)


def to_toml(cfg: dict[str, Any]) -> str:
    """A configuration as TOML text (tables one level deep; model components as sub-tables), each key with its line
    of :data:`bayesdyn.pipeline.KEY_HELP` as a comment."""
    from .pipeline._config import KEY_HELP

    def line(key: str, value: Any) -> str:
        note = KEY_HELP.get(key)
        return f"{key.rsplit('.', 1)[-1]} = {_toml_value(value)}" + (f"  # {note}" if note else "")

    lines = [line(k, v) for k, v in cfg.items() if not isinstance(v, dict)]
    for sec, table in cfg.items():
        if not isinstance(table, dict):
            continue
        if sec == "model":
            from .results._posterior import _PARAM_UNITS

            lines += ["", "# [model.<name>] tables replace the default model as a whole; each number is in the unit "
                      "after it (a prior's bounds too)"]
            for name, comp in table.items():
                lines += ["", f"[model.{name}]"] + [
                    f"{k} = {_toml_value(v)}" + (f"  # [{_PARAM_UNITS[k]}]" if _PARAM_UNITS.get(k) else "")
                    for k, v in comp.items()]
            continue
        lines += ["", f"[{sec}]"] + [line(f"{sec}.{k}", v) for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _config(args: argparse.Namespace, overrides: dict | None = None) -> dict[str, Any]:
    from .pipeline import load_config, validate_config
    from .pipeline._config import overlay

    # the options go into the user's settings before they are validated once: the checks and the warnings about
    # unused settings see this run's (validated after them, a config with [weak_form] efficiency_column was refused
    # under --likelihood weak_form, and settings the run used were called unused)
    likelihood, output, seed = (getattr(args, k, None) for k in ("likelihood", "output", "seed"))
    options: dict[str, Any] = {}
    if likelihood:
        options["inference"] = {"likelihood": likelihood}
    if output is not None:
        options["output"] = output
    if seed is not None:
        options["seed"] = seed
    from .pipeline import ConfigError

    try:
        if getattr(args, "config", None) is not None:  # (an empty path, e.g. an unset "$CFG", had run the default)
            return load_config(args.config, overrides=options)
        # no file: the demo's own settings, which the user did not write (--likelihood weak_form warned that its
        # [psd] and [nodes] were unused)
        return validate_config(overlay(overrides or {}, options), warn_unused=False)
    except ConfigError as err:  # a value given by an option: name the option (the message named the config key)
        for key, value in (("seed", seed), ("output", output)):
            if value is not None and str(err).startswith(f"'{key}'"):
                raise ConfigError(f"--{key} {value!r}: {err}") from None
        raise


#: functions during which Ctrl-C waits until they return: they write a checkpoint or an
#: artefact in several files, and an interruption between the files would leave them unreadable
_WRITERS = frozenset({"write_bundle", "_atomic_write", "save", "_stamp", "savez"})


class _DeferredInterrupt:
    """SIGINT handler: KeyboardInterrupt at once, except inside a writer (:data:`_WRITERS`).

    There the signal is re-raised 50 ms later, again and again until the writer has
    returned, so a checkpoint on disk is always a complete one.

    A KeyboardInterrupt raised while Python runs a finalizer (``__del__``, a weakref
    callback — JAX frees arrays that way all the time) is printed as "Exception
    ignored" and lost. So every raise also queues a re-send :attr:`RETRY_S` later,
    which :meth:`acknowledge` (called once the interrupt has reached ``main``) cancels.
    """

    #: seconds after a raise at which the signal is sent again unless acknowledged
    RETRY_S = 0.5

    def __init__(self):
        self.pending = False
        self.acknowledged = False
        self._retry: threading.Timer | None = None

    def _resend(self) -> None:
        self.pending = False
        if not self.acknowledged:
            os.kill(os.getpid(), signal.SIGINT)

    def _timer(self, seconds: float) -> threading.Timer:
        t = threading.Timer(seconds, self._resend)
        t.daemon = True
        t.start()
        return t

    def acknowledge(self) -> None:
        """The interrupt arrived: send nothing more, ignore further signals."""
        self.acknowledged = True
        if self._retry is not None:
            self._retry.cancel()

    def __call__(self, signum, frame):
        if self.acknowledged:  # already being handled: a second Ctrl-C must not break the clean exit
            return
        f = frame
        while f is not None:
            module = f.f_globals.get("__name__", "")
            if f.f_code.co_name in _WRITERS and (module.startswith("bayesdyn") or module.startswith("numpy")):
                if not self.pending:  # one re-raise queued at a time
                    self.pending = True
                    self._timer(0.05)
                return
            f = f.f_back
        if self._retry is None or not self._retry.is_alive():
            self._retry = self._timer(self.RETRY_S)  # in case a finalizer swallows this raise
        raise KeyboardInterrupt


class _QuietInterruptHook:
    """``sys.unraisablehook`` for the command's lifetime: a KeyboardInterrupt lost in a finalizer is not printed.

    Python prints an exception raised in a finalizer as "Exception ignored in ..." with
    a traceback, and drops it. For the KeyboardInterrupt of a Ctrl-C that landed in one
    (JAX frees device buffers in a gc callback) the traceback would tell the user
    something broke; it did not: :class:`_DeferredInterrupt` re-sends the signal
    :attr:`_DeferredInterrupt.RETRY_S` later. Every other unraisable exception goes to
    the previous hook unchanged.
    """

    def __init__(self, previous):
        self.previous = previous

    def __call__(self, unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            return
        self.previous(unraisable)


def _interrupted_message(args: argparse.Namespace, argv: list[str]) -> str:
    """What was kept and the command that continues the run."""
    lines = ["", "interrupted."]
    folder = getattr(args, "run_folder", None)
    if folder is not None:
        # the flows' checkpoint and, with [errors] correct = true, each error copy's (psd-copy<c>_checkpoint); a
        # finished stage's (its psd.json written after the checkpoint) is not what the next run continues from; an
        # older psd.json is an earlier run's, beside a retraining with other settings
        for ckpt in sorted(Path(folder).glob("psd*_checkpoint/checkpoint.json")):
            stage = ckpt.parent.name[: -len("_checkpoint")]
            saved = Path(folder) / stage / "psd.json"
            if saved.is_file() and saved.stat().st_mtime_ns >= ckpt.stat().st_mtime_ns:
                continue
            copy = stage.removeprefix("psd-copy")
            what = "flow training checkpoint" + ("" if stage == "psd" else f" of the error copy {copy}")
            try:
                head = json.loads(ckpt.read_text())
                lines.append(f"{what}: epoch {head['epoch']} of at most {head['training']['max_epochs']} "
                             f"in {ckpt.parent}")
            except (ValueError, KeyError, TypeError):
                lines.append(f"{what} in {ckpt.parent}")
        lines.append(f"finished stages are kept in {folder}.")
    lines.append("to continue from the last checkpoint, run the same command again:")
    lines.append("    bayesdyn " + " ".join(shlex.quote(a) for a in argv))
    return "\n".join(lines)


def _run(args: argparse.Namespace, upto: str, overrides: dict | None = None) -> int:
    from .pipeline import Run

    cfg = _config(args, overrides)
    run = Run(cfg, progress=not args.quiet)
    args.run_folder = run.folder.resolve()
    print(f"run folder: {run.folder.resolve()}")
    cat = run.catalog()
    if upto != "psd":
        run.preflight(cat)  # a bad node or error-copy setting fails now, not after the flows
    if upto == "psd" or not run.weak:  # the weak-form likelihood uses no flows
        psd = run.psd(cat)
    if upto == "psd":
        print(run.timing_table())
        return 0
    data = run.weak_form(cat) if run.weak else run.accelerations(psd, cat)
    post = run.posterior(data)
    print()
    print(post.to_markdown())
    if upto == "posterior":
        print(run.timing_table())
        return 0
    out = run.report(post, data, cat)
    (out / "timings.txt").write_text(run.timing_table() + "\n")
    print(run.timing_table())
    print(f"\nreport folder: {out.resolve()}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    overrides = copy.deepcopy(DEMO_OVERRIDES)
    if getattr(args, "likelihood", None) == "weak_form" and not args.fast:
        # one NUTS run, not one per flow member: more draws cost ~20 s, and 600 left the bulk ESS at 215–355 (the
        # report's WARNING that the posterior did not converge cleanly)
        overrides["inference"]["num_samples"] = WEAK_DEMO_SAMPLES
    if args.fast:
        overrides["catalog"]["max_stars"] = 5_000
        overrides["psd"].update(max_epochs=3, n_layers=4, width=32)
        overrides["nodes"].update(n=16, n_velocities=64)
        overrides["inference"].update(num_warmup=100, num_samples=100)
        overrides["report"]["dark_disk_scale_heights_kpc"] = [0.1]
        print("demo --fast: tiny settings to check the installation; the numbers are NOT meaningful")
    return _run(args, "report", overrides)


def _output_file(path: str) -> str | None:
    """An error message when ``--output`` cannot be a file to write (a folder, or in a folder that is not there)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return f"--output {path} is a folder; give a file name in it, e.g. {p / 'catalog.npz'}"
    if not p.parent.is_dir():
        return f"--output {path}: the folder {p.parent} does not exist; create it first"
    if p.suffix.lower() != ".npz":  # a .npz archive named saved.fits could not be read back by its name
        return (f"--output {path}: bayesdyn writes a catalog as a .npz file (arrays and a JSON header, read back by "
                f"Catalog.read or `bayesdyn catalog`); name it {p.with_suffix('.npz')}")
    return None


def _cmd_mock(args: argparse.Namespace) -> int:
    from . import mocks

    args.output = str(Path(args.output).expanduser())  # (checked expanded, it was written to a folder named "~")
    if (problem := _output_file(args.output)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1

    makers = {"plummer": mocks.plummer, "spherical": mocks.spherical_tracer, "disk": mocks.solar_neighbourhood_disk}
    cat, truth = makers[args.name](n=args.n, seed=args.seed)
    cat.meta["truth"] = truth.to_dict()
    cat.save(args.output)
    print(cat.summary())
    print(f"\nwrote {args.output}")
    return 0


def _cmd_catalog(args: argparse.Namespace) -> int:
    from .catalog import Catalog

    if args.output:
        args.output = str(Path(args.output).expanduser())  # (checked expanded, it was written to a folder named "~")
    if args.output and (problem := _output_file(args.output)) is not None:  # before reading the table
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if str(args.path).lower().endswith(".npz"):  # a catalog saved by --output (it was sent to the table reader)
        if args.strict:
            print(f"error: {args.path} is a saved catalog: --strict applies to Gaia tables only", file=sys.stderr)
            return 1
        cat = Catalog.load(args.path)
    else:
        cat = Catalog.from_gaia(args.path, strict=args.strict)
    print(cat.summary())
    if args.output:
        cat.save(args.output)
        print(f"\nwrote {args.output}")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from .pipeline import DEFAULT_CONFIG

    sys.stdout.write(to_toml(DEFAULT_CONFIG))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayesdyn`` command."""
    p = argparse.ArgumentParser(prog="bayesdyn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, config: bool):
        if config:
            sp.add_argument("config", help="run configuration (TOML); `bayesdyn config` prints the defaults")
        # (the demo has no config file: its help names the defaults instead)
        sp.add_argument("--output", default=None,
                        help="run folder (default: the config's `output`)" if config else
                        "run folder (default: bayesdyn-report in the working directory)")
        sp.add_argument("--seed", type=int, default=None,
                        help="override the config's seed" if config else "master seed of every stage (default 0)")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        sp.add_argument("--likelihood", choices=["nodes", "weak_form"], default=None,
                        help=("override the config's inference.likelihood: " if config else "") +
                             "nodes (flows → CBE accelerations at nodes → fit" + ("" if config else "; the default") +
                             ") or weak_form (the model fitted to the stars' weak-form CBE moments, no flows; "
                             "docs/weak-form.md)")

    d = sub.add_parser("demo", help="the embedded default: disk mock → flows → posterior → report "
                                     "(--likelihood weak_form: disk mock → weak-form moments → posterior → report)")
    common(d, config=False)
    d.add_argument("--fast", action="store_true", help="tiny settings (a minute or two on two CPU cores): checks the installation only")
    d.set_defaults(func=_cmd_demo)
    for name, upto, text in (
        ("run", "report", "the whole pipeline from a config file"),
        ("fit-psd", "psd", "catalog and flows only"),
        ("infer", "posterior", "up to the posterior (reuses cached stages)"),
        ("report", "report", "the same as run: every stage, each reused from the cache when its settings are unchanged "
                             "and run otherwise"),
    ):
        sp = sub.add_parser(name, help=text)
        common(sp, config=True)
        sp.set_defaults(func=lambda a, _u=upto: _run(a, _u))

    m = sub.add_parser("mock", help="generate a mock catalog with known truth")
    m.add_argument("name", choices=["plummer", "spherical", "disk"])
    m.add_argument("--n", type=int, default=10_000, help="number of stars")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--output", required=True, help="output .npz file")
    m.set_defaults(func=_cmd_mock)

    c = sub.add_parser("catalog", help="read a Gaia file (FITS, VOTable, CSV, ECSV, Parquet, HDF5), or a catalog saved as "
                                           ".npz, and summarise it")
    c.add_argument("path")
    c.add_argument("--strict", action="store_true", help="fail on rows without a 6D point instead of dropping them")
    c.add_argument("--output", default=None, help="save the catalog to this .npz file")
    c.set_defaults(func=_cmd_catalog)

    g = sub.add_parser("config", help="print the default configuration as TOML")
    g.set_defaults(func=_cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesdyn`` command."""
    from .catalog import CatalogError
    from .mocks import MockError
    from .mocks._truth import GalpyRequiredError
    from .pipeline import ConfigError
    from .psd import PSDFileError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    handler = _DeferredInterrupt()
    previous_hook = sys.unraisablehook
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, handler)
        sys.unraisablehook = _QuietInterruptHook(previous_hook)
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    # bad input, mock settings, a missing optional package, or bayesdyn's own FloatingPointErrors (training
    # diverged, nodes outside the catalog's bulk): the message names the fix
    except (CatalogError, PSDFileError, MockError, GalpyRequiredError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except FileNotFoundError as err:
        print(f"error: no such file: {err.filename or err} (check the path)", file=sys.stderr)
        return 1
    except OSError as err:  # a folder where a file was asked, no permission, a full disk: no bare traceback
        print(f"error: {err.strerror or err}: {err.filename or ''} (check the path and its permissions)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        handler.acknowledge()
        print(_interrupted_message(args, argv), file=sys.stderr)
        return 130
    finally:
        handler.acknowledge()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
            sys.unraisablehook = previous_hook


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
