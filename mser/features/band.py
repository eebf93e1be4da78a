"""A band-pass front end for any featurizer (`preprocess_conf.band_limit_hz: [low, high]`).

Every clip, in training and at inference, is band-passed to [low, high] Hz before its features are
computed, so the model only ever hears what a narrower channel also carries: with [300, 3400], the
band of a telephone line, a wideband recording and the same speech over a telephone line differ only
by what the line adds (noise, companding). The cost is what the model would have learnt outside the
band (README, Features: on the demo corpus, more than the telephone robustness it buys).

The filter is a linear-phase FIR (scipy's Kaiser-window design, 60 dB stop band, 200 Hz transitions)
applied as a centred convolution, so nothing is delayed; it runs on the featurizer's device, inside
an exported ONNX graph too, and a clip's filtered samples never depend on the padding after it.
"""
from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch
import yaml
from torch import nn

from mser.errors import ConfigError
from mser.features.base import mask_samples

STOP_BAND_DB = 60.0
TRANSITION_HZ = 200.0


def parse_band(value: Any, sample_rate: int) -> Optional[Tuple[float, float]]:
    """`preprocess_conf.band_limit_hz` as (low, high) Hz, or None when it is null; ConfigError for
    anything but two numbers with 0 <= low < high <= half the sample rate."""
    if isinstance(value, str):   # as --overwrites passes it: preprocess_conf.band_limit_hz=[300,3400]
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            pass
    if value is None:
        return None
    nyquist = sample_rate / 2
    try:
        low, high = (float(edge) for edge in value)
    except (TypeError, ValueError):
        raise ConfigError(f"preprocess_conf.band_limit_hz must be null or [low, high] in Hz, got {value!r}") from None
    if not 0 <= low < high <= nyquist:
        raise ConfigError(f"preprocess_conf.band_limit_hz {value!r} must satisfy 0 <= low < high <= {nyquist:g} "
                          f"(half the sample rate)")
    return low, high


def band_pass_taps(low: float, high: float, sample_rate: int) -> np.ndarray:
    """(taps,) float32, an odd number: the FIR band-pass [low, high] Hz (low 0: a low-pass; high at
    the Nyquist frequency: a high-pass)."""
    from scipy.signal import firwin, kaiserord
    nyquist = sample_rate / 2
    count, beta = kaiserord(STOP_BAND_DB, TRANSITION_HZ / nyquist)
    count |= 1   # odd: a whole-sample delay that the centred convolution removes
    edges = [edge for edge in (low, high) if 0 < edge < nyquist]
    if not edges:
        taps = np.zeros(count)
        taps[count // 2] = 1.0
        return taps.astype(np.float32)
    pass_zero = low <= 0   # low-pass when only the upper edge is inside the band
    return firwin(count, edges, window=("kaiser", beta), pass_zero=pass_zero, fs=sample_rate).astype(np.float32)


class BandPass(nn.Module):
    """waveforms (batch, samples), lengths (batch,) -> the same, band-passed; zero past `lengths`."""

    def __init__(self, low: float, high: float, sample_rate: int):
        super().__init__()
        self.low, self.high = low, high
        # not in the state dict: the config rebuilds it, and checkpoints stay loadable either way
        self.register_buffer("taps", torch.from_numpy(band_pass_taps(low, high, sample_rate))[None, None, :],
                             persistent=False)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        taps = self.taps.to(waveforms.dtype)
        clips = mask_samples(waveforms, lengths)[:, None, :]
        return mask_samples(nn.functional.conv1d(clips, taps, padding=taps.shape[-1] // 2)[:, 0, :], lengths)


def limit_band(featurizer: nn.Module, band: Optional[Sequence[float]]) -> nn.Module:
    """`featurizer`, made to band-pass its input first (a forward pre-hook, so that every featurizer
    gets it without code of its own); unchanged when `band` is None. Sets `featurizer.band_hz`."""
    featurizer.band_hz = None if band is None else tuple(band)
    if band is None:
        return featurizer
    featurizer.band_pass = BandPass(band[0], band[1], featurizer.sample_rate)

    def band_pass_input(module, args, kwargs):
        waveforms = args[0] if args else kwargs.pop("waveforms")
        lengths = args[1] if len(args) > 1 else kwargs.pop("lengths", None)
        lengths = module.full_lengths(waveforms, lengths)
        return (module.band_pass(waveforms.float(), lengths), lengths), kwargs

    featurizer.register_forward_pre_hook(band_pass_input, with_kwargs=True)
    return featurizer
