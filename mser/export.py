"""Export a checkpoint to ONNX, checked against PyTorch before it is kept.

Preferred graph: featurizer + model + softmax in one, taking raw audio
    waveforms (batch, samples) float32 mono in [-1, 1] at the model's sample rate
    -> logits (batch, num_class), probabilities (batch, num_class)
so that onnxruntime + numpy + soundfile run the model with no mser or torch code. It needs the
torch.export-based exporter (`pip install "mser[onnx]"`, which brings onnxscript). When the
featurizer or the model does not go through it (the BiLSTM's LSTM, clip-level CustomFeatures), the
model alone is exported, taking
    features (batch, frames, feature_dim) from mser's featurizer
and the metadata says so (`input` = "features").

A model trained with speaker normalisation (preprocess_conf.speaker_norm) has the training set's
global statistics in the graph, between featurizer and model, in both kinds of graph: it then gives
what MSERPredictor.predict(clip) gives without a speaker, and the metadata says `speaker_norm` =
"global" ("none" for other models). Per-speaker statistics stay with mser's predictor.

The graph has no lengths input: every row of a batch is one whole clip, so batch clips of the
same length (e.g. fixed windows of a long recording) or run them one at a time.

`MSERPredictor(..., backend="onnx")` runs the graph through `OnnxRunner`: `load_or_export` reuses
<checkpoint>/model.onnx when its metadata `fingerprint` (a SHA-256 of the weights, featurizer and
speaker statistics, labels and the model/featurizer config) matches the checkpoint, and otherwise
exports again, writing to a temporary file that is renamed into place (a crash or two processes
exporting at once never leave half a graph).

`MSERPredictor(..., backend="onnx", precision="int8")` runs that graph with its convolutions
statically quantised to int8 (`load_or_quantize`): activation ranges from up to 32 clips of the
training list the config names, saved as <checkpoint>/model.int8.onnx with a fingerprint of the
float32 graph, and reused the same way (re-quantised when the training list is readable and gives
other clips; reused without it).
"""
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from mser.errors import MSERError

MAX_DIFFERENCE = 1e-4   # largest acceptable |onnxruntime - PyTorch| on the probabilities
EXPORT_FILE = "model.onnx"
FINGERPRINT_VERSION = "1"   # bump when the graph's layout changes, so old exports are redone
INT8_FILE = "model.int8.onnx"
INT8_VERSION = "1"          # bump when the quantisation settings change
CALIBRATION_CLIPS = 32      # clips of the training list that set the int8 activation ranges


class ExportError(MSERError):
    """No exporter could produce a graph, or the graph disagrees with PyTorch."""


class GlobalStandardizer(nn.Module):
    """(features - mean) / std with constant (feature_dim,) statistics: the speaker normalisation
    of a clip without a speaker. features: (batch, frames, feature_dim) -> the same shape."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.detach().float().clone())
        self.register_buffer("std", std.detach().float().clone())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features.float() - self.mean) / self.std


def standardizer_for(predictor) -> nn.Module:
    """The predictor's global speaker normalisation as a graph module; identity without one."""
    if predictor.speaker_norm is None:
        return nn.Identity()
    mean, std = predictor.speaker_norm.statistics(None)
    return GlobalStandardizer(mean.cpu(), std.cpu())


def speaker_norm_kind(predictor) -> str:
    """"global": the graph standardises features with the training set's global statistics (a model
    trained with speaker normalisation); "none": the model was trained without it."""
    return "global" if predictor.speaker_norm is not None else "none"


class WaveformClassifier(nn.Module):
    """waveforms (batch, samples) -> logits, probabilities (batch, num_class)."""

    def __init__(self, featurizer: nn.Module, model: nn.Module, normalizer: Optional[nn.Module] = None):
        super().__init__()
        self.featurizer, self.model = featurizer, model
        self.normalizer = normalizer if normalizer is not None else nn.Identity()

    def forward(self, waveforms: torch.Tensor):
        features, _ = self.featurizer(waveforms)
        logits = self.model(self.normalizer(features))
        return logits, torch.softmax(logits, dim=-1)


class FeatureClassifier(nn.Module):
    """features (batch, frames, feature_dim), as mser's featurizer gives them -> logits,
    probabilities (batch, num_class)."""

    def __init__(self, model: nn.Module, normalizer: Optional[nn.Module] = None):
        super().__init__()
        self.model = model
        self.normalizer = normalizer if normalizer is not None else nn.Identity()

    def forward(self, features: torch.Tensor):
        logits = self.model(self.normalizer(features))
        return logits, torch.softmax(logits, dim=-1)


def export_with_dynamo(module: nn.Module, example: torch.Tensor, input_name: str) -> bytes:
    """torch.export-based ONNX exporter; both axes of the input are dynamic."""
    dims = {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}
    program = torch.onnx.export(module, (example,), None, input_names=[input_name],
                                output_names=["logits", "probabilities"],
                                dynamic_shapes={input_name: dims},   # input_name is forward()'s argument
                                dynamo=True, verbose=False)
    return program.model_proto.SerializeToString()


def export_with_tracing(module: nn.Module, example: torch.Tensor, input_name: str) -> bytes:
    """The TorchScript-tracing exporter (no onnxscript needed); batch and time axes dynamic."""
    buffer = io.BytesIO()
    axes = {input_name: {0: "batch", 1: "time"}, "logits": {0: "batch"}, "probabilities": {0: "batch"}}
    torch.onnx.export(module, (example,), buffer, input_names=[input_name],
                      output_names=["logits", "probabilities"], dynamic_axes=axes, opset_version=17,
                      dynamo=False)
    return buffer.getvalue()


def run_onnx(graph: bytes, input_name: str, inputs: np.ndarray) -> np.ndarray:
    """Probabilities from onnxruntime: (batch, num_class)."""
    import onnxruntime
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {input_name: inputs})[0]


def try_exporters(candidates, log: Callable[[str], None]):
    """(name, input_name, graph) of the first candidate that exports; ExportError listing every failure."""
    failures = []
    for name, input_name, module, example, exporter in candidates:
        try:
            with warnings.catch_warnings(), quiet_torch_logs():
                warnings.simplefilter("ignore")
                return name, input_name, exporter(module, example, input_name)
        except Exception as e:  # each exporter fails in its own ways; the next one may work
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()   # the exporter colours its messages
            first_line = text.splitlines()[0][:200] if text else ""
            reason = f"{name}: {type(e).__name__}: {first_line}"
            log(f"could not export {reason}")
            failures.append(reason)
    raise ExportError("no ONNX exporter could export this model: " + "; ".join(failures))


def quiet_torch_logs():
    """Hide what the exporters log on their way (skipped torchvision operators, the fake-tensor
    traceback of a failed attempt): a failure is reported in one line by try_exporters."""
    names = [name for name in logging.root.manager.loggerDict if name == "torch" or name.startswith("torch.")]
    return quiet_logs(*names, level=logging.CRITICAL)


def candidates_for(predictor, waveform: torch.Tensor, features: torch.Tensor) -> list:
    whole = WaveformClassifier(predictor.featurizer, predictor.model, standardizer_for(predictor)).eval()
    model_only = FeatureClassifier(predictor.model, standardizer_for(predictor)).eval()
    found = []
    if has_onnxscript() and not (predictor.featurizer.clip_level or predictor.featurizer.clip_by_clip):
        found.append(("waveforms -> probabilities (torch.export)", "waveforms", whole, waveform, export_with_dynamo))
    if has_onnxscript():
        found.append(("features -> probabilities (torch.export)", "features", model_only, features,
                      export_with_dynamo))
    found.append(("features -> probabilities (tracing)", "features", model_only, features, export_with_tracing))
    return found


def has_onnxscript() -> bool:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def check_inputs(predictor, clip: np.ndarray) -> Dict[str, Any]:
    """The real clip, and a batch of two shorter windows of it (another batch size and length)."""
    window = min(clip.shape[0], int(2 * predictor.sample_rate))
    batch = np.stack([clip[:window], clip[-window:]])
    return {"clip": clip[None, :], "batch": batch}


def compare(graph: bytes, input_name: str, predictor, inputs: Dict[str, np.ndarray]) -> float:
    """Largest |onnxruntime - PyTorch| over the probabilities of every check input."""
    worst = 0.0
    for waveforms in inputs.values():
        reference = predictor.probabilities(list(waveforms))
        onnx_input = waveforms if input_name == "waveforms" else features_of(predictor, waveforms)
        worst = max(worst, float(np.max(np.abs(run_onnx(graph, input_name, onnx_input) - reference))))
    return worst


@torch.inference_mode()
def features_of(predictor, waveforms: np.ndarray) -> np.ndarray:
    """mser's features for equal-length clips: (batch, frames, feature_dim)."""
    features, _ = predictor.featurizer(torch.from_numpy(np.ascontiguousarray(waveforms)))
    return features.numpy()


def add_metadata(graph: bytes, predictor, input_name: str, source_fingerprint: str = "") -> bytes:
    """Labels, sample rate and input kind as ONNX metadata, so a runtime needs no other file."""
    import onnx
    proto = onnx.load_from_string(graph)
    dataset = predictor.config["dataset_conf"]["dataset"]
    onnx.helper.set_model_props(proto, {
        "labels": ",".join(predictor.labels),
        "sample_rate": str(predictor.sample_rate),
        "input": input_name,
        "feature_method": predictor.config["preprocess_conf"]["feature_method"],
        "use_dB_normalization": str(dataset["use_dB_normalization"]).lower(),
        "target_dB": str(dataset["target_dB"]),
        "speaker_norm": speaker_norm_kind(predictor),
        "fingerprint": source_fingerprint,
    })
    return proto.SerializeToString()


def export_onnx(model_path: str, audio_path: str, output: Optional[str] = None, configs: Optional[str] = None,
                log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Write `output` (default: <model_path>/model.onnx) after checking it on `audio_path`.

    Returns {'path', 'input', 'exporter', 'max_abs_diff', 'speaker_norm'} (see speaker_norm_kind);
    raises ExportError when the graph's probabilities differ from PyTorch's by MAX_DIFFERENCE or more
    (nothing is written then). The graph carries the checkpoint's fingerprint, so
    MSERPredictor(backend="onnx") uses it as it is.
    """
    from mser.predictor import MSERPredictor
    predictor = MSERPredictor(model_path, configs=configs)
    result = export_graph(predictor, predictor.load(audio_path), fingerprint(predictor, model_path), log, audio_path)
    result["path"] = output or os.path.join(checkpoint_dir(model_path), EXPORT_FILE)
    write_atomically(result["path"], result.pop("graph"))
    return result


def export_graph(predictor, clip: np.ndarray, source_fingerprint: str, log: Callable[[str], None],
                 clip_name: str = "the check clip") -> Dict[str, Any]:
    """Export the predictor's featurizer and model and check the graph against PyTorch on `clip`
    ((samples,) float32 at the model's rate). Returns {'graph' (bytes, with metadata), 'input',
    'exporter', 'max_abs_diff', 'speaker_norm'}; raises ExportError."""
    inputs = check_inputs(predictor, clip)
    example = torch.from_numpy(inputs["batch"])
    name, input_name, graph = try_exporters(
        candidates_for(predictor, example, torch.from_numpy(features_of(predictor, inputs["batch"]))), log)
    difference = compare(graph, input_name, predictor, inputs)
    if not difference < MAX_DIFFERENCE:
        raise ExportError(f"the ONNX graph ({name}) differs from PyTorch by {difference:.2e} on {clip_name}, "
                          f"more than {MAX_DIFFERENCE:g}; nothing was written")
    return {"graph": add_metadata(graph, predictor, input_name, source_fingerprint), "input": input_name,
            "exporter": name, "max_abs_diff": difference, "speaker_norm": speaker_norm_kind(predictor)}


def checkpoint_dir(model_path: str) -> str:
    from mser.checkpoint import resolve
    return resolve(model_path)


def write_atomically(path: str, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename it over `path`."""
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".partial",
                                         dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


# ---- the ONNX backend of MSERPredictor -------------------------------------------------------

def fingerprint(predictor, model_path: str) -> str:
    """SHA-256 over everything the graph is made of: the checkpoint's weight files and labels, and
    the featurizer, model and audio settings of the predictor's config."""
    from mser import checkpoint
    digest = hashlib.sha256(FINGERPRINT_VERSION.encode())
    directory = checkpoint.resolve(model_path)
    for name in (checkpoint.MODEL_FILE, checkpoint.FEATURIZER_FILE, checkpoint.SPEAKER_NORM_FILE):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            digest.update(name.encode())
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    config = predictor.config
    graph_settings = {"labels": predictor.labels, "sample_rate": predictor.sample_rate,
                      "preprocess_conf": config["preprocess_conf"], "model_conf": config["model_conf"]}
    digest.update(json.dumps(graph_settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def check_clip(predictor, seconds: float = 3.0) -> np.ndarray:
    """A fixed speech-like test signal ((samples,) float32): a gliding harmonic tone in noise,
    to compare the graph with PyTorch on when no real clip is at hand."""
    rate = predictor.sample_rate
    t = np.arange(int(max(seconds, predictor.min_duration) * rate)) / rate
    pitch = 150 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    tone = sum(np.sin(k * phase) / k for k in (1, 2, 3, 4)) * (0.6 + 0.4 * np.sin(2 * np.pi * 2.5 * t))
    noise = np.random.default_rng(0).standard_normal(t.shape[0])
    clip = tone + 0.05 * noise
    return (0.3 * clip / np.max(np.abs(clip))).astype(np.float32)


class OnnxRunner:
    """An onnxruntime session over an exported graph.

    probabilities(inputs) -> (batch, num_class): `inputs` are waveforms (batch, samples) or
    features (batch, frames, feature_dim), as `input_name` says; every row one whole clip.
    """

    def __init__(self, graph, use_gpu: bool = False):
        import onnxruntime
        providers = ["CPUExecutionProvider"]
        if use_gpu and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3   # errors only: no warnings about unused initializers
        options.intra_op_num_threads = torch.get_num_threads()   # as many as the torch backend uses
        if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
            # idle workers spin by default; on a shared CPU that cost 40 ms of a 105 ms predict() (EcapaTdnn-512)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(graph, options, providers=providers)
        self.metadata: Dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.input_name = self.metadata.get("input", "")
        self.labels = self.metadata.get("labels", "").split(",")
        self.fingerprint = self.metadata.get("fingerprint", "")

    def probabilities(self, inputs: np.ndarray) -> np.ndarray:
        return self.session.run(["probabilities"], {self.input_name: inputs})[0]


def load_or_export(predictor, model_path: str, use_gpu: bool = False,
                   precision: str = "float32") -> Tuple[OnnxRunner, str]:
    """(runner, note): the checkpoint's model.onnx when it was exported from these weights and
    settings; otherwise a new export, checked against PyTorch and saved there atomically (when the
    folder is read-only, the graph is kept in memory only). The note says what was done.
    precision "int8": that graph quantised (load_or_quantize), in model.int8.onnx.
    Raises ExportError (or ImportError without onnxruntime) when no graph can be had."""
    runner, graph, note = float_graph(predictor, model_path, use_gpu)
    if precision == "int8":
        return load_or_quantize(predictor, model_path, runner, graph, note, use_gpu)
    return runner, note


def float_graph(predictor, model_path: str, use_gpu: bool = False) -> Tuple[OnnxRunner, Union[str, bytes], str]:
    """(runner, graph, note): the float32 graph of `load_or_export`, reused (graph: its path) or
    exported (graph: its bytes), and a session over it."""
    expected = fingerprint(predictor, model_path)
    path = os.path.join(checkpoint_dir(model_path), EXPORT_FILE)
    stale = ""
    if os.path.isfile(path):
        try:
            runner = OnnxRunner(path, use_gpu)
        except Exception:   # a file cut short or not ONNX at all: export again
            runner, stale = None, f"{path} was unreadable"
        if runner is not None and runner.fingerprint == expected and runner.labels == predictor.labels:
            return runner, path, f"onnx backend: {path}"
        stale = stale or f"{path} was exported from other weights or settings"
    started = time.perf_counter()
    result = export_graph(predictor, check_clip(predictor), expected, log=lambda line: None)
    seconds = time.perf_counter() - started
    where = save_or_keep(path, result["graph"])
    reason = f"{stale}; " if stale else ""
    note = (f"onnx backend: {reason}exported {result['exporter']} in {seconds:.1f} s, {where} "
            f"(max |onnxruntime - PyTorch| {result['max_abs_diff']:.1e})")
    return OnnxRunner(result["graph"], use_gpu), result["graph"], note


def save_or_keep(path: str, graph: bytes) -> str:
    """Write `graph` to `path` atomically; says where it went (memory only in a read-only folder)."""
    try:
        write_atomically(path, graph)
        return f"wrote {path}"
    except OSError as e:
        return f"kept in memory ({path} not writable: {e.strerror})"


# ---- int8: static quantisation of the graph ---------------------------------------------------
# ONNX Runtime's dynamic int8 quantisation turns convolutions into ConvInteger, which ran 2.7x
# slower than float32 (EcapaTdnn C=512); static quantisation (QDQ, per-channel int8 weights, uint8
# activations with ranges from calibration clips) runs QLinearConv: the model call 2.6x faster,
# predict() 2.2x (19.5 against 43.8 ms). Only the
# convolutions are quantised: with the featurizer's mel MatMul and the linear layers too, a trained
# EcapaTdnn kept its float32 label on 45 of 210 test clips; convolutions only, on 209. Its answers
# move by up to a few percent of probability (README: Precision), so it is asked for, never a default.

def calibration_clips(predictor, count: int = CALIBRATION_CLIPS) -> List[str]:
    """Up to `count` clips of the training list the predictor's config names, evenly spaced over
    it (only the paths are read: the list may come from another label set); ExportError when that
    list is not readable (int8 needs real audio to set its ranges)."""
    path = predictor.config["dataset_conf"].get("train_list") or ""
    try:
        with open(path, encoding="utf-8-sig") as f:
            clips = [line.split("\t")[0].strip() for line in f if line.strip()]
    except OSError as e:
        clips, reason = [], e.strerror
    else:
        reason = "it is empty"
    if not clips:
        raise ExportError(f"int8 needs calibration clips from the training list {path or '(none named)'} "
                          f"({reason}); name a readable one with dataset_conf.train_list=FILE")
    step = max(1, len(clips) // count)
    return clips[::step][:count]


def int8_fingerprint(float_fingerprint: str) -> str:
    return hashlib.sha256(f"int8 {INT8_VERSION} {float_fingerprint}".encode()).hexdigest()


def clips_digest(clips: List[str]) -> str:
    return hashlib.sha256("\n".join(clips).encode()).hexdigest()


def graph_inputs(predictor, input_name: str, clip: np.ndarray) -> np.ndarray:
    """What the graph takes for one loaded clip: (1, samples) waveforms or (1, frames, dim) features."""
    return clip[None, :] if input_name == "waveforms" else features_of(predictor, clip[None, :])


def quantize_int8(graph: Union[str, bytes], input_name: str, predictor, clips: List[str]) -> bytes:
    """`graph` (a path or the bytes of a float32 graph whose input is `input_name`) statically
    quantised to int8 (QDQ, per-channel weights) with activation ranges from `clips` (paths read
    as the predictor reads them)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    feeds = [{input_name: graph_inputs(predictor, input_name, predictor.load(clip))} for clip in clips]

    class Clips(CalibrationDataReader):
        def __init__(self):
            self.remaining = iter(feeds)

        def get_next(self):
            return next(self.remaining, None)

    with tempfile.TemporaryDirectory(prefix="mser-int8-") as folder:
        target = os.path.join(folder, "int8.onnx")
        source = graph if isinstance(graph, str) else os.path.join(folder, "float.onnx")
        if not isinstance(graph, str):
            with open(source, "wb") as f:
                f.write(graph)
        with warnings.catch_warnings(), quiet_logs("root", "onnxruntime"):
            warnings.simplefilter("ignore")
            quantize_static(source, target, Clips(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv"])
        with open(target, "rb") as f:
            return f.read()


@contextlib.contextmanager
def quiet_logs(*names: str, level: int = logging.ERROR):
    """The named loggers raised to `level` for a while (the quantiser logs a warning per batch-norm
    weight it leaves alone; the exporters log skipped operators)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def with_props(graph: bytes, props: Dict[str, str]) -> bytes:
    import onnx
    proto = onnx.load_from_string(graph)
    current = {entry.key: entry.value for entry in proto.metadata_props}
    onnx.helper.set_model_props(proto, {**current, **props})
    return proto.SerializeToString()


def load_or_quantize(predictor, model_path: str, float_runner: OnnxRunner, graph: Union[str, bytes], note: str,
                     use_gpu: bool) -> Tuple[OnnxRunner, str]:
    """(runner, note) of the int8 graph: <checkpoint>/model.int8.onnx when it was quantised from
    this float32 graph (`float_runner` over `graph`, a path or bytes), else quantised now and saved
    atomically. A saved graph is reused without the training list (a model folder shipped without
    its data); when the list is readable and gives other calibration clips, it is quantised again."""
    expected = int8_fingerprint(float_runner.fingerprint)
    path = os.path.join(checkpoint_dir(model_path), INT8_FILE)
    saved = saved_int8(path, expected, predictor.labels, use_gpu)
    try:
        clips = calibration_clips(predictor)
    except ExportError:
        if saved is None:
            raise
        return saved, f"{note}; int8: {path}"
    digest = clips_digest(clips)
    if saved is not None and saved.metadata.get("clips") == digest:
        return saved, f"{note}; int8: {path}"
    started = time.perf_counter()
    quantized = with_props(quantize_int8(graph, float_runner.input_name, predictor, clips),
                           {**float_runner.metadata, "fingerprint": expected, "precision": "int8", "clips": digest,
                            "calibration": f"{len(clips)} clips of {predictor.config['dataset_conf']['train_list']}"})
    where = save_or_keep(path, quantized)
    return OnnxRunner(quantized, use_gpu), (f"{note}; quantised to int8 on {len(clips)} calibration clips in "
                                            f"{time.perf_counter() - started:.1f} s, {where}")


def saved_int8(path: str, expected: str, labels: List[str], use_gpu: bool) -> Optional[OnnxRunner]:
    """The runner of the int8 graph at `path` when it was quantised from the current float32 graph."""
    if not os.path.isfile(path):
        return None
    try:
        runner = OnnxRunner(path, use_gpu)
    except Exception:   # unreadable: quantise again
        return None
    return runner if runner.fingerprint == expected and runner.labels == labels else None
