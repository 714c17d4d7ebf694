"""Results: posteriors, constraint tables, local ρ_DM, limits and plots (stage 6)."""

from ._limits import dark_disk_limits as dark_disk_limits
from ._limits import plot_dark_disk_limits as plot_dark_disk_limits
from ._posterior import ConvergenceWarning as ConvergenceWarning
from ._posterior import Posterior as Posterior

__all__ = ["ConvergenceWarning", "Posterior", "dark_disk_limits", "plot_dark_disk_limits"]
