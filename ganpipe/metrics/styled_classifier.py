"""The content judge and feature space of the digits-translation task: the digits CNN on
3-channel restyled digits (ganpipe.data.styled), trained reproducibly and shipped as package data.

Trained on the B (styled) half only, never on a digit of the A half that translators are
judged on: 80 % of B's digits, restyled afresh every epoch (new textures and colours from
seeds the shipped images never use), so it learns digit shapes whatever the style;
held-out accuracy is measured on the shipped styled images of the other 20 %.

    model = load_styled_classifier()                  # cached, eval mode, .metadata
    feats, logits = model.features_and_logits(x)      # (N, 3, 8, 8) in [-1, 1] -> (N, 64), (N, 10)
"""
from __future__ import annotations

from pathlib import Path

import torch

from ganpipe.metrics.digits_classifier import DigitsClassifier, accuracy, fit_classifier, stratified_split
from ganpipe.metrics.weights_file import cached_loader, cpu_state, load_cached, read_weights, save_weights

ARCH_VERSION = "styled-digits-cnn-v1"
WEIGHTS_PATH = Path(__file__).parent / "weights" / "styled_digits_classifier.pt"
DEFAULT_SEED = 0
DEFAULT_EPOCHS = 40
SPLIT_SEED = 20240517
EPOCH_STYLE_SEED = 1_000_000  # + epoch: the training textures; data.styled.STYLE_SEED is far outside


def train_styled_classifier(seed: int = DEFAULT_SEED, epochs: int = DEFAULT_EPOCHS, log=None) -> tuple[DigitsClassifier, dict]:
    """(model in eval mode, metadata); one thread, seeded: same seed -> same weights."""
    from ganpipe.data.styled import _digit_intensities, build_styled, digit_domains, split_halves

    digits, labels = _digit_intensities()
    _, idx_b = split_halves(labels)
    _, target = digit_domains()
    train_rel, test_rel = stratified_split(labels[idx_b], 0.2, SPLIT_SEED)
    train_digits, y = digits[idx_b[train_rel].numpy()], labels[idx_b[train_rel]]

    def epoch_data(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:  # a fresh style for every epoch
        return torch.from_numpy(build_styled(train_digits, EPOCH_STYLE_SEED + epoch)).float() / 127.5 - 1, y

    report = None if log is None else (lambda epoch, loss, _: log(f"epoch {epoch + 1}/{epochs} loss {loss:.4f}"))
    torch.manual_seed(seed)
    model = fit_classifier(DigitsClassifier(channels=3), epoch_data, epochs, seed, report)
    acc = accuracy(model, target.to_float(target.images[test_rel]), target.labels[test_rel])
    meta = {"arch_version": ARCH_VERSION, "dataset": target.name, "data_sha256": target.content_sha256,
            "seed": seed, "epochs": epochs, "n_train": len(train_rel), "n_heldout": len(test_rel),
            "heldout_accuracy": acc}
    return model, meta


def save_styled_classifier(model: DigitsClassifier, meta: dict, path: str | Path = WEIGHTS_PATH) -> str:
    return save_weights(path, cpu_state(model), meta)


def read_styled_checkpoint(path: str | Path = WEIGHTS_PATH) -> dict:
    """The raw checkpoint dict; raises if the architecture or the weights' sha256 do not match."""
    return read_weights(path, ARCH_VERSION)


_load_cached = cached_loader(read_styled_checkpoint, lambda ckpt: DigitsClassifier(channels=3), maxsize=2)


def load_styled_classifier(path: str | Path | None = None) -> DigitsClassifier:
    if path is None and not WEIGHTS_PATH.exists():
        raise FileNotFoundError(f"{WEIGHTS_PATH} is missing; create it with `ganpipe features train digits-translation`")
    return load_cached(_load_cached, path or WEIGHTS_PATH)
