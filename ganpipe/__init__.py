"""ganpipe: stable GAN training settings at cluster scale (Ray Tune + Optuna + MLflow)."""
from importlib.metadata import PackageNotFoundError, version

try:  # the installed distribution's version (pyproject.toml), never a second copy kept by hand
    __version__ = version("ganpipe")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"
