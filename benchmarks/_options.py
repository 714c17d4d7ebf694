"""``--psd-option KEY=VALUE`` of the benchmarks: extra ``fit_psd`` settings, values parsed as JSON."""

from __future__ import annotations

import json
from typing import Any


def psd_options(texts: list[str]) -> dict[str, Any]:
    """{key: value} from ["KEY=VALUE", ...]; a value that is not JSON stays a string (flow=sas_maf).

    Raises:
        SystemExit: for an entry without "=" or without a key, naming the entry.
    """
    out: dict[str, Any] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise SystemExit(f"--psd-option {text!r}: write KEY=VALUE, e.g. width=128, flow=sas_maf or radial_map=null")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
