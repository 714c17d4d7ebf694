"""The machine line that benchmark scripts print with their figures (shared by calibration, league, score_bias);
the same function records the machine with each calibration realisation (bayesdyn.validate)."""

from __future__ import annotations

from bayesdyn.validate._machine import machine

__all__ = ["machine"]
