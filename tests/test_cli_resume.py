"""Ctrl-C during flow training, then the same command: it resumes and ends where an uninterrupted run ends.

The command runs in a subprocess (`python -m bayesdyn.cli fit-psd CONFIG`), receives
SIGINT once its first checkpoint is on disk, must exit cleanly (status 130, no
traceback, a message naming the command that continues), and, run again (in the
test's own process, through the same ``cli.main``), must finish training *from the
checkpoint*: the epochs run before the interruption keep the wall times the first
process recorded (a restart would re-measure them), and the saved flows are the
checkpoint's state trained on. That a resumed training is bit-identical
to an uninterrupted one with the same seed (every epoch is one deterministic jitted
program of (state, seed, epoch) and the checkpoint holds the full float32 state
exactly) is asserted in-process by
``tests/test_psd.py::test_checkpoint_resume_equals_uninterrupted``; a third
subprocess here, for an uninterrupted reference, cost ~20 s of the suite.
"""

import contextlib
import faulthandler
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

MAX_EPOCHS = 60
CONFIG = f"""
seed = 3
[catalog]
source = "default"
max_stars = 1500
[psd]
ensemble = 2
n_layers = 2
width = 16
max_epochs = {MAX_EPOCHS}
patience = 1000
batch_size = 128
"""


def _env() -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    # the flows' initialisation compiles ~100 small programs: cache them all on disk, so
    # that the second and third commands start in seconds
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / "tests" / ".jax_cache"))
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


@contextlib.contextmanager
def _time_limit(seconds: float):
    """A hung command inside this block prints every thread's stack and ends the process (an xdist worker: the test
    fails as a crashed worker instead of hanging the suite)."""
    stream = sys.__stderr__  # the process's own stderr: pytest's capture has no file descriptor
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):  # nowhere to write the stacks: no limit
        yield
        return
    faulthandler.dump_traceback_later(seconds, exit=True, file=stream)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def _cmd(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "bayesdyn.cli", "fit-psd", str(config), "--output", str(out)]


def test_ctrl_c_during_training_then_rerun_resumes_to_the_same_flows(tmp_path, monkeypatch, capsys):
    config = tmp_path / "run.toml"
    config.write_text(CONFIG)
    env = _env()
    run_dir = tmp_path / "interrupted"
    ckpt = run_dir / "psd_checkpoint" / "checkpoint.json"

    proc = subprocess.Popen(_cmd(config, run_dir), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240  # start-up and compilation take ~20 s idle, over 60 s on a loaded 2-core machine
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ckpt.exists(), f"no checkpoint appeared; the command said:\n{proc.communicate(timeout=30)}"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, f"exit status {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in err and "Traceback" not in out, err
    assert "run the same command again" in err and "fit-psd" in err, err
    interrupted = json.loads(ckpt.read_text())
    stopped_at = interrupted["epoch"]
    assert 1 <= stopped_at < MAX_EPOCHS, f"training was not interrupted mid-way (checkpoint at epoch {stopped_at})"
    assert len(interrupted["history"]["seconds"]) == stopped_at
    assert not (run_dir / "psd" / "psd.json").exists()

    # the same command again: continues from the checkpoint and finishes. In this process (cli.main, what the
    # subprocess ran; a fresh interpreter for it and for the next command cost ~10 s of a cold suite)
    from bayesdyn import cli

    monkeypatch.chdir(tmp_path)
    with _time_limit(240):  # the subprocesses' limit, kept in-process
        rc = cli.main(_cmd(config, run_dir)[3:])
    assert rc == 0, capsys.readouterr().err
    final = json.loads(ckpt.read_text())
    assert final["epoch"] == MAX_EPOCHS

    info = json.loads((run_dir / "psd" / "psd.json").read_text())["info"]  # the saved flows' header
    assert info["epochs"] == MAX_EPOCHS
    history = info["history"]
    assert len(history["val"]) == MAX_EPOCHS
    # resumed, not restarted: the first epochs carry the first process's own records, bit for bit
    for key in ("seconds", "cpu_seconds", "train", "val"):
        assert history[key][:stopped_at] == interrupted["history"][key], key
    assert history["val"] == final["history"]["val"]

    # other [psd] settings in the same folder (an edited config, or an upgrade that changed a default): the finished
    # checkpoint cannot be resumed, so the run sets it aside and trains afresh instead of stopping with an error
    config.write_text(CONFIG.replace(f"max_epochs = {MAX_EPOCHS}", "max_epochs = 2"))
    capsys.readouterr()
    with _time_limit(240):
        rc = cli.main(_cmd(config, run_dir)[3:])
    assert rc == 0
    other = capsys.readouterr()
    assert "training afresh" in other.out + other.err, other.out
    assert json.loads((run_dir / "psd_checkpoint.stale" / "checkpoint.json").read_text())["epoch"] == MAX_EPOCHS
    assert json.loads(ckpt.read_text())["epoch"] == 2


# ---------------------------------------------------------------- the pieces, without subprocesses
def test_interrupt_message_names_the_checkpoints_in_progress_the_error_copies_too(tmp_path):
    """With [errors] correct = true each error copy trains its own flows (psd-copy<c>_checkpoint): the message named
    only the data's checkpoint, also when that stage had finished and a copy's training was the one interrupted."""
    import argparse

    from bayesdyn.cli import _interrupted_message

    def checkpoint(stage, epoch, finished):
        (tmp_path / f"{stage}_checkpoint").mkdir()
        (tmp_path / f"{stage}_checkpoint" / "checkpoint.json").write_text(
            json.dumps({"epoch": epoch, "training": {"max_epochs": 300}}))
        if finished:
            (tmp_path / stage).mkdir()
            (tmp_path / stage / "psd.json").write_text("{}")

    checkpoint("psd", 300, True)
    checkpoint("psd-copy0", 300, True)
    checkpoint("psd-copy1", 41, False)
    (tmp_path / "psd-copy2_checkpoint").mkdir()
    (tmp_path / "psd-copy2_checkpoint" / "checkpoint.json").write_text("{cut sh")
    lines = _interrupted_message(argparse.Namespace(run_folder=str(tmp_path)), ["run", "c.toml"]).splitlines()
    ckpt1, ckpt2 = tmp_path / "psd-copy1_checkpoint", tmp_path / "psd-copy2_checkpoint"
    assert f"flow training checkpoint of the error copy 1: epoch 41 of at most 300 in {ckpt1}" in lines, lines
    assert f"flow training checkpoint of the error copy 2 in {ckpt2}" in lines, lines
    assert not any("copy0" in ln or "psd_checkpoint" in ln for ln in lines), lines  # finished stages
    assert lines[-1] == "    bayesdyn run c.toml"
    # a psd.json older than the checkpoint is an earlier run's, beside a retraining with other settings: in progress
    ckpt = tmp_path / "psd_checkpoint" / "checkpoint.json"
    old = ckpt.stat().st_mtime_ns - 10**9
    os.utime(tmp_path / "psd" / "psd.json", ns=(old, old))
    lines = _interrupted_message(argparse.Namespace(run_folder=str(tmp_path)), ["run", "c.toml"]).splitlines()
    assert f"flow training checkpoint: epoch 300 of at most 300 in {ckpt.parent}" in lines, lines


def test_sigint_waits_while_a_checkpoint_is_written(monkeypatch):
    """Inside a writer (write_bundle, _atomic_write, ...) Ctrl-C is re-sent 50 ms later; elsewhere it interrupts."""
    from bayesdyn import cli

    sent = []
    monkeypatch.setattr(cli.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    handler = cli._DeferredInterrupt()
    namespace = {"__name__": "bayesdyn.psd._io", "sys": sys, "handler": handler}
    exec("def write_bundle():\n    return handler(2, sys._getframe())\n", namespace)
    assert namespace["write_bundle"]() is None  # deferred, not raised
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent == [(os.getpid(), signal.SIGINT)]
    with pytest.raises(KeyboardInterrupt):
        handler(signal.SIGINT, sys._getframe())
    handler.acknowledge()  # as main() does once the interrupt reaches it: no re-send after this test


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed interrupt, on purpose
def test_sigint_swallowed_by_a_finalizer_is_sent_again(monkeypatch):
    """A KeyboardInterrupt raised inside __del__ is only printed ("Exception ignored"); the handler re-sends it."""
    import gc

    from bayesdyn import cli

    sent = []
    monkeypatch.setattr(cli.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(cli._DeferredInterrupt, "RETRY_S", 0.1)
    handler = cli._DeferredInterrupt()

    class Finalized:
        def __del__(self):
            handler(signal.SIGINT, sys._getframe())  # raises KeyboardInterrupt, which Python ignores here

    Finalized()  # freed at once: its __del__ runs, the interrupt is swallowed
    gc.collect()
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent == [(os.getpid(), signal.SIGINT)], "the swallowed interrupt was not sent again"

    # once acknowledged (main() caught the KeyboardInterrupt), nothing more is sent and signals are ignored
    sent.clear()
    with pytest.raises(KeyboardInterrupt):
        handler(signal.SIGINT, sys._getframe())
    handler.acknowledge()
    time.sleep(0.3)
    assert sent == []
    assert handler(signal.SIGINT, sys._getframe()) is None


def test_interrupt_lost_in_a_finalizer_prints_no_traceback(monkeypatch):
    """While a command runs, a KeyboardInterrupt raised in a finalizer is not printed; other errors still are.

    CI saw it: Ctrl-C landed in JAX's gc callback, Python printed "Exception ignored ...
    Traceback ... KeyboardInterrupt" although the re-sent signal then stopped the run
    cleanly (exit 130).
    """
    from bayesdyn import cli

    seen = []
    hook = cli._QuietInterruptHook(lambda unraisable: seen.append(type(unraisable.exc_value)))
    monkeypatch.setattr(sys, "unraisablehook", hook)

    class Raises:
        def __init__(self, error):
            self.error = error

        def __del__(self):
            raise self.error

    Raises(KeyboardInterrupt())
    Raises(ValueError("a real bug"))
    assert seen == [ValueError], seen  # the interrupt is dropped (it is re-sent), the bug reaches the usual hook

    # main() installs the quiet hook only while the command runs, and puts the previous one back
    during = []
    monkeypatch.setattr(cli, "_cmd_config", lambda args: during.append(sys.unraisablehook) or 0)
    before = sys.unraisablehook
    assert cli.main(["config"]) == 0
    assert isinstance(during[0], cli._QuietInterruptHook) and during[0].previous is before
    assert sys.unraisablehook is before


def test_relative_catalog_paths_resolve_from_the_config_file(tmp_path, monkeypatch):
    from bayesdyn.pipeline import ConfigError, load_config

    (tmp_path / "conf").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "stars.fits").write_bytes(b"")
    config = tmp_path / "conf" / "run.toml"
    config.write_text('[catalog]\nsource = "../data/stars.fits"\n')
    monkeypatch.chdir(ROOT)  # not the config's folder
    assert load_config(config)["catalog"]["source"] == str((tmp_path / "data" / "stars.fits").resolve())
    config.write_text('[catalog]\nsource = "../data/missing.fits"\n')
    with pytest.raises(ConfigError, match=r"catalog\.source.*missing\.fits"):
        load_config(config)


def test_a_config_file_that_is_not_utf8_or_nested_too_deep_is_a_config_error(tmp_path):
    """A Latin-1 byte (a bare UnicodeDecodeError) and arrays nested 100,000 deep (a bare RecursionError) are
    ConfigErrors naming the file and the fix."""
    from bayesdyn.pipeline import ConfigError, load_config

    config = tmp_path / "run.toml"
    config.write_bytes(b'[catalog]\nsource = "caf\xe9.fits"\n')
    with pytest.raises(ConfigError, match=r"run\.toml is not UTF-8 text.*save it again in UTF-8"):
        load_config(config)
    config.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match=r"run\.toml is not valid TOML"):
        load_config(config)


def test_config_refuses_bad_priors_ranges_and_scale_heights_before_any_stage(tmp_path, capsys):
    """Values that crashed a stage late (a LogUniform from 0 at the posterior, a negative scale height after the whole
    run, a negative max_stars as a numpy traceback) or were ignored (a negative floor) are refused by validate_config,
    naming the key; the CLI turns a missing file and a bad mock setting into a one-line error."""
    from bayesdyn import cli
    from bayesdyn.pipeline import ConfigError, validate_config

    def model(**mass):
        return {"model": {"halo": {"type": "NFW", "scale_density": mass, "scale_radius": 16.0}}}

    bad = [
        (model(prior="LogUniform", low=0.0, high=1e9), r"model\.halo\.scale_density\.low' \(LogUniform\) must be > 0"),
        (model(prior="Uniform", low=1e9, high=1e5), r"model\.halo\.scale_density' \(Uniform\) needs low < high"),
        (model(prior="Normal", loc=1e7, scale=0.0), r"model\.halo\.scale_density\.scale' \(Normal\) must be > 0"),
        (model(prior="TruncatedNormal", loc=1e7, scale=1e6, low=2e7, high=1e7), "needs low < high"),
        (model(prior="Uniform", low=0.0, high=float("inf")), r"scale_density\.high' must be a finite number"),
        ({"model": {"halo": {"type": "NFW", "scale_density": 1e7, "scale_radius": -16.0}}},
         r"'model\.halo' \(NFW\): .*scale_radius"),
        ({"report": {"dark_disk_scale_heights_kpc": [-0.1]}}, "dark_disk_scale_heights_kpc"),
        ({"report": {"dark_disk_scale_heights_kpc": [True]}}, "dark_disk_scale_heights_kpc"),
        ({"report": {"dark_disk_scale_heights_kpc": ["0.1"]}}, "dark_disk_scale_heights_kpc"),
        ({"catalog": {"max_stars": -5}}, "catalog.max_stars"),
        ({"catalog": {"within_kpc": -1.0}}, "catalog.within_kpc"),
        ({"seed": -1}, r"'seed' must be an integer in \[0, 2\*\*31\)"),
        ({"seed": 2**31}, r"'seed' must be an integer in \[0, 2\*\*31\)"),  # fit_psd refused it after the catalog
        # TOML's nan and inf, which failed deep in a stage (fit_psd's radius; "0 stars lie within nan kpc")
        ({"psd": {"radial_map": float("nan")}}, r"'psd.radial_map' must be \"auto\" or a finite number"),
        ({"nodes": {"radius_kpc": float("nan")}}, "'nodes.radius_kpc' must be a finite number"),
        ({"weak_form": {"volume": [float("inf"), 0.0, 0.0, 1.0]}}, "'weak_form.volume'"),
        # one flow member cannot be combined with others: infer refused it after the flows and accelerations
        ({"psd": {"ensemble": 1}, "inference": {"combine": "members"}}, r"'psd.ensemble' = 1 trains one"),
        ({"output": ""}, "'output' must name a folder"),
        ({"psd": {"max_epochs": 0}}, "psd.max_epochs"),
        ({"psd": {"learning_rate": -1e-3}}, "psd.learning_rate"),
        ({"nodes": {"floor": -0.1}}, "nodes.floor"),
        ({"nodes": {"floor": float("nan")}}, "nodes.floor"),
    ]
    for user, match in bad:
        with pytest.raises(ConfigError, match=match):
            validate_config(user)
    assert validate_config({"report": {"dark_disk_scale_heights_kpc": [1, 0.05]}})["report"][
        "dark_disk_scale_heights_kpc"] == [1.0, 0.05]
    assert cli.main(["catalog", str(tmp_path / "missing.fits")]) == 1
    assert cli.main(["mock", "plummer", "--n", "-5", "--output", str(tmp_path / "m.npz")]) == 1
    (tmp_path / "run.toml").write_text('output = "run"\n')
    assert cli.main(["infer", str(tmp_path / "run.toml"), "--seed", "-1"]) == 2
    err = capsys.readouterr().err
    assert "missing.fits" in err and "n must be" in err and "--seed -1: 'seed' must be an integer in [0, 2**31)" in err
    assert "Traceback" not in err
    # an option's bad value names the option (it had named the config key alone), a config file's names its key
    assert cli.main(["demo", "--output", "", "--fast"]) == 2
    assert "configuration error: --output '': 'output' must name a folder" in capsys.readouterr().err
    (tmp_path / "bad_seed.toml").write_text("seed = -1\n")
    assert cli.main(["infer", str(tmp_path / "bad_seed.toml")]) == 2
    assert "configuration error: 'seed' must be an integer" in capsys.readouterr().err


def test_config_command_prints_the_default_with_units_and_reads_back(capsys):
    """`bayesdyn config` gives every model number its unit (a 100 meant as pc had read as 100 kpc) and reloads to the
    default configuration."""
    import tomllib

    from bayesdyn import cli
    from bayesdyn.pipeline import DEFAULT_CONFIG, validate_config

    assert cli.main(["config"]) == 0
    text = capsys.readouterr().out
    assert "scale_height = 0.1  # [kpc]" in text and "# [Msun/kpc2]" in text and "# [Msun/kpc3]" in text
    assert validate_config(tomllib.loads(text)) == validate_config(DEFAULT_CONFIG)


def test_nodes_stay_inside_the_catalog_volume(tmp_path):
    """A 100 pc sphere of stars around the Sun: nodes within the radius holding 80 % of them; too few → ConfigError."""
    import bayesdyn as bd
    from bayesdyn.pipeline import ConfigError, Run, validate_config

    rng = np.random.default_rng(1)
    sun = bd.SolarParameters().position
    d = rng.normal(size=(4000, 3))
    d *= (0.1 * rng.random(4000) ** (1 / 3) / np.linalg.norm(d, axis=1))[:, None]  # uniform in a 0.1 kpc ball
    cat = bd.Catalog(x=sun + d, v=rng.normal(0, 30, (4000, 3)) + [0, 230, 0])
    logs = []
    run = Run(validate_config({"nodes": {"n": 48, "radius_kpc": 1.0}}), folder=tmp_path, log=logs.append)
    radius = run.node_radius(cat)
    np.testing.assert_allclose(radius, 0.1 * 0.8 ** (1 / 3), rtol=0.03)  # kpc: 80 % of a uniform ball's stars
    assert any("reaches beyond the catalog" in line for line in logs)
    small = Run(validate_config({"nodes": {"n": 48, "radius_kpc": 0.01}}), folder=tmp_path, log=logs.append)
    with pytest.raises(ConfigError, match=r"only \d+ of 4000 stars lie within 0\.01 kpc"):
        small.node_radius(cat)


def test_psd_table_passes_seeds_per_resample_support_core_flow_radial_and_axis_map(tmp_path, monkeypatch):
    """[psd] seeds_per_resample and support_core reach fit_psd; "auto" (the default) is resolved before the stage's
    cache key is made, so the key says what is trained: seed pairs for the default K = 4, and for one member per
    resample (L = 1) or support_core = 0 the key earlier versions wrote (their run folders stay valid)."""
    import bayesdyn as bd
    import bayesdyn.psd as bpsd
    from bayesdyn.pipeline import Run, validate_config
    from bayesdyn.pipeline import _stages

    calls, keys = [], []

    class Stop(Exception):
        pass

    def fake_fit(cat, **kw):
        calls.append(kw)
        raise Stop

    monkeypatch.setattr(bpsd, "fit_psd", fake_fit)
    real_fp = _stages._fingerprint
    monkeypatch.setattr(_stages, "_fingerprint", lambda *parts: keys.append(parts) or real_fp(*parts))
    cat = bd.Catalog(x=np.zeros((10, 3)), v=np.zeros((10, 3)))
    tables = ({}, {"seeds_per_resample": 1}, {"ensemble": 2}, {"seeds_per_resample": "auto", "ensemble": 6},
              {"seeds_per_resample": 2, "support_core": 0.6}, {"flow": "sas_maf", "radial_map": 0},
              {"axis_map": [0, 0, 1]})
    for table in tables:
        run = Run(validate_config({"psd": table}), folder=tmp_path / str(len(calls)), log=lambda *_: None)
        with pytest.raises(Stop):
            run.psd(cat)
    assert [c["seeds_per_resample"] for c in calls] == [1, 1, 1, 1, 2, 1, 1]
    assert calls[0]["axis_map"] is None and calls[6]["axis_map"] == [0.0, 0.0, 1.0]
    assert keys[6][0]["axis_map"] == [0.0, 0.0, 1.0] and "axis_map" not in keys[0][0]
    assert calls[0]["support_core"] == 0.0 and calls[4]["support_core"] == 0.6
    assert (calls[0]["flow"], calls[0]["radial_map"]) == ("maf", "auto")
    assert (calls[5]["flow"], calls[5]["radial_map"]) == ("sas_maf", 0.0)
    assert keys[5][0]["flow"] == "sas_maf" and keys[5][0]["radial_map"] == 0.0
    assert "seeds_per_resample" not in keys[0][0] and "support_core" not in keys[0][0]
    for k in (0, 1, 2, 3):  # one member per resample, the default flows: the key of earlier versions
        assert not {"seeds_per_resample", "support_core", "flow", "radial_map", "axis_map"} & set(keys[k][0])
    assert keys[4][0]["seeds_per_resample"] == 2 and keys[4][0]["support_core"] == 0.6
    assert keys[0][0] == keys[1][0]  # "auto" keys exactly as an explicit 1

    from bayesdyn.pipeline import ConfigError

    for table in ({"seeds_per_resample": 3}, {"seeds_per_resample": 2, "bootstrap": False},
                  {"ensemble": 2, "seeds_per_resample": 2}, {"seeds_per_resample": 0},
                  {"seeds_per_resample": "two"}, {"seeds_per_resample": True}, {"seeds_per_resample": 2.0}):
        with pytest.raises(ConfigError, match="psd.seeds_per_resample"):
            validate_config({"psd": table})
    with pytest.raises(ConfigError, match="psd.support_core"):
        validate_config({"psd": {"support_core": 1.0}})
    for table in ({"flow": "glow"}, {"radial_map": "none"}, {"radial_map": -1}, {"radial_map": True}):
        with pytest.raises(ConfigError, match="psd.flow|psd.radial_map"):
            validate_config({"psd": table})
    assert validate_config({"psd": {"axis_map": [0, 0, 0]}})["psd"]["axis_map"] == []  # no map: the default's key
    for table in ({"axis_map": [0, 1]}, {"axis_map": [0, 0, -1]}, {"axis_map": [0, 0, True]}, {"axis_map": "z"},
                  {"axis_map": [0, 0, float("inf")]},
                  {"axis_map": [0, 0, 1], "radial_map": 1.0}):
        with pytest.raises(ConfigError, match="psd.axis_map"):
            validate_config({"psd": table})


def test_dark_disk_limit_run_warnings_are_reported_not_dropped():
    """The report stage catches the shortened limit runs' warnings: r̂ and divergences come back as one CAVEAT
    naming the scale heights (from the table, members' r̂ included), a limit above half the prior's own as another,
    each run's other convergence problems (Posterior.check's own texts: ESS) with its scale height, and every other
    distinct warning once."""
    import warnings

    import pandas as pd

    from bayesdyn.pipeline._stages import limit_run_caveats
    from bayesdyn.results import Posterior

    rng = np.random.default_rng(0)
    chains = np.stack([rng.normal(0.0, 1.0, 300), rng.normal(0.5, 1.0, 300)])  # r̂ > 1.01, few draws
    diverging = np.zeros((2, 300), bool)
    diverging[0, :3] = True
    post = Posterior({"dd.surface_density": chains}, {"diverging": diverging, "num_divergences": 3})
    post.info["combine"] = {"member_max_r_hat": [1.2, 1.0], "member_min_ess": [90.0, 80.0]}
    # arviz warns about its refactor on its first import of each calendar day (it keeps the date in a file): import
    # it here, under the suite's filter, so that the block below records only the warnings this test raises
    import arviz  # noqa: F401

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems = post.check(warn=True)
        warnings.warn("no component is marked dark", UserWarning)
        warnings.warn("no component is marked dark", UserWarning)
    assert len(problems) == 5, problems  # r̂, members' r̂, ESS, members' ESS, divergences
    table = pd.DataFrame({"max_r_hat": [1.004, 1.2, 1.002], "num_divergences": [0, 3, 0],
                          "Sigma_DD_upper_Msun_pc2": [3.9, 28.7, 30.0], "prior_upper_Msun_pc2": 28.5,
                          "limit_over_prior": [3.9 / 28.5, 28.7 / 28.5, 30.0 / 28.5],
                          "prior_mass_below_limit": [3.9 / 30, 28.7 / 30, 1.0],  # Uniform(0, 30) M☉/pc²
                          "problems": ["", " | ".join(problems), ""]},
                         index=pd.Index([0.05, 0.1, 0.2], name="h_DD_kpc"))
    lines = limit_run_caveats(table, caught)
    assert len(lines) == 4, lines
    assert "converge cleanly at h = 100 pc (max r̂ 1.200, 3 divergences); rerun" in lines[0]
    assert "at h = 100 pc (28.70 M☉/pc², 96% of the prior below it), 200 pc (30.00 M☉/pc², 100% of the prior below " \
        "it) hold more than half their 95% credibility under the prior alone (whose own limit is 28.50" in lines[1]
    ess = [p for p in problems if "effective sample size" in p]
    assert len(ess) == 2
    assert lines[2] == "[report] CAVEAT from the dark-disk limit run at h = 100 pc: " + "; ".join(ess)
    assert lines[3] == "[report] CAVEAT from the dark-disk limit runs: UserWarning: no component is marked dark"
    # with the prior's mass below each limit (any prior): a LogUniform(0.01, 100) M☉/pc² prior puts 57.5 % of its
    # mass below 2 M☉/pc², so that limit is mostly the prior's although it is 3 % of the prior's own (63.1)
    log_table = pd.DataFrame({"max_r_hat": [1.001, 1.001], "num_divergences": [0, 0],
                              "Sigma_DD_upper_Msun_pc2": [0.05, 2.0], "prior_upper_Msun_pc2": 63.1,
                              "limit_over_prior": [0.05 / 63.1, 2.0 / 63.1],
                              "prior_mass_below_limit": [np.log10(5) / 4, np.log10(200) / 4], "problems": ["", ""]},
                             index=pd.Index([0.05, 0.1], name="h_DD_kpc"))
    log_table.attrs["credibility"] = 0.95
    lines = limit_run_caveats(log_table, [])
    assert lines == ["[report] CAVEAT: the dark-disk limits at h = 100 pc (2.00 M☉/pc², 58% of the prior below it) "
                     "hold more than half their 95% credibility under the prior alone (whose own limit is 63.10 M☉/pc²)"
                     ": the prior sets much of them (at 95% the data do not limit Σ_DD at all); state the prior with "
                     "them, and do not quote them as measured limits"], lines
    # q comes from the table: 46 % of the prior below a limit is more than half of 90 %, not of 95 %
    at_90 = log_table.assign(prior_mass_below_limit=[0.01, 0.46], prior_lower_Msun_pc2=0.0)
    assert limit_run_caveats(at_90, []) == []  # attrs say 95 %
    at_90.attrs["credibility"] = 0.9
    lines = limit_run_caveats(at_90, [])
    assert len(lines) == 1 and "at h = 100 pc (2.00 M☉/pc², 46% of the prior below it) hold more than half their " \
        "90% credibility" in lines[0], lines
    # a limit in the lowest 1 − q of a prior that starts above 0 is set by that lower end, not by the data
    pinned = log_table.assign(prior_mass_below_limit=[0.02, 0.3], prior_lower_Msun_pc2=[0.01, 0.0])
    assert limit_run_caveats(pinned, []) == ["[report] CAVEAT: the dark-disk limits at h = 50 pc (0.05 M☉/pc²) lie "
                                             "in the lowest 5% of a prior that starts at 0.01 M☉/pc²: that lower end, "
                                             "not the data, sets them; quote them with it, or refit with a prior that "
                                             "reaches 0"]
    assert limit_run_caveats(pinned.assign(prior_lower_Msun_pc2=0.0), []) == []  # from 0: a measured limit
    clean = pd.DataFrame({"max_r_hat": [1.001], "num_divergences": [0], "problems": [""]},
                         index=pd.Index([0.1], name="h_DD_kpc"))
    assert limit_run_caveats(clean, []) == []


def test_training_caveat_names_settings_that_differ_from_the_calibrated_flows():
    """The pipeline's default flows are the calibrated ones (fit_psd's defaults: no CAVEAT); the demo's smaller flows,
    or any other training, get a CAVEAT that names each setting with its calibrated value."""
    import inspect

    from bayesdyn.cli import DEMO_OVERRIDES
    from bayesdyn.pipeline import DEFAULT_CONFIG
    from bayesdyn.pipeline._stages import CALIBRATED_TRAINING, training_caveat
    from bayesdyn.psd import fit_psd

    defaults = inspect.signature(fit_psd).parameters
    assert {k: DEFAULT_CONFIG["psd"][k] for k in CALIBRATED_TRAINING} == {k: defaults[k].default
                                                                          for k in CALIBRATED_TRAINING}
    assert training_caveat(DEFAULT_CONFIG["psd"]) is None
    demo = training_caveat({**DEFAULT_CONFIG["psd"], **DEMO_OVERRIDES["psd"]})
    assert demo.startswith("CAVEAT: the flows were trained with settings other than those whose coverage was measured")
    for part in ("psd.n_layers = 6 (calibrated: 8)", "psd.width = 48 (calibrated: 64)",
                 "psd.max_epochs = 40 (calibrated: 30)", "psd.learning_rate = 0.001 (calibrated: 0.01)"):
        assert part in demo, demo
    assert "ensemble" not in demo and "bootstrap" not in demo  # unchanged settings are not named
    # "auto" seed pairing and the number it resolves to are the same training
    assert training_caveat({**DEFAULT_CONFIG["psd"], "seeds_per_resample": 1}) is None
    assert "psd.seeds_per_resample = 2" in training_caveat({**DEFAULT_CONFIG["psd"], "seeds_per_resample": 2})
    # a radius given equal to what "auto" chose for the catalog (recorded by fit_psd) is the calibrated training
    off = {**DEFAULT_CONFIG["psd"], "radial_map": 0.0}
    assert training_caveat(off, {"radial_map": 0.0, "radial_map_auto": 0.0}) is None
    for fitted in ({"radial_map": 0.0, "radial_map_auto": 1.0}, None, {"radial_map": 0.0}):  # differs, or unknown
        assert "psd.radial_map = 0.0 (calibrated: 'auto')" in training_caveat(off, fitted)
    mapped = training_caveat({**DEFAULT_CONFIG["psd"], "axis_map": [3.0, 3.0, 0.0]})
    assert "psd.axis_map = [3.0, 3.0, 0.0] (calibrated: none)" in mapped, mapped


def test_psd_stage_hands_the_flows_info_to_the_training_caveat(tmp_path):
    """Run.psd keeps the flows' info (Run.psd_info, which the report's training CAVEAT reads), both when it trains
    and when it reuses the saved flows of an earlier run: the radius "auto" would have chosen survives the save."""
    import bayesdyn as bd
    from bayesdyn.pipeline import Run, validate_config
    from bayesdyn.pipeline._stages import training_caveat

    cat, _ = bd.mocks.load_default()
    keep = np.zeros(cat.n, bool)
    keep[np.random.default_rng(1).choice(cat.n, 5000, replace=False)] = True
    cat = cat.select(keep, "random subset")
    cfg = validate_config({"psd": {"ensemble": 1, "n_layers": 1, "width": 8, "max_epochs": 1, "batch_size": 256,
                                   "radial_map": 0}})
    run = Run(cfg, folder=tmp_path, progress=False, log=lambda *_: None)
    assert run.psd_info is None
    trained = run.psd(cat)
    assert run.psd_info == trained.info and run.psd_info["radial_map"] == 0.0
    auto = run.psd_info["radial_map_auto"]
    assert auto > 0  # the disk mock's heavy tail: "auto" would have mapped it (r₉₉/r₅₀ ≈ 3)
    logs = []
    again = Run(cfg, folder=tmp_path, progress=False, log=logs.append)
    again.psd(cat)
    assert any("reusing" in line for line in logs)  # loaded, not trained
    assert again.psd_info is not None, "the reuse path lost the flows' info"
    assert again.psd_info["radial_map_auto"] == auto and again.psd_info["radial_map"] == 0.0
    assert "psd.radial_map = 0.0 (calibrated: 'auto')" in training_caveat(cfg["psd"], again.psd_info)
