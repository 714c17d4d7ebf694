"""The documentation site builds with no warnings (mkdocs --strict), and its quick start is the README's."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_DOCS_PACKAGES = {
    "mkdocs": "mkdocs",
    "material": "mkdocs-material",
    "mkdocstrings": "mkdocstrings",
    "mkdocstrings_handlers.python": "mkdocstrings-python",
}


def _missing_docs_packages() -> list[str]:
    missing = []
    for module, dist in _DOCS_PACKAGES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(dist)
    return missing


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Build the site once into a temporary folder; fail with mkdocs' log on any warning."""
    missing = _missing_docs_packages()
    if missing:
        pytest.skip(f"docs tools not installed ({', '.join(missing)}): pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")  # mkdocs-material's banner is not a build warning
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    log = proc.stdout + proc.stderr
    warnings = [line for line in log.splitlines() if line.startswith("WARNING")]
    assert proc.returncode == 0 and not warnings, "mkdocs build --strict failed:\n" + "\n".join(warnings or [log[-4000:]])
    return out


def test_every_page_is_built(site):
    pages = ["index.html", "science/index.html", "catalog/index.html", "model/index.html",
             "howto/gaia/index.html", "howto/local-dm/index.html", "howto/dust/index.html"]
    pages += [f"api/{m}/index.html" for m in
              ("units", "catalog", "mocks", "psd", "dynamics", "potentials", "inference", "results", "jeans")]
    absent = [p for p in pages if not (site / p).is_file()]
    assert not absent, f"pages missing from the built site: {absent}"


def test_api_reference_is_rendered_from_docstrings(site):
    catalog = (site / "api/catalog/index.html").read_text(encoding="utf-8")
    potentials = (site / "api/potentials/index.html").read_text(encoding="utf-8")
    # mkdocstrings rendered the objects (their anchors exist) and their documented parameters
    assert 'id="bayesdyn.catalog.Catalog.from_gaia"' in catalog
    assert 'id="bayesdyn.potentials.NFW"' in potentials and "scale_density" in potentials
    # the docs hook turned the docstrings' Sphinx roles into links or code: none is left raw
    for name in ("catalog", "potentials", "jeans", "mocks"):
        html = (site / f"api/{name}/index.html").read_text(encoding="utf-8")
        raw = re.findall(r":(?:class|func|meth|attr|mod|exc):<code>", html)
        assert not raw, f"api/{name}: {len(raw)} Sphinx roles left unconverted"
    assert 'href="#bayesdyn.catalog.Catalog.history"' not in catalog  # undocumented targets stay plain code
    assert catalog.count('class="autorefs autorefs-internal"') > 10


def test_every_public_name_has_an_api_entry(site):
    """Every name in a subpackage's ``__all__`` has its entry on that subpackage's API page: module constants
    documented with ``#:`` comments (G and the unit conversions, FLOWS, ACCEPTANCE, …) had none, and
    ``bayesdyn.pipeline`` (named by docs/cli.md) had no page."""
    import importlib

    missing = []
    for sub in ("units", "catalog", "mocks", "psd", "dynamics", "potentials", "inference", "results", "jeans",
                "neural", "maps", "validate", "pipeline"):
        page = site / f"api/{sub}/index.html"
        html = page.read_text(encoding="utf-8") if page.is_file() else ""
        module = importlib.import_module(f"bayesdyn.{sub}")
        missing += [f"bayesdyn.{sub}.{n}" for n in module.__all__ if f'id="bayesdyn.{sub}.{n}"' not in html]
    assert not missing, f"public names without an API entry: {missing}"


def test_quick_start_matches_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block, "README.md has no bash block under '## Quick start'"
    assert block.group(1) in index, "docs/index.md's Quick start commands differ from README.md's; copy them over"


def test_cli_page_holds_the_default_configuration_with_a_line_per_key():
    """docs/cli.md shows `bayesdyn config`'s output as it is, and every key of the defaults has its line of help (so
    a new key is documented where `bayesdyn config` and the page show it)."""
    from bayesdyn.cli import to_toml
    from bayesdyn.pipeline import DEFAULT_CONFIG, KEY_HELP

    keys = [k for k, v in DEFAULT_CONFIG.items() if not isinstance(v, dict)]
    keys += [f"{sec}.{k}" for sec, t in DEFAULT_CONFIG.items() if isinstance(t, dict) and sec != "model" for k in t]
    assert sorted(k for k in keys if k not in KEY_HELP) == [] and sorted(set(KEY_HELP) - set(keys)) == []
    text = to_toml(DEFAULT_CONFIG)
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert f"```toml\n{text}```" in page, "docs/cli.md's configuration differs from `bayesdyn config`; paste it over"
    assert all(f"  # {KEY_HELP[k]}" in text for k in keys)
    import tomllib

    assert tomllib.loads(text) == DEFAULT_CONFIG  # the comments change nothing


def test_report_caveat_quotes_the_calibration_table():
    """The pipeline report's CAVEAT states what docs/calibration/index.md's summary table measured for each member
    design: the coverage ranges on the disk and NFW mocks and how many Gaia Challenge densities fall inside."""
    from bayesdyn.pipeline._stages import member_caveat

    text = (ROOT / "docs" / "calibration" / "index.md").read_text()
    rows = [r for r in text.splitlines() if r.startswith("| disk (ii) |") or r.startswith("| nfw (i) |")
            or r.startswith("| Gaia Challenge (iii) |") or r.startswith("| *one seed per resample")]
    split = next(i for i, r in enumerate(rows) if r.startswith("| *one seed per resample"))
    current, earlier = rows[:split], rows[split + 1:]
    assert len(current) == 8 and len(earlier) == 3

    def cov(rows, col):
        return [float(v) for r in rows if not r.startswith("| Gaia") for v in re.findall(r"\d\.\d\d", r.split("|")[col])]

    def inside(rows):
        return re.search(r"(\d) of 8 inside", next(r for r in rows if r.startswith("| Gaia"))).group(1)

    now = member_caveat({"n_members": 4, "n_resamples": 2, "seeds_per_resample": 2})
    assert f"68 % coverage {min(cov(current, 5)):.2f}–{max(cov(current, 5)):.2f}" in now
    assert f"95 % coverage {min(cov(current, 6)):.2f}–{max(cov(current, 6)):.2f}" in now
    assert f"only {inside(current)} of 8 densities fall inside" in now
    old = member_caveat({"n_members": 4})
    disk = next(r for r in earlier if r.startswith("| disk"))
    assert f"68 % coverage {disk.split('|')[5].strip()}" in old
    assert f"{inside(earlier)} of 8 densities inside" in old


def test_every_benchmark_script_parses_help_and_prints_the_machine():
    """The standard: benchmark figures come with the machine (benchmarks/_machine.py's line). A static check of every
    script: it calls machine(), and it has an argument parser or answers --help itself (five scripts ran their whole
    benchmark on --help, or read it as a folder)."""
    from pathlib import Path

    scripts = sorted(p for p in (Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py")
                     if not p.name.startswith("_"))
    assert len(scripts) >= 40
    for path in scripts:
        text = path.read_text()
        assert "machine()" in text, path.name
        assert "ArgumentParser" in text or '"--help"' in text, path.name
        assert "def machine(" not in text, path.name  # one definition, benchmarks/_machine.py
