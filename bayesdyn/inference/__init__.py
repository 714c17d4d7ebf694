"""Inference: potential models with NumPyro priors and NUTS posteriors (stage 5)."""

from ._data import AccelerationData as AccelerationData
from ._data import StarScoreData as StarScoreData
from ._data import WeakFormData as WeakFormData
from ._combine import combine_members as combine_members
from ._combine import ensemble_mean_covariance as ensemble_mean_covariance
from ._infer import infer as infer
from ._infer import run_nuts as run_nuts
from ._infer import weak_form_weights as weak_form_weights
from ._model import PotentialModel as PotentialModel
from ._model import acceleration_log_likelihood as acceleration_log_likelihood
from ._model import derived_quantities as derived_quantities
from ._model import weak_form_log_likelihood as weak_form_log_likelihood

__all__ = [
    "AccelerationData",
    "PotentialModel",
    "StarScoreData",
    "WeakFormData",
    "acceleration_log_likelihood",
    "combine_members",
    "derived_quantities",
    "ensemble_mean_covariance",
    "infer",
    "run_nuts",
    "weak_form_log_likelihood",
    "weak_form_weights",
]
