"""A translation task: two unpaired image domains, source (A) and target (B), of one shape."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ganpipe.data.base import Dataset


@dataclass(frozen=True)
class TranslationPair(Dataset):
    """Unpaired domains: training draws A and B images independently. kind == "translation".

    `sample` gives real target-domain images (what a translator must imitate);
    `sample_pair` one minibatch of each domain.
    """

    source: Dataset = field(default=None, repr=False, compare=False)
    target: Dataset = field(default=None, repr=False, compare=False)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.target.sample(n, generator)

    def sample_pair(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.source.sample(n, generator), self.target.sample(n, generator)


def digits_translation() -> TranslationPair:
    """Plain digits (A) -> coloured digits on textures (B), 3x8x8 each; see ganpipe.data.styled."""
    from ganpipe.data.styled import digit_domains

    a, b = digit_domains()
    return TranslationPair("digits-translation", "translation", b.shape, 10, source=a, target=b)
