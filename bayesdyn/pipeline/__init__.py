"""The main job: configuration files and the staged run (catalog → PSD → accelerations → posterior → report)."""

from ._config import COMPONENTS as COMPONENTS
from ._config import DEFAULT_CONFIG as DEFAULT_CONFIG
from ._config import KEY_HELP as KEY_HELP
from ._config import PRIORS as PRIORS
from ._config import ConfigError as ConfigError
from ._config import build_model as build_model
from ._config import load_config as load_config
from ._config import validate_config as validate_config
from ._stages import Run as Run

__all__ = ["COMPONENTS", "DEFAULT_CONFIG", "KEY_HELP", "PRIORS", "ConfigError", "Run", "build_model", "load_config",
           "validate_config"]
