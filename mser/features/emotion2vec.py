"""emotion2vec (Ma et al. 2024) through FunASR as a featurizer: the upstream mser's default features.

    preprocess_conf:
      feature_method: Emotion2Vec
      method_args:
        model: iic/emotion2vec_base    # a ModelScope/Hugging Face id, or a local folder
        granularity: frame             # or utterance: the mean over frames, one vector per clip

Needs pip install "mser[funasr]". The upstream form (`feature_method: Emotion2Vec` with
`method_args: {granularity: utterance}`) works as it is; its model, iic/emotion2vec_base at revision
v2.0.4 on ModelScope, is the default. A local folder holds what FunASR reads: config.yaml (model:
Emotion2vec and its model_conf) and model.pt. FunASR evaluates a string of config.yaml
(feature_encoder_spec) as Python, so load only folders you trust.

The encoder is frozen and in eval mode, on the device the featurizer is moved to. Each clip runs
on its own samples (FunASR normalises a clip over its whole length, as emotion2vec was trained), so
padding never changes a clip's features; frame features come at 50 frames/s (stride 320 samples).
Which model made the features is recorded in the checkpoint (Emotion2VecFront: SHA-256 of
config.yaml and model.pt, and the granularity), and a checkpoint made with another is refused.
"""
import contextlib
import hashlib
import io
import logging
import os
import socket
from typing import Dict, Optional, Tuple
from urllib.parse import urlparse

import torch
import torch.nn.functional as F

from mser.errors import CheckpointError, ConfigError
from mser.features.base import Featurizer, mask_frames, register_featurizer
from mser.features.hf import EncoderFront, file_digest, first_line, looks_like_path

INSTALL_HINT = 'pip install "mser[funasr]"'
DEFAULT_MODEL = "iic/emotion2vec_base"   # what the upstream mser downloads
DEFAULT_REVISION = "v2.0.4"
MODEL_FILES = ("config.yaml", "model.pt")
GRANULARITIES = ("frame", "utterance")
HUBS = {"ms": "ms", "modelscope": "ms", "hf": "hf", "huggingface": "hf"}


def import_funasr():
    """funasr.AutoModel, without the notices FunASR prints on import (ffmpeg, version)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from funasr import AutoModel
    except ImportError:
        raise ConfigError(f"feature_method Emotion2Vec needs the funasr package: {INSTALL_HINT}") from None
    return AutoModel


def check_model_folder(folder: str) -> None:
    missing = [name for name in MODEL_FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise ConfigError(f"emotion2vec folder {folder} has no {' or '.join(missing)}: it must hold the "
                          f"config.yaml and model.pt of a FunASR emotion2vec model")


def unreachable(model: str, hub: str, error: Exception) -> ConfigError:
    where, command = (("ModelScope", f"modelscope download --model {model} --local_dir DIR") if hub == "ms" else
                      ("the Hugging Face hub", f"hf download {model} --local-dir DIR"))
    return ConfigError(f"cannot load emotion2vec model '{model}': it is not in the local cache and cannot be "
                       f"fetched from {where} ({first_line(error)}); where there is network access download it "
                       f"({command}) and set "
                       f"preprocess_conf.method_args.model to that folder")


def check_reachable(url: str) -> None:
    """One quick connection, so that an offline machine fails at once instead of after retries."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=10):
        pass


def download(model: str, hub: str, revision: Optional[str]) -> str:
    """The local folder of a hub id: from the cache, or downloaded when the hub can be reached."""
    if hub == "ms":
        from modelscope.hub.api import HubApi
        from modelscope.hub.snapshot_download import snapshot_download
        endpoint, fetch = HubApi().endpoint, lambda local: snapshot_download(
            model, revision=revision, local_files_only=local)
    else:
        from funasr.download.name_maps_from_hub import name_maps_hf
        from huggingface_hub import constants, snapshot_download
        model = name_maps_hf.get(model, model)   # e.g. iic/emotion2vec_plus_base -> emotion2vec/emotion2vec_plus_base
        endpoint, fetch = constants.ENDPOINT, lambda local: snapshot_download(
            model, revision=revision, local_files_only=local)
    try:
        return fetch(True)
    except Exception:   # not cached: each hub names this differently
        pass
    try:
        check_reachable(endpoint)
        return fetch(False)
    except Exception as e:
        raise unreachable(model, hub, e) from None


def model_folder(model: str, hub: str = "ms", revision: Optional[str] = DEFAULT_REVISION) -> str:
    """The local folder of `model` (a folder, or a hub id fetched into the hub's cache)."""
    model = os.path.expanduser(model)
    if os.path.isdir(model):
        folder = model
    elif looks_like_path(model):
        raise ConfigError(f"emotion2vec folder not found: {model}")
    else:
        folder = download(model, hub, revision)
    check_model_folder(folder)
    return folder


def folder_digest(folder: str, granularity: str) -> str:
    """SHA-256 (hex) of a model folder's config.yaml and model.pt, and of the granularity."""
    digest = hashlib.sha256(f"granularity\0{granularity}\n".encode())
    for name in MODEL_FILES:
        digest.update(f"{name}\0{file_digest(os.path.join(folder, name))}\n".encode())
    return digest.hexdigest()


@contextlib.contextmanager
def quiet_funasr():
    """No version notice, INFO lines or root-logger handlers from FunASR's AutoModel."""
    root = logging.getLogger()
    handlers, level, disabled = list(root.handlers), root.level, logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(disabled)
        root.handlers[:], root.level = handlers, level


def load_emotion2vec(folder: str, hub: str) -> torch.nn.Module:
    """The Emotion2vec module FunASR builds from `folder`, frozen, in eval mode, on the CPU."""
    AutoModel = import_funasr()
    try:
        with quiet_funasr():
            # ncpu: AutoModel would otherwise set torch's thread count to 4 for the whole process
            auto = AutoModel(model=folder, hub=hub, device="cpu", ncpu=torch.get_num_threads(),
                             disable_update=True, disable_pbar=True, disable_log=True, log_level="ERROR")
    except Exception as e:
        raise ConfigError(f"cannot load emotion2vec from {folder}: {first_line(e)}") from None
    encoder = auto.model
    if type(encoder).__name__ != "Emotion2vec":
        raise ConfigError(f"{folder} holds a FunASR {type(encoder).__name__} model, not emotion2vec")
    return encoder.eval().requires_grad_(False)


@register_featurizer
class Emotion2Vec(Featurizer):
    """Frame (or utterance) features of a frozen emotion2vec model, through FunASR.

    model:       ModelScope id (hub: ms, the default), Hugging Face id (hub: hf) or local folder
    revision:    hub revision of a hub id (default v2.0.4, as upstream)
    granularity: frame (50 frames/s) or utterance (the mean over a clip's frames)

    forward(waveforms (batch, samples), lengths (batch,)) ->
        granularity frame: (batch, frames, embed_dim) and frame_lengths (batch,)
        granularity utterance: (batch, 1, embed_dim) and ones (batch,)
    """

    extra = "funasr"   # the pip extra (and module) this featurizer needs
    pretrained = True  # needs a model folder or hub id: left out of list_featurizers() by default

    def __init__(self, sample_rate: int = 16000, model: str = DEFAULT_MODEL, revision: Optional[str] = DEFAULT_REVISION,
                 hub: str = "ms", granularity: str = "frame"):
        super().__init__(sample_rate)
        if sample_rate != 16000:
            raise ConfigError(f"emotion2vec takes 16000 Hz audio: set dataset_conf.dataset.sample_rate: 16000 "
                              f"(got {sample_rate})")
        if granularity not in GRANULARITIES:
            raise ConfigError(f"preprocess_conf.method_args.granularity must be one of {', '.join(GRANULARITIES)}, "
                              f"got {granularity!r}")
        if hub not in HUBS:
            raise ConfigError(f"preprocess_conf.method_args.hub must be one of {', '.join(HUBS)}, got {hub!r}")
        import_funasr()   # before any hub look-up: modelscope comes with funasr
        self.source, self.granularity = model, granularity
        self.folder = model_folder(model, HUBS[hub], revision)
        self.encoder = load_emotion2vec(self.folder, HUBS[hub])
        self.digest = folder_digest(self.folder, granularity)
        self.feature_dim = int(self.encoder.cfg.get("embed_dim"))
        self.conv_layers = list(self.encoder.modality_encoders["AUDIO"].feature_enc_layers)
        self.normalize = bool(self.encoder.cfg.get("normalize"))

    @property
    def min_samples(self) -> int:
        """The receptive field of the convolutions: the shortest input that gives one frame."""
        size = 1
        for _, kernel, stride in reversed(self.conv_layers):
            size = (size - 1) * stride + kernel
        return size

    def train(self, mode: bool = True) -> "Emotion2Vec":
        super().train(mode)
        self.encoder.eval()   # frozen: no dropout, whatever the trainer's mode
        return self

    def model_front(self) -> "Emotion2VecFront":
        return Emotion2VecFront(self.source, self.digest, self.feature_dim)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames per clip, (batch,) int64, for clip lengths in samples."""
        if self.granularity == "utterance":
            return torch.ones_like(lengths, dtype=torch.long)
        frames = lengths.long().clamp_min(self.min_samples)
        for _, kernel, stride in self.conv_layers:
            frames = torch.div(frames - kernel, stride, rounding_mode="floor") + 1
        return frames

    def clip_features(self, clip: torch.Tensor) -> torch.Tensor:
        """One clip's samples (n,) -> (frames, embed_dim), as FunASR's Emotion2vec.inference makes them."""
        if clip.shape[0] < self.min_samples:   # a clip under 25 ms: zeros after it, to give one frame
            clip = F.pad(clip, (0, self.min_samples - clip.shape[0]))
        if self.normalize:
            clip = F.layer_norm(clip, clip.shape)
        return self.encoder.extract_features(clip[None], padding_mask=None)["x"][0]

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor = None) -> Tuple[torch.Tensor, torch.Tensor]:
        lengths = self.full_lengths(waveforms, lengths)
        with torch.no_grad():
            outputs = [self.clip_features(clip[:length].float())
                       for clip, length in zip(waveforms, lengths.tolist())]
        if self.granularity == "utterance":
            features = torch.stack([output.mean(dim=0) for output in outputs])[:, None].to(waveforms.dtype)
            return features, torch.ones(len(outputs), dtype=torch.long, device=waveforms.device)
        frame_lengths = torch.tensor([output.shape[0] for output in outputs], device=waveforms.device)
        features = waveforms.new_zeros(len(outputs), int(frame_lengths.max()), self.feature_dim)
        for row, output in enumerate(outputs):
            features[row, :output.shape[0]] = output
        return mask_frames(features, frame_lengths), frame_lengths


class Emotion2VecFront(EncoderFront):
    """The emotion2vec model's identity inside the trained model (no trainable weights).

    forward(features (batch, frames, embed_dim)) -> the same features. The buffer `encoder_digest`
    goes into the checkpoint; loading a state made with another model or granularity raises
    CheckpointError."""

    def __init__(self, source: str, digest: str, embed_dim: int):
        super().__init__(source, digest, layer=0, num_hidden_states=1, hidden_size=embed_dim)

    def check_state(self, state: Dict[str, torch.Tensor], prefix: str = "", where: str = "the checkpoint") -> None:
        digest = state.get(prefix + "encoder_digest")
        if digest is None:
            raise CheckpointError(f"{where} was not trained on emotion2vec features, but the config asks for "
                                  f"{self.source}")
        if not torch.equal(digest.cpu().to(torch.uint8), self.encoder_digest.cpu()):
            raise CheckpointError(f"{where} was trained on features of another emotion2vec model or granularity "
                                  f"(digest {bytes(digest.cpu().tolist()).hex()[:12]}) than {self.source} (digest "
                                  f"{bytes(self.encoder_digest.tolist()).hex()[:12]}): set "
                                  f"preprocess_conf.method_args.model and granularity to the ones it was trained with")
