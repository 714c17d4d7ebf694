"""Validation: calibration of posteriors on mocks with known truth (issue 5, DESIGN §6).

:func:`coverage` runs R independent realisations of a named mock — new stars,
new flows (or exact scores), new nodes, a new NUTS posterior — and reports for
each quantity the bias, the spread of the medians, the mean posterior width,
the coverage of the 68 % and 95 % intervals and the PIT (rank) histogram.
:class:`Likelihood` names the likelihood choices being compared (ensemble
covariance, noise floor, covariance inflation for correlated nodes, mixture of
per-member posteriors). :func:`evaluate_draws` evaluates any function of the
bound model components per posterior draw.

Example:
    >>> from bayesdyn import validate
    >>> res = validate.coverage("nfw", realisations=3, n_stars=5000, method="exact",
    ...                         likelihood="floor:0.05", n_nodes=16, n_velocities=32)  # doctest: +SKIP
    >>> res.summary[["coverage_68", "coverage_95", "bias_over_sd"]]  # doctest: +SKIP
"""

from ._coverage import ACCEPTANCE as ACCEPTANCE
from ._coverage import CoverageResult as CoverageResult
from ._coverage import coverage as coverage
from ._coverage import plot_pit as plot_pit
from ._coverage import pull_table as pull_table
from ._coverage import realisation as realisation
from ._coverage import summarise as summarise
from ._likelihood import Likelihood as Likelihood
from ._likelihood import build_data as build_data
from ._likelihood import design_effect as design_effect
from ._likelihood import gaussian_noise as gaussian_noise
from ._likelihood import scale_accelerations as scale_accelerations
from ._mocks import GAIA_CHALLENGE as GAIA_CHALLENGE
from ._mocks import MOCKS as MOCKS
from ._mocks import CalibrationMock as CalibrationMock
from ._mocks import DiskMock as DiskMock
from ._mocks import GaiaChallengeMock as GaiaChallengeMock
from ._mocks import NFWMock as NFWMock
from ._mocks import get_mock as get_mock
from ._quantities import DrawEvaluator as DrawEvaluator
from ._quantities import Quantity as Quantity
from ._quantities import density_at as density_at
from ._quantities import evaluate_draws as evaluate_draws
from ._quantities import interval_summary as interval_summary
from ._quantities import parameter as parameter
from ._sampler import NutsRunner as NutsRunner

__all__ = [
    "ACCEPTANCE",
    "CalibrationMock",
    "CoverageResult",
    "DiskMock",
    "DrawEvaluator",
    "GAIA_CHALLENGE",
    "GaiaChallengeMock",
    "Likelihood",
    "MOCKS",
    "NFWMock",
    "NutsRunner",
    "Quantity",
    "build_data",
    "coverage",
    "density_at",
    "design_effect",
    "evaluate_draws",
    "gaussian_noise",
    "get_mock",
    "interval_summary",
    "parameter",
    "plot_pit",
    "pull_table",
    "realisation",
    "scale_accelerations",
    "summarise",
]
