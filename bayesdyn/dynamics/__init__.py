"""Dynamics: the collisionless Boltzmann equation turns scores into accelerations (stage 3)."""

from ._cbe import LstsqAcceleration as LstsqAcceleration
from ._cbe import cbe_residuals as cbe_residuals
from ._cbe import disequilibrium as disequilibrium
from ._cbe import lstsq_acceleration as lstsq_acceleration

__all__ = ["LstsqAcceleration", "cbe_residuals", "disequilibrium", "lstsq_acceleration"]
from ._estimate import ScoreSource as ScoreSource  # noqa: E402
from ._estimate import default_nodes as default_nodes  # noqa: E402
from ._estimate import estimate_accelerations as estimate_accelerations  # noqa: E402

__all__ += ["ScoreSource", "default_nodes", "estimate_accelerations"]
from ._estimate import ExactScores as ExactScores  # noqa: E402

__all__ += ["ExactScores"]
from ._measurement import MeasurementErrorCorrection as MeasurementErrorCorrection  # noqa: E402
from ._measurement import copy_seed as copy_seed  # noqa: E402
from ._measurement import correct_measurement_errors as correct_measurement_errors  # noqa: E402
from ._measurement import measurement_error_correction as measurement_error_correction  # noqa: E402
from ._measurement import resmear as resmear  # noqa: E402

__all__ += ["MeasurementErrorCorrection", "copy_seed", "correct_measurement_errors", "measurement_error_correction", "resmear"]
from ._weak import weak_form_data as weak_form_data  # noqa: E402
from ._weak import weak_form_moments as weak_form_moments  # noqa: E402

__all__ += ["weak_form_data", "weak_form_moments"]
