"""Results: posteriors, constraint tables, local ρ_DM, limits and plots (stage 6)."""

from ._posterior import ConvergenceWarning as ConvergenceWarning
from ._posterior import Posterior as Posterior

__all__ = ["ConvergenceWarning", "Posterior"]
