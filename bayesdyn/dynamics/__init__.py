"""Dynamics: the collisionless Boltzmann equation turns scores into accelerations (stage 3)."""

from ._cbe import LstsqAcceleration as LstsqAcceleration
from ._cbe import cbe_residuals as cbe_residuals
from ._cbe import disequilibrium as disequilibrium
from ._cbe import lstsq_acceleration as lstsq_acceleration

__all__ = ["LstsqAcceleration", "cbe_residuals", "disequilibrium", "lstsq_acceleration"]
