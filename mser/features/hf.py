"""Pretrained speech encoders from Hugging Face `transformers` as featurizers (macls's use_hf_model).

    preprocess_conf:
      use_hf_model: true
      feature_method: microsoft/wavlm-base-plus   # a hub id, or a local folder (save_pretrained)
      method_args: {layer: -1}                    # a hidden-state index, or "weighted"

Any wav2vec 2.0 / HuBERT / WavLM / data2vec-audio / w2v-BERT 2.0 checkpoint loads through
AutoModel and AutoFeatureExtractor (pip install "mser[hf]"), frozen and in eval mode, on the
device the featurizer is moved to. Features are the encoder's hidden states, 50 frames/s:

  layer: N          hidden_states[N] (0: the CNN/projection output, -1: the last layer), (B, T, D)
  layer: weighted   every hidden state stacked, (B, T, L * D), mixed by softmax-normalised weights
                    that live in the model (EncoderFront), so they train with it and are saved in
                    model.pth: the SUPERB recipe (Yang et al. 2021)

Padding never changes a clip's features: the feature extractor normalises each clip on its own
samples, encoders with layer-norm feature encoders run as a batch with an attention mask, and
encoders with a group-norm feature encoder (wav2vec2-base, hubert-base, wavlm-base-plus), whose
first layer normalises over the whole padded time axis, run clip by clip. Frames past a clip's
length are zero.

Which encoder made the features is recorded in the checkpoint: EncoderFront holds the SHA-256
digest of the encoder's config, feature-extractor settings and weights (the folder
save_pretrained wrote, or the hub snapshot in the local cache) and the layer choice, and a
checkpoint made with another encoder or layer is refused. Because the digest is of the content,
a local copy of a hub model (or a moved folder) is the same encoder.
"""
import contextlib
import functools
import hashlib
import inspect
import os
import re
import warnings
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from mser.errors import CheckpointError, ConfigError
from mser.features.base import Featurizer, mask_frames

INSTALL_HINT = 'pip install "mser[hf]"'
WEIGHTED = "weighted"
CONFIG_FILE = "config.json"
EXTRACTOR_FILE = "preprocessor_config.json"
# What from_pretrained reads, in the order it prefers; an index file means sharded weights.
WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors",
                "pytorch_model.bin.index.json", "pytorch_model.bin")
WEIGHTED_LAYER_CODE = -1   # the `layer` buffer of EncoderFront for layer: weighted


def import_transformers():
    try:
        import transformers
    except ImportError:
        raise ConfigError(f"preprocess_conf.use_hf_model needs the transformers package: {INSTALL_HINT}") from None
    return transformers


def looks_like_path(source: str) -> bool:
    """A hub id is 'name' or 'owner/name'; anything else is meant as a folder."""
    return source.startswith(("/", "./", "../", "~")) or source.count("/") > 1 or os.sep != "/" and os.sep in source


def check_local_folder(folder: str) -> None:
    missing = [name for name in (CONFIG_FILE, EXTRACTOR_FILE) if not os.path.isfile(os.path.join(folder, name))]
    if not any(os.path.isfile(os.path.join(folder, name)) for name in WEIGHT_FILES):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if missing:
        raise ConfigError(f"encoder folder {folder} has no {', '.join(missing)}: it must be a folder written by "
                          f"save_pretrained of the model and of its feature extractor")


def unreachable(source: str, error: Exception) -> ConfigError:
    return ConfigError(f"cannot load speech encoder '{source}': it is not in the local cache and cannot be fetched "
                       f"from the Hugging Face hub ({first_line(error)}); "
                       f"where there is network access run `hf download {source} --local-dir DIR` "
                       f"(or save_pretrained the model and its feature extractor) and set "
                       f"preprocess_conf.feature_method to that folder")


def load_encoder(source: str, revision: Optional[str] = None):
    """(model in eval mode with frozen weights, feature extractor, local folder it was read from).

    A hub id already in the local cache loads without touching the network; otherwise one quick
    request tells whether the hub can be reached before transformers starts its retries."""
    transformers = import_transformers()
    source = os.path.expanduser(source)
    local = os.path.isdir(source)
    if local:
        check_local_folder(source)
    elif looks_like_path(source):
        raise ConfigError(f"encoder folder not found: {source}")
    with quiet_loading(transformers):
        try:
            if local:
                return read_pretrained(transformers, source, revision, local_files_only=True)
            try:
                return read_pretrained(transformers, source, revision, local_files_only=True)
            except OSError:
                check_hub_reachable(source, revision)
                return read_pretrained(transformers, source, revision, local_files_only=False)
        except OSError as e:
            if local:
                raise ConfigError(f"cannot load speech encoder from {source}: {first_line(e)}") from None
            raise unreachable(source, e) from None
        except ValueError as e:   # a config.json of a model that is no speech encoder
            raise ConfigError(f"{source} is not a speech encoder transformers can load: {first_line(e)}") from None


def read_pretrained(transformers, source: str, revision: Optional[str], local_files_only: bool):
    extractor = transformers.AutoFeatureExtractor.from_pretrained(source, revision=revision,
                                                                  local_files_only=local_files_only)
    model = transformers.AutoModel.from_pretrained(source, revision=revision, local_files_only=local_files_only)
    folder = source if os.path.isdir(source) else os.path.dirname(transformers.utils.cached_file(
        source, CONFIG_FILE, revision=revision, local_files_only=True))
    model.eval().requires_grad_(False)
    return model, extractor, folder


def check_hub_reachable(source: str, revision: Optional[str]) -> None:
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import get_session
    try:
        get_session().head(hf_hub_url(source, CONFIG_FILE, revision=revision), timeout=10)
    except Exception as e:   # DNS, proxy, TLS, timeout: each HTTP client names them differently
        raise unreachable(source, e) from None


@contextlib.contextmanager
def quiet_loading(transformers):
    """No 'weights not used: lm_head ...' warnings (expected here), retry messages or progress bars."""
    import huggingface_hub.utils
    verbosity, hub_verbosity = transformers.logging.get_verbosity(), huggingface_hub.utils.logging.get_verbosity()
    bars = transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    huggingface_hub.utils.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        huggingface_hub.utils.logging.set_verbosity(hub_verbosity)
        if bars:
            transformers.logging.enable_progress_bar()


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_files(folder: str) -> List[str]:
    """The weight files from_pretrained reads in `folder` (the shards too when there is an index)."""
    import json
    for name in WEIGHT_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            if not name.endswith(".index.json"):
                return [name]
            with open(path, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            return [name, *shards]
    return []


@functools.lru_cache(maxsize=16)
def cached_folder_digest(folder: str, stamp: Tuple) -> str:
    digest = hashlib.sha256()
    for name in [CONFIG_FILE, EXTRACTOR_FILE, *weight_files(folder)]:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            digest.update(f"{name}\0{file_digest(path)}\n".encode())
    return digest.hexdigest()


def folder_digest(folder: str) -> str:
    """SHA-256 (hex) of an encoder folder's config, feature-extractor settings and weights;
    computed once per process for unchanged files."""
    names = [CONFIG_FILE, EXTRACTOR_FILE, *weight_files(folder)]
    stamp = tuple((name, os.stat(path).st_size, os.stat(path).st_mtime_ns) for name in names
                  if os.path.isfile(path := os.path.join(folder, name)))
    return cached_folder_digest(os.path.realpath(folder), stamp)


def source_digest(source: str, revision: Optional[str] = None) -> str:
    """folder_digest of a hub id's cached snapshot or of a local folder (no model is loaded)."""
    source = os.path.expanduser(source)
    if os.path.isdir(source):
        return folder_digest(source)
    transformers = import_transformers()
    try:
        return folder_digest(os.path.dirname(transformers.utils.cached_file(source, CONFIG_FILE, revision=revision)))
    except OSError as e:
        raise unreachable(source, e) from None


def encoder_name(source: str) -> str:
    """A file-name-safe short name of an encoder: 'microsoft/wavlm-base-plus' -> 'wavlm-base-plus'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(os.path.normpath(source))) or "encoder"


def parse_layer(layer: Union[int, str], num_hidden_states: int) -> int:
    """A hidden-state index in [0, num_hidden_states), or WEIGHTED_LAYER_CODE for 'weighted'."""
    if layer == WEIGHTED:
        return WEIGHTED_LAYER_CODE
    if isinstance(layer, bool) or not isinstance(layer, int) or not -num_hidden_states <= layer < num_hidden_states:
        raise ConfigError(f"preprocess_conf.method_args.layer must be '{WEIGHTED}' or a hidden-state index from "
                          f"{-num_hidden_states} to {num_hidden_states - 1} (this encoder has "
                          f"{num_hidden_states - 1} layers), got {layer!r}")
    return layer % num_hidden_states


class EncoderFeaturizer(Featurizer):
    """Hidden states of a frozen pretrained speech encoder.

    source:   hub id or local folder (save_pretrained of the model and its feature extractor)
    layer:    hidden-state index (0 = before the first transformer layer, -1 = last) or "weighted"
    revision: hub revision (branch, tag or commit) of a hub id

    forward(waveforms (batch, samples), lengths (batch,)) ->
        (batch, frames, hidden_size), or (batch, frames, num_hidden_states * hidden_size) with
        layer: weighted (layer-major: hidden state i is [i * hidden_size, (i + 1) * hidden_size)),
        and frame_lengths (batch,)
    """

    def __init__(self, source: str, sample_rate: int = 16000, layer: Union[int, str] = -1,
                 revision: Optional[str] = None):
        super().__init__(sample_rate)
        self.source = source
        self.encoder, self.extractor, self.folder = load_encoder(source, revision)
        expected_rate = getattr(self.extractor, "sampling_rate", sample_rate)
        if expected_rate != sample_rate:
            raise ConfigError(f"encoder {source} takes {expected_rate} Hz audio: set "
                              f"dataset_conf.dataset.sample_rate: {expected_rate}")
        self.digest = folder_digest(self.folder)
        self.num_hidden_states = self.encoder.config.num_hidden_layers + 1
        self.hidden_size = self.encoder.config.hidden_size
        self.layer = parse_layer(layer, self.num_hidden_states)
        self.feature_dim = self.hidden_size * (self.num_hidden_states if self.weighted else 1)
        self.input_name = self.encoder.main_input_name   # input_values (waveform) or input_features (fbank)
        # Group norm over time in the first conv layer (wav2vec2-base) and stacked positional convs
        # (data2vec-audio) see the padding whatever the attention mask: such encoders run clip by clip.
        self.clip_by_clip = (getattr(self.encoder.config, "feat_extract_norm", "layer") == "group"
                             or self.padding_leaks())

    @property
    def weighted(self) -> bool:
        return self.layer == WEIGHTED_LAYER_CODE

    def padding_leaks(self, tolerance: float = 1e-4) -> bool:
        """Whether padding changes a clip's hidden states in a masked batch: measured once on a
        seeded 1 s clip, alone and padded to 1.5 s (relative difference above `tolerance`)."""
        clip = torch.randn(1, self.sample_rate, generator=torch.Generator().manual_seed(0)) * 0.1
        batch = torch.zeros(2, self.sample_rate * 3 // 2)
        batch[0, :self.sample_rate], batch[1] = clip[0], 0.1
        lengths = torch.tensor([self.sample_rate, batch.shape[1]])
        with torch.no_grad():
            alone = self.batch_hidden_states(self.prepare(clip, lengths[:1]), "cpu")[0]
            padded = self.batch_hidden_states(self.prepare(batch, lengths), "cpu")[0][:alone.shape[0]]
        scale = alone.abs().max().clamp_min(1e-6)
        return bool(((padded - alone).abs().max() / scale) > tolerance)

    def train(self, mode: bool = True) -> "EncoderFeaturizer":
        super().train(mode)
        self.encoder.eval()   # frozen: no dropout, whatever the trainer's mode
        return self

    def model_front(self) -> "EncoderFront":
        """The module that sits in front of the model: the layer mix and the encoder's identity."""
        return EncoderFront(self.source, self.digest, self.layer, self.num_hidden_states, self.hidden_size)

    def prepare(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> List[torch.Tensor]:
        """Each clip through the feature extractor on its own samples: [(1, n[, dim])] on the CPU."""
        clips = waveforms.detach().float().cpu().numpy()
        return [self.extractor(np.ascontiguousarray(clip[:length]), sampling_rate=self.sample_rate,
                               return_tensors="pt")[self.input_name]
                for clip, length in zip(clips, lengths.tolist())]

    def input_frame_lengths(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        return torch.tensor([x.shape[1] for x in inputs], dtype=torch.long)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames per clip, (batch,) int64, for clip lengths in samples."""
        if self.input_name == "input_values":
            return self.output_lengths(lengths.long())
        return torch.tensor([self.prepare(torch.zeros(1, n), torch.tensor([n]))[0].shape[1]
                             for n in lengths.tolist()], dtype=torch.long)

    def output_lengths(self, input_lengths: torch.Tensor) -> torch.Tensor:
        if self.input_name != "input_values":
            return input_lengths   # fbank-frame inputs (w2v-BERT): hidden states keep their frame rate
        output_lengths = self.encoder._get_feat_extract_output_lengths
        if "add_adapter" in inspect.signature(output_lengths).parameters:   # hidden states come before the adapter
            return output_lengths(input_lengths, add_adapter=False).long()
        return output_lengths(input_lengths).long()

    def hidden_states(self, inputs: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """(batch, n[, dim]) inputs -> (batch, frames, num_hidden_states, hidden_size) or one layer
        (batch, frames, 1, hidden_size)."""
        arguments = {self.input_name: inputs, "output_hidden_states": True}
        if mask is not None:
            arguments["attention_mask"] = mask
        with warnings.catch_warnings():   # WavLM's float position bias with a bool padding mask
            warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
            states = self.encoder(**arguments).hidden_states
        if not self.weighted:
            return states[self.layer][:, :, None]
        return torch.stack(states, dim=2)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor = None) -> Tuple[torch.Tensor, torch.Tensor]:
        lengths = self.full_lengths(waveforms, lengths)
        device = waveforms.device
        inputs = self.prepare(waveforms, lengths)
        with torch.no_grad():
            if self.clip_by_clip:
                outputs = [self.hidden_states(x.to(device), None)[0] for x in inputs]
            else:
                outputs = self.batch_hidden_states(inputs, device)
        frame_lengths = self.output_lengths(self.input_frame_lengths(inputs)).to(device)
        frames = max(int(frame_lengths.max()), max(o.shape[0] for o in outputs))
        features = waveforms.new_zeros(len(outputs), frames, self.feature_dim)
        for row, output in enumerate(outputs):
            features[row, :output.shape[0]] = output.reshape(output.shape[0], -1).float()
        frame_lengths = frame_lengths.clamp(1, frames)
        return mask_frames(features, frame_lengths), frame_lengths

    def batch_hidden_states(self, inputs: List[torch.Tensor], device) -> List[torch.Tensor]:
        """One padded batch with an attention mask; returns each clip's (frames, layers, hidden)."""
        sizes = [x.shape[1] for x in inputs]
        padded = torch.zeros((len(inputs), max(sizes), *inputs[0].shape[2:]), dtype=inputs[0].dtype)
        for row, x in enumerate(inputs):
            padded[row, :x.shape[1]] = x[0]
        mask = (torch.arange(max(sizes))[None, :] < torch.tensor(sizes)[:, None]).long()
        states = self.hidden_states(padded.to(device), mask.to(device))
        return list(states)


class EncoderFront(nn.Module):
    """The part of encoder features that lives in the model: the layer mix and the encoder's identity.

    forward(features (batch, frames, num_hidden_states * hidden_size) with layer: weighted, else
    (batch, frames, hidden_size)) -> (batch, frames, hidden_size).
    Buffers `encoder_digest` (32 bytes of SHA-256) and `layer` go into the checkpoint with the
    weights; loading a state made with another encoder or layer raises CheckpointError.
    """

    def __init__(self, source: str, digest: str, layer: int, num_hidden_states: int, hidden_size: int):
        super().__init__()
        self.source, self.num_hidden_states, self.output_dim = source, num_hidden_states, hidden_size
        self.layer_weights = nn.Parameter(torch.zeros(num_hidden_states), requires_grad=layer == WEIGHTED_LAYER_CODE)
        self.register_buffer("encoder_digest", torch.tensor(list(bytes.fromhex(digest)), dtype=torch.uint8))
        self.register_buffer("layer", torch.tensor(layer, dtype=torch.long))

    @property
    def weighted(self) -> bool:
        return int(self.layer) == WEIGHTED_LAYER_CODE

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.weighted:
            return features
        stacked = features.unflatten(-1, (self.num_hidden_states, self.output_dim))
        weights = torch.softmax(self.layer_weights, dim=0).to(stacked.dtype)
        return torch.einsum("btld,l->btd", stacked, weights)

    def wrap(self, model: nn.Module) -> "ModelWithEncoderFront":
        return ModelWithEncoderFront(self, model)

    def check_state(self, state: Dict[str, torch.Tensor], prefix: str = "", where: str = "the checkpoint") -> None:
        """Raise CheckpointError when `state` was made with another encoder or layer choice."""
        digest, layer = state.get(prefix + "encoder_digest"), state.get(prefix + "layer")
        if digest is None or layer is None:
            raise CheckpointError(f"{where} was not trained on features of a speech encoder, but the config "
                                  f"asks for {self.source}")
        if not torch.equal(digest.cpu().to(torch.uint8), self.encoder_digest.cpu()):
            stored = bytes(digest.cpu().tolist()).hex()[:12]
            raise CheckpointError(f"{where} was trained on features of another speech encoder (digest {stored}) "
                                  f"than {self.source} (digest {bytes(self.encoder_digest.tolist()).hex()[:12]}): "
                                  f"set preprocess_conf.feature_method to the encoder it was trained with")
        if int(layer) != int(self.layer):
            raise CheckpointError(f"{where} was trained on {describe_layer(int(layer))} of {self.source}, but the "
                                  f"config asks for {describe_layer(int(self.layer))} "
                                  f"(preprocess_conf.method_args.layer)")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.check_state(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def describe_layer(layer: int) -> str:
    return "the weighted sum of all hidden states" if layer == WEIGHTED_LAYER_CODE else f"hidden state {layer}"


class ModelWithEncoderFront(nn.Module):
    """front + model: forward(features, lengths) = model(front(features), lengths)."""

    def __init__(self, front: EncoderFront, model: nn.Module):
        super().__init__()
        self.front, self.model = front, model

    def forward(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.model(self.front(features), lengths)

    def embedding(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.model.embedding(self.front(features), lengths)

    def check_checkpoint(self, state: Dict[str, torch.Tensor], directory: str) -> None:
        self.front.check_state(state, "front.", f"checkpoint {directory}")


def build_encoder_featurizer(source: str, sample_rate: int = 16000, **method_args) -> EncoderFeaturizer:
    """The featurizer of `preprocess_conf: {use_hf_model: true, feature_method: source, method_args}`."""
    from mser.registry import check_kwargs
    check_kwargs(EncoderFeaturizer.__init__, method_args, "preprocess_conf.method_args of a speech encoder",
                 supplied=("self", "source", "sample_rate"))
    return EncoderFeaturizer(source, sample_rate=sample_rate, **method_args)
