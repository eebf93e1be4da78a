"""Speaker-adversarial training for `train_conf.speaker_adversary`: the model is taught an
embedding from which the training speaker cannot be told, as domain confusion does with domains
(Tzeng et al., "Simultaneous Deep Transfer Across Domains and Tasks", ICCV 2015; Alvi et al.,
"Turning a Blind Eye", ECCV Workshops 2018, for a factor a classifier must ignore).

Two terms join the training loss at every step:
  - a small classifier (the adversary) learns to name each clip's training speaker from the model's
    embedding (the input of its head), with the embedding held fixed: cross entropy;
  - the model is pushed, through the adversary held fixed, towards embeddings on which the
    adversary's answer is uniform over the speakers: `weight` x the cross entropy between its
    output and the uniform distribution.
Each augmented copy's session (`<speaker>#copy<k>`) is a speaker of its own, so the model is also
asked not to tell one simulated voice or channel from another.

A gradient reversal layer (Ganin & Lempitsky, ICML 2015) was the first form tried: on the synthetic
task of tests/test_speaker_adversary.py, with weights 1 to 10, a fresh linear probe still named the
speaker from its embedding 97-100 % of the time (chance 25 %); with the uniform target, 31-32 %
(weights 0.3 and 1), the emotion kept.

Only training uses it. A checkpoint keeps the adversary beside the optimizer (for a resume); the
model, and so inference and export, never holds it. Clips without a speaker take no part.
"""
import math
from typing import Optional, Sequence

import torch
from torch import nn

from mser.errors import ConfigError

IGNORED = -1   # the target of a clip whose speaker the training list does not name
HIDDEN_SIZE = 128


def check_speaker_adversary(weight) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight < math.inf:
        raise ConfigError(f"train_conf.speaker_adversary must be a number >= 0 (0: off), got {weight!r}")
    return float(weight)


class SpeakerAdversary(nn.Module):
    """The speaker classifier over embeddings of `embedding_size`, for the named `speakers`;
    `weight` scales the model's confusion term."""

    def __init__(self, embedding_size: int, speakers: Sequence[str], weight: float):
        super().__init__()
        self.speakers = sorted(set(speakers) - {""})
        self.index = {speaker: i for i, speaker in enumerate(self.speakers)}
        self.weight = weight
        self.tap: Optional["EmbeddingTap"] = None   # on the model's head (build_speaker_adversary)
        self.classifier = nn.Sequential(nn.Linear(embedding_size, HIDDEN_SIZE), nn.ReLU(),
                                        nn.Linear(HIDDEN_SIZE, len(self.speakers)))

    def targets(self, speakers: Sequence[str], device) -> torch.Tensor:
        """(batch,) speaker indices; IGNORED for a clip without a (known) speaker."""
        return torch.tensor([self.index.get(speaker, IGNORED) for speaker in speakers], dtype=torch.long,
                            device=device)

    def loss(self, embedding: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Both terms for `embedding` (batch, embedding_size) of clips with speaker `targets`, a
        scalar: the adversary's cross entropy (gradient to the adversary only) plus weight x the
        confusion term (gradient to the embedding only)."""
        known = targets != IGNORED
        if not bool(known.any()):
            return embedding.sum() * 0.0
        embedding, targets = embedding[known].float(), targets[known]
        adversary_loss = nn.functional.cross_entropy(self.classifier(embedding.detach()), targets)
        fixed = {name: parameter.detach() for name, parameter in self.classifier.named_parameters()}
        logits = torch.func.functional_call(self.classifier, fixed, (embedding,))
        confusion = -torch.log_softmax(logits, dim=1).mean()
        return adversary_loss + self.weight * confusion


class EmbeddingTap:
    """Keeps the last input of a model's head (its embedding) while registered: a hook, so that the
    embedding is taken from the model's own forward (through DistributedDataParallel too)."""

    def __init__(self, head: nn.Module):
        self.embedding: Optional[torch.Tensor] = None
        self.handle = head.register_forward_pre_hook(self.keep)

    def keep(self, module: nn.Module, inputs) -> None:
        self.embedding = inputs[0]

    def take(self) -> torch.Tensor:
        embedding, self.embedding = self.embedding, None
        if embedding is None:
            raise RuntimeError("the model's forward did not run its head; the speaker adversary needs "
                               "a model whose forward ends in self.head(embedding)")
        return embedding

    def remove(self) -> None:
        self.handle.remove()


def embedding_size(model: nn.Module) -> int:
    """The width of the embedding a model's head takes (its first Linear or BatchNorm layer)."""
    head = getattr(model, "head", None)
    for module in head.modules() if isinstance(head, nn.Module) else []:
        for attribute in ("in_features", "num_features"):
            if isinstance(getattr(module, attribute, None), int):
                return getattr(module, attribute)
    raise ConfigError(f"train_conf.speaker_adversary needs a model with a linear head over an embedding; "
                      f"{type(model).__name__} has none")


def build_speaker_adversary(weight, model: nn.Module, speakers: Sequence[str]) -> Optional[SpeakerAdversary]:
    """The adversary for `train_conf.speaker_adversary` = `weight` over the training clips'
    `speakers`, or None when it is 0 (off), its `tap` on the model's head. ConfigError when fewer
    than two speakers are named."""
    weight = check_speaker_adversary(weight)
    if weight == 0:
        return None
    named = set(speakers) - {""}
    if len(named) < 2:
        raise ConfigError(f"train_conf.speaker_adversary needs the speakers of the training clips (the lists' "
                          f"third column, create_data.py writes it); the training list names {len(named)}")
    adversary = SpeakerAdversary(embedding_size(model), sorted(named), weight)
    adversary.tap = EmbeddingTap(model.head)
    return adversary
