"""How-to: a Gaia file → a Galactocentric Catalog, with cuts reported and errors propagated.

    python examples/gaia_to_catalog.py [PATH] [--out catalog.npz]

Default PATH: ../shared/data/gaia/gdr3_1000.fits (real DR3 rows: 23 give a 6D point;
976 lack a radial velocity and 1 has a negative parallax — both counts are reported;
3 of the 23 have RUWE > 1.4 and are cut, with the count recorded).
"""

import argparse
import warnings
from pathlib import Path

import numpy as np

import bayesdyn as bd

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gaia" / "gdr3_1000.fits"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", nargs="?", default=str(DEFAULT))
    ap.add_argument("--out", default=None, help="save the catalog (.npz, no pickle)")
    args = ap.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", bd.DroppedRowsWarning)
        try:  # astropy 'v4.0' solar parameters; RUWE kept where the file has it (DR3's gaia_source; DR2's has not)
            cat = bd.Catalog.from_gaia(args.path, extra_columns=("ruwe",))
        except bd.catalog.CatalogError as err:
            if "ruwe" not in str(err):
                raise
            cat = bd.Catalog.from_gaia(args.path)
    for w in caught:
        print(f"note: {w.message}")
    if "ruwe" in cat.columns:  # a poor astrometric fit (RUWE > 1.4) makes the formal errors unreliable
        cat = cat.select(cat.columns["ruwe"] < 1.4, "ruwe < 1.4")
        cut = cat.history[-1]
        print(f"RUWE cut: removed {cut.removed}, kept {cut.kept}")
    print(cat.summary())
    if cat.error_columns:
        cov = cat.covariance()  # (N, 6, 6) linearised Galactocentric covariance
        sig_v = np.sqrt(np.einsum("nii->ni", cov[:, 3:, 3:]))
        print(f"median velocity errors (v_x, v_y, v_z): {np.median(sig_v, axis=0).round(2)} km/s")
    if args.out:
        cat.save(args.out)
        print(f"wrote {args.out}")
    return cat


if __name__ == "__main__":
    main()
