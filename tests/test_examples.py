"""Examples are scripts that CI runs (STYLE habit 10)."""

import runpy
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_gaia_to_catalog_example(shared_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cat.npz"
    monkeypatch.setattr(sys, "argv", ["gaia_to_catalog.py", str(shared_data / "gaia" / "gdr3_1000.fits"), "--out", str(out)])
    runpy.run_path(str(EXAMPLES / "gaia_to_catalog.py"), run_name="__main__")
    text = capsys.readouterr().out
    assert "976" in text and "23" in text
    import bayesdyn as bd

    assert bd.Catalog.load(out).n == 23
