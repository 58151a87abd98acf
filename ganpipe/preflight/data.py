"""Read what a trial will read before anything starts.

Validation checks a dataset from files cheaply (headers, listings). A damaged gzip stream, a
cut-off batch, a label out of range or an unreadable Inception weights file only shows when the
data or the network is loaded, and then used to fail every trial of a sweep (three retries each)
with a traceback. Both loads are cached per process, so `ganpipe trial` pays nothing twice; a sweep's
driver reads them once more than before (its trials run in other processes) and then lets go. What
passed is remembered for the process, so a pipeline's stages do not read the same data again.
"""
from __future__ import annotations

from contextlib import contextmanager

from ganpipe.config.errors import ConfigError, Problem
from ganpipe.config.schema import TrialConfig

_PASSED: set[tuple] = set()  # (data config, eval.features, eval.inception_weights) already read here


@contextmanager
def data_problems_as_config_errors(source: str):
    """Data or feature-network problems raised inside become bad input (exit 2) blamed on `source`."""
    from ganpipe.data.files import DataRootError
    from ganpipe.metrics.features import FeaturesMissing

    try:
        yield
    except (DataRootError, FeaturesMissing) as e:
        raise ConfigError([Problem(source, e.key, str(e))]) from None


def check_data(cfg: TrialConfig, source: str, keep: bool = True) -> None:
    """A dataset read from files: read it and load its evaluation's feature network now. keep=False (a sweep's
    driver, whose trials run in other processes) lets go of the loaded data instead of holding it for hours."""
    from ganpipe.data.files import FILE_DATASETS

    checked = (repr(cfg.data), cfg.eval.features, cfg.eval.inception_weights)
    if cfg.data.dataset not in FILE_DATASETS or checked in _PASSED:
        return  # built-in data ships with the package; or this very data was read before in this process
    from ganpipe.data import get_dataset
    from ganpipe.metrics.features import check_features

    try:
        with data_problems_as_config_errors(source):
            check_features(get_dataset(cfg.data), cfg.eval.features or None, cfg.eval.inception_weights or None)
        _PASSED.add(checked)
    finally:
        if not keep:
            from ganpipe.data.files import load_files
            from ganpipe.metrics import image_classifier, inception

            for cached in (load_files, image_classifier._load_cached, inception._load_cached):
                cached.cache_clear()
