"""`ganpipe features train DATASET [--out PATH]`: (re)build a feature extractor's weights."""
from __future__ import annotations

from pathlib import Path

from ganpipe.metrics import digits_classifier as dc

# stacked-digits needs no extractor of its own: it applies the digits classifier per channel.
TRAINABLE = ("digits",)


def train_features(dataset: str, out: str | None = None) -> dict:
    """Train the feature classifier for `dataset`, save it to `out` (default: the shipped
    package data file) and return {"path", "heldout_accuracy", "sha256"}."""
    if dataset not in TRAINABLE:
        raise ValueError(f"no trainable feature extractor for dataset {dataset!r}; valid: {', '.join(TRAINABLE)}")
    path = Path(out) if out else dc.WEIGHTS_PATH
    model, acc = dc.train_digits_classifier(seed=dc.DEFAULT_SEED)
    sha = dc.save_digits_classifier(model, path, seed=dc.DEFAULT_SEED, heldout_accuracy=acc)
    dc._load_cached.cache_clear()  # a later load in this process must see the new file
    return {"path": str(path.resolve()), "heldout_accuracy": acc, "sha256": sha}
