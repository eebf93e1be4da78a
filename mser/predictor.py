"""MSERPredictor: emotion labels for clips, batches and recordings of any length.

A checkpoint directory alone is enough: it holds the weights, the config and the label list.
Every method takes audio as a path, bytes, a binary file object, or a numpy array / torch tensor
with its `sample_rate`.

A model trained with speaker normalisation (preprocess_conf.speaker_norm) gets its features
standardised the same way: a clip alone with the training set's global statistics; clips of a
named speaker (`speaker="id"`) with that speaker's statistics, kept over the calls and shrunk
towards the global ones (`reset_speakers()` forgets them); the windows of a long recording
(`predict_long`) with the statistics of that recording (one session). Two ways to use them
(`statistics=`):
  "whole"   (default of predict_batch and predict_long, where all the input is known before the
            first answer): every clip or window is featurised first and added to the session's
            statistics (a named speaker's: its statistics so far plus these clips), then each is
            standardised with the result, as eval.py standardises a speaker of its list.
  "running" each clip is added in turn and standardised with the statistics so far, itself
            included, as a live stream must be (infer_record.py; `predict(clip, speaker=...)`
            over successive calls). Less accurate early in a session.

Backends: "torch" (default) runs the PyTorch model; "onnx" runs the graph exported to ONNX with
ONNX Runtime (`pip install "mser[onnx]"`), exported into the checkpoint folder on first use and
again whenever the weights change (see mser.export.load_or_export). Clips without a speaker go
through the graph; calls that need a speaker's or a recording's statistics (`speaker=...`, and
`predict_long` of a model trained with speaker normalisation) and `embed` use PyTorch. When a model
cannot be exported, one `OnnxFallbackWarning` says why and the predictor uses PyTorch
(`predictor.backend` says which runs).

Precision (`precision=`): "float32" (default) runs the model as trained. "bfloat16" runs the torch
backend's model call under bfloat16 autocast (the featurizer and the softmax stay float32): predict()
1.4x faster on a CPU with native bf16 (avx512_bf16, AMX), emulated and slower elsewhere. "int8" runs
the onnx backend's graph with its convolutions statically quantised to int8
(mser.export.load_or_quantize; activation ranges from 32 clips of the training list the config
names): predict() 2.2x faster than the float32 graph (EcapaTdnn C=512). "auto": bfloat16 on
the torch backend where the CPU has native bf16, else float32. Reduced precision moves the
probabilities a little, and a clip near a tie between two labels can change label (README: Precision).

Scores are softmax probabilities. With `threshold` > 0, a result whose top probability is below it
is labelled UNKNOWN ("unknown") with that probability as its score, so a caller can tell "no
confident answer" from a low-scoring label.
"""
import contextlib
import io
import os
import warnings
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import soundfile
import torch

from mser import checkpoint
from mser.audio import (AudioSource, describe, input_name, load_audio, normalize_db, resample,
                        warn_if_band_limited, warn_if_clipped)
from mser.clip import ClipSettings
from mser.config import apply_overwrites, load_config
from mser.errors import AudioError, CheckpointError, ConfigError, MSERWarning
from mser.features.speaker_norm import SpeakerNormalizer, SpeakerStats
from mser.features.windows import fixed_length_windows

UNKNOWN = "unknown"
Prediction = Tuple[str, float]
Segment = Tuple[float, float, str, float]
READ_BLOCK_SECONDS = 10.0   # how much of a long recording is decoded at a time
BACKENDS = ("torch", "onnx")
PRECISIONS = ("float32", "bfloat16", "int8", "auto")
LABEL_LIST_KEY = "dataset_conf.label_list_path"
STATISTICS = ("whole", "running")   # how a session's speaker statistics are used (module docstring)


class OnnxFallbackWarning(MSERWarning):
    """backend="onnx" was asked for, but the model could not be exported or run with ONNX Runtime:
    the predictor runs it with PyTorch instead."""


class LabelListWarning(MSERWarning):
    """The label list a config names is not readable: the checkpoint's own labels are used."""


class MSERPredictor:
    """Load a trained model from a checkpoint directory and classify audio with it.

    model_path: a checkpoint directory (e.g. models/EcapaTdnn_Fbank/best_model), or an ensemble
                folder (mser.ensemble: returns an EnsemblePredictor)
    configs:    optional YAML that replaces the config stored in the checkpoint
    overwrites: optional "a.b=1,c.d=2" applied on top of that config
    use_gpu:    run on the GPU when there is one (as train.py and eval.py do)
    threshold:  top probability below which the label is "unknown" (0 disables it)
    backend:    "torch", or "onnx" for ONNX Runtime (see the module docstring)
    precision:  "float32", "bfloat16" (torch backend), "int8" (onnx backend) or "auto" (see the
                module docstring); `predictor.precision` says which runs
    views:      test-time views (keyword only), e.g. ["telephone"]: each clip is also classified as
                that view hears it and the probabilities are averaged (mser.views: a ViewPredictor);
                None (default): the folder's own (an ensemble folder's `views`, none for a
                checkpoint); [] or "none": no views

    A label list named by `configs` or `overwrites` (dataset_conf.label_list_path) must hold the
    labels the checkpoint was trained on, or a CheckpointError says what differs.
    """

    def __new__(cls, model_path: Optional[str] = None, *args, **kwargs):
        from mser.ensemble import is_ensemble
        if cls is MSERPredictor:
            from mser.views import ViewPredictor, resolve_views
            if resolve_views(model_path, kwargs.get("views")):   # test-time views (mser.views)
                return super().__new__(ViewPredictor)
        if cls is MSERPredictor and is_ensemble(model_path):   # an ensemble folder (mser.ensemble)
            from mser.ensemble import EnsemblePredictor
            return super().__new__(EnsemblePredictor)
        return super().__new__(cls)

    def __init__(self, model_path: str, configs: Optional[str] = None, use_gpu: bool = False,
                 threshold: float = 0.0, overwrites: Optional[str] = None, backend: str = "torch",
                 precision: str = "float32", *, views=None):
        from mser.factory import load_for_inference  # imports every model and featurizer
        from mser.views import refuse_views
        refuse_views(views)   # reached only when this class is built directly
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold must be a probability between 0 and 1, got {threshold}")
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        self.precision = resolve_precision(precision, backend, self.device)
        self.threshold = threshold
        config = self.read_config(model_path, configs, overwrites)
        self.config, self.labels, self.featurizer, self.model = load_for_inference(
            model_path, config, self.device)
        if configs or label_list_overwritten(overwrites):
            check_label_list(self.config, self.labels, model_path)
        self.speaker_norm = self.load_speaker_norm(model_path)
        self.clip = ClipSettings.from_config(self.config)
        self.sample_rate = int(self.clip.sample_rate)
        # the highest frequency the model hears (preprocess_conf.band_limit_hz), for the bandwidth warning
        band = getattr(self.featurizer, "band_hz", None)
        self.model_band_hz = float(band[1]) if band else self.sample_rate / 2
        self.min_duration = float(self.clip.min_duration)
        self.segment_duration = float(self.clip.max_duration)
        eval_duration = self.clip.eval_max_duration
        self.window = float(eval_duration) if eval_duration and eval_duration > 0 else self.segment_duration
        self.batch_size = max(1, int(self.config["dataset_conf"]["eval_conf"]["batch_size"]))
        self.backend, self.backend_note, self.onnx = "torch", "", None
        if backend == "onnx":
            self.start_onnx(model_path, use_gpu)

    def start_onnx(self, model_path: str, use_gpu: bool) -> None:
        """Load or export the ONNX graph; on failure warn once and stay on PyTorch."""
        from mser.export import load_or_export
        precision, self.precision = self.precision, "float32"   # the torch fallback runs float32
        try:
            self.onnx, self.backend_note = load_or_export(self, model_path, use_gpu, precision)
            self.backend, self.precision = "onnx", precision
        except ImportError as e:
            warnings.warn(f"the onnx backend needs onnxruntime and onnx ({e.name or e} is not installed: "
                          f"pip install \"mser[onnx]\"); using the torch backend", OnnxFallbackWarning, stacklevel=3)
        except Exception as e:  # exporters fail in many ways; PyTorch still runs the model
            reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            warnings.warn(f"the onnx backend is not available for this model ({reason}); using the torch "
                          f"backend (float32)", OnnxFallbackWarning, stacklevel=3)

    @staticmethod
    def read_config(model_path: str, configs: Optional[str], overwrites: Optional[str]) -> Optional[dict]:
        if configs:
            return load_config(configs, overwrites)
        if overwrites:
            stored, _ = checkpoint.load_config_and_labels(model_path)
            return apply_overwrites(stored, overwrites)
        return None  # the checkpoint's own config

    def load_speaker_norm(self, model_path: str) -> Optional[SpeakerNormalizer]:
        """The normaliser of a checkpoint trained with speaker normalisation, else None."""
        state = checkpoint.load_speaker_norm_state(model_path)
        conf = self.config["preprocess_conf"]["speaker_norm"]
        if state is None:
            if conf["enable"]:
                raise CheckpointError(f"checkpoint {model_path} was trained without speaker normalisation "
                                      f"(no {checkpoint.SPEAKER_NORM_FILE}), but the config enables it")
            return None
        normalizer = SpeakerNormalizer(self.featurizer.feature_dim, conf["prior_clips"])
        normalizer.load_state_dict(state)
        return normalizer.to(self.device)

    def normalises_speakers(self) -> bool:
        """Whether the model standardises features per speaker (preprocess_conf.speaker_norm)."""
        return self.speaker_norm is not None

    def new_session(self) -> Optional[SpeakerStats]:
        """Empty running statistics for one recording or session (None without speaker normalisation)."""
        return SpeakerStats(self.speaker_norm.feature_dim) if self.speaker_norm is not None else None

    def reset_speakers(self) -> None:
        """Forget the running statistics of every speaker named in `predict(..., speaker=...)`."""
        if self.speaker_norm is not None:
            self.speaker_norm.reset_speakers()

    def speaker_stats(self, speaker: Optional[str]) -> Optional[SpeakerStats]:
        """The running statistics of `speaker` (created on first use); None for no speaker."""
        if speaker is None or self.speaker_norm is None:
            return None
        return self.speaker_norm.speakers.setdefault(str(speaker), SpeakerStats(self.speaker_norm.feature_dim))

    # ---- loading ---------------------------------------------------------------------------

    def load(self, audio: AudioSource, sample_rate: Optional[int] = None) -> np.ndarray:
        """Decode to the model's rate, mono, as in training. Returns (samples,) float32.

        Raises AudioError for undecodable audio, an array without `sample_rate`, or a clip
        shorter than dataset_conf.dataset.min_duration. Warns (mser.errors.BandwidthWarning) when
        the clip is much narrower-band than the model's audio, e.g. 8 kHz telephone audio, and
        (mser.errors.ClippingWarning) when it is clipped.
        """
        name = input_name(audio)
        samples, native_rate = self.clip.load_with_rate(audio, sample_rate,
                                                        inspect=lambda native: warn_if_clipped(native, name))
        warn_if_band_limited(samples, self.sample_rate, native_rate, name, self.model_band_hz)
        return samples

    # ---- the model -------------------------------------------------------------------------

    def probabilities(self, waveforms: Sequence[np.ndarray], speaker: Optional[str] = None) -> np.ndarray:
        """Class probabilities of loaded clips, one padded batch.

        waveforms: clips of (samples,) float32 at `sample_rate`, any lengths
        speaker:   with speaker normalisation, the clips' speaker: they join its running
                   statistics in order (each normalised with the statistics so far, itself
                   included); None: the global statistics
        returns:   (len(waveforms), num_class) float32
        """
        return self.session_probabilities(waveforms, self.speaker_stats(speaker))

    def session_probabilities(self, waveforms: Sequence[np.ndarray], stats: Optional[SpeakerStats]) -> np.ndarray:
        """`probabilities` with the running statistics `stats` of one speaker or recording (None: global)."""
        if self.onnx is not None and stats is None:
            return self.onnx_probabilities(waveforms)
        return self.torch_probabilities(waveforms, stats)

    @torch.inference_mode()
    def torch_probabilities(self, waveforms: Sequence[np.ndarray], stats: Optional[SpeakerStats]) -> np.ndarray:
        features, frame_lengths = self.features(waveforms)
        if self.speaker_norm is not None and stats is not None:
            features = self.speaker_norm.normalize_running(features, frame_lengths, stats)
        elif self.speaker_norm is not None:
            features = self.speaker_norm.normalize(features, frame_lengths, [""] * len(waveforms))
        return self.classify_features(features, frame_lengths)

    @torch.inference_mode()
    def features(self, waveforms: Sequence[np.ndarray]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Loaded clips as one padded batch through the featurizer, not yet speaker-normalised:
        ((batch, frames, feature_dim), (batch,) valid frames per clip), on the model's device."""
        lengths = torch.tensor([w.shape[0] for w in waveforms], dtype=torch.long)
        batch = torch.zeros(len(waveforms), int(lengths.max()))
        for row, waveform in enumerate(waveforms):
            batch[row, :waveform.shape[0]] = torch.from_numpy(waveform)
        return self.featurizer(batch.to(self.device), lengths.to(self.device))

    @torch.inference_mode()
    def classify_features(self, features: torch.Tensor, frame_lengths: torch.Tensor) -> np.ndarray:
        """Class probabilities (batch, num_class) float32 of model-ready features (batch, frames, feature_dim)."""
        with self.autocast():
            logits = self.model(features, frame_lengths)
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def whole_session(self, stats: Optional[SpeakerStats]) -> "WholeSession":
        """A session whose clips are classified once all are in, each normalised with the statistics
        of all of them plus what `stats` already held (None: the global statistics)."""
        return WholeSession(self, stats)

    def session_run(self, batches: Iterable[Sequence[np.ndarray]], stats: Optional[SpeakerStats],
                    statistics: str) -> np.ndarray:
        """Probabilities of one session's clips given batch by batch, with "whole" or "running"
        `statistics` in `stats` (None: global). Returns (clips, num_class), in the order given."""
        if statistics == "running":
            parts = [self.session_probabilities(batch, stats) for batch in batches]
            return np.concatenate(parts) if parts else np.zeros((0, len(self.labels)), dtype=np.float32)
        session = self.whole_session(stats)
        for batch in batches:
            session.add(batch)
        return session.probabilities()

    def autocast(self) -> torch.autocast:
        """bfloat16 autocast around the model call with precision "bfloat16"; a no-op otherwise."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")

    @torch.inference_mode()
    def onnx_probabilities(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities from the ONNX graph, which takes whole clips only: clips of equal length
        run as one batch. Returns (len(waveforms), num_class)."""
        result = np.zeros((len(waveforms), len(self.labels)), dtype=np.float32)
        by_length: Dict[int, List[int]] = {}
        for row, waveform in enumerate(waveforms):
            by_length.setdefault(waveform.shape[0], []).append(row)
        for rows in by_length.values():
            batch = np.stack([waveforms[row] for row in rows]).astype(np.float32, copy=False)
            if self.onnx.input_name != "waveforms":   # a model-only graph: mser computes the features
                batch = self.featurizer(torch.from_numpy(batch).to(self.device))[0].float().cpu().numpy()
            result[rows] = self.onnx.probabilities(batch)
        return result

    @torch.inference_mode()
    def embeddings(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """The model's utterance embeddings of loaded clips, one padded batch (speaker-normalised
        models: with the global statistics). Returns (len(waveforms), embd_dim) float32."""
        features, frame_lengths = self.features(waveforms)
        if self.speaker_norm is not None:
            features = self.speaker_norm.normalize(features, frame_lengths, [""] * len(waveforms))
        frame_lengths = self.model.check_input(features, frame_lengths)
        with self.autocast():
            return self.model.embedding(features, frame_lengths).float().cpu().numpy()

    def batched_probabilities(self, waveforms: Sequence[np.ndarray], speaker: Optional[str] = None,
                              statistics: str = "whole") -> np.ndarray:
        """Probabilities of loaded clips in batches of eval_conf.batch_size, clips of similar length
        together so that little of each batch is padding (in the given order when a `speaker`'s
        running statistics are kept). With `speaker`, the clips join its statistics, used as
        `statistics` says ("whole" or "running", module docstring). Returns (len(waveforms), num_class)."""
        check_statistics(statistics)
        order = list(range(len(waveforms)))
        if speaker is None or statistics == "whole":
            order.sort(key=lambda i: waveforms[i].shape[0])
        batches = ([waveforms[i] for i in order[start:start + self.batch_size]]
                   for start in range(0, len(order), self.batch_size))
        result = np.zeros((len(waveforms), len(self.labels)), dtype=np.float32)
        result[order] = self.session_run(batches, self.speaker_stats(speaker), statistics)
        return result

    def decide(self, probs: np.ndarray) -> Prediction:
        """(label, score) from one clip's (num_class,) probabilities, applying the threshold."""
        best = int(np.argmax(probs))
        score = float(probs[best])
        return (UNKNOWN if score < self.threshold else self.labels[best]), score

    # ---- public API ------------------------------------------------------------------------

    def predict(self, audio: AudioSource, sample_rate: Optional[int] = None,
                speaker: Optional[str] = None) -> Prediction:
        """(label, probability) for one clip, classified as a whole (for recordings longer than
        `window` seconds, `predict_long` gives one result per segment). `speaker`: see the module
        docstring (used only by models trained with speaker normalisation)."""
        return self.decide(self.probabilities([self.load(audio, sample_rate)], speaker)[0])

    def predict_batch(self, audios: Sequence[AudioSource], sample_rate: Optional[int] = None,
                      speaker: Optional[str] = None, statistics: str = "whole") -> List[Prediction]:
        """(label, probability) for each clip; clips are padded into batches and masked by length.
        With `speaker`, the clips are that speaker's: "whole" `statistics` normalise each with the
        speaker's statistics so far plus all of these clips; "running", each with those of the
        clips before it in the given order, itself included (module docstring)."""
        check_statistics(statistics)
        waveforms = [self.load(audio, sample_rate) for audio in audios]
        if not waveforms:
            return []
        return [self.decide(probs) for probs in self.batched_probabilities(waveforms, speaker, statistics)]

    def embed(self, audio: AudioSource, sample_rate: Optional[int] = None) -> np.ndarray:
        """The model's utterance embedding of one clip (the layer before the classifier head):
        (embd_dim,) float32, e.g. for clustering or nearest-neighbour search."""
        return self.embeddings([self.load(audio, sample_rate)])[0]

    def embed_batch(self, audios: Sequence[AudioSource], sample_rate: Optional[int] = None) -> np.ndarray:
        """Embeddings of several clips, batched by length: (len(audios), embd_dim) float32."""
        waveforms = [self.load(audio, sample_rate) for audio in audios]
        return self.batched_embeddings(waveforms)

    def batched_embeddings(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """`embeddings` in batches of eval_conf.batch_size, similar lengths together."""
        order = sorted(range(len(waveforms)), key=lambda i: waveforms[i].shape[0])
        parts: Dict[int, np.ndarray] = {}
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            for row, vector in zip(rows, self.embeddings([waveforms[i] for i in rows])):
                parts[row] = vector
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([parts[row] for row in range(len(waveforms))])

    def predict_scores(self, audio: AudioSource, sample_rate: Optional[int] = None,
                       top_k: Optional[int] = None, speaker: Optional[str] = None) -> Dict[str, float]:
        """{label: probability}, most likely first; only the `top_k` best when given."""
        probs = self.probabilities([self.load(audio, sample_rate)], speaker)[0]
        return self.ranked(probs, top_k)

    def ranked(self, probs: np.ndarray, top_k: Optional[int] = None) -> Dict[str, float]:
        order = np.argsort(-probs)[:top_k] if top_k else np.argsort(-probs)
        return {self.labels[i]: float(probs[i]) for i in order}

    def predict_long(self, audio: AudioSource, window: Optional[float] = None, hop: Optional[float] = None,
                     smoothing: int = 0, sample_rate: Optional[int] = None, segmentation: str = "fixed",
                     vad: Optional[str] = None, statistics: str = "whole") -> List[Segment]:
        """[(start_s, end_s, label, probability)] for the segments of a recording of any length.

        segmentation="fixed": consecutive windows. window: segment length in seconds (default:
        dataset_conf.dataset.max_duration, the length the model was trained on); hop: step between
        segment starts (default window / 2). The last segment is shorter when the recording does not
        end on a hop; a tail shorter than min_duration is dropped. Files are decoded 10 s at a time,
        so the audio held in memory does not grow with the length. The windows are featurised as
        windows (mser.features.windows): a clip's duration (eGeMAPS' append_duration) is the
        training average there.
        segmentation="vad": the speech found by voice activity detection (mser.vad; `vad` names the
        detector, default silero when installed, else energy): pauses get no segment, utterances are
        merged up to `window` seconds and longer ones split into windows `hop` apart (see
        speech_windows). The recording is decoded whole.
        smoothing: average each segment's probabilities with this many neighbours on each side
        before choosing its label (0: none). With speaker normalisation, the recording is one
        session with its own statistics: "whole" `statistics` (default) normalise every window with
        those of all the recording's windows (their features are kept until the end, so memory
        grows with the length: about 100 kB per 3 s window of 80-dim frames, 350 bytes with eGeMAPS
        functionals), "running" each window with those of the windows so far.
        """
        return [(start, end, *self.decide(probs))
                for start, end, probs in self.segment_probabilities(audio, window, hop, smoothing, sample_rate,
                                                                    segmentation, vad, statistics)]

    def segment_probabilities(self, audio: AudioSource, window: Optional[float] = None,
                              hop: Optional[float] = None, smoothing: int = 0,
                              sample_rate: Optional[int] = None, segmentation: str = "fixed",
                              vad: Optional[str] = None,
                              statistics: str = "whole") -> List[Tuple[float, float, np.ndarray]]:
        """Like predict_long, with each segment's (num_class,) probabilities instead of a label."""
        check_statistics(statistics)
        window = window or self.segment_duration
        hop = hop or window / 2
        if window <= 0 or hop <= 0:
            raise ConfigError(f"window and hop must be positive, got window={window}, hop={hop}")
        if smoothing < 0:
            raise ConfigError(f"smoothing must be 0 or more segments, got {smoothing}")
        if segmentation == "fixed":
            pieces = self.segments(audio, window, hop, sample_rate)
        elif segmentation == "vad":
            pieces = self.speech_pieces(audio, window, hop, sample_rate, vad)
        else:
            raise ConfigError(f"segmentation must be 'fixed' or 'vad', got {segmentation!r}")
        times: List[Tuple[float, float]] = []

        def waveform_batches() -> Iterator[List[np.ndarray]]:
            for batch in batched(pieces, self.batch_size):
                times.extend((start, end) for start, end, _ in batch)
                yield [waveform for _, _, waveform in batch]

        windows = fixed_length_windows() if segmentation == "fixed" else contextlib.nullcontext()
        with windows:   # fixed windows have no duration of their own (mser.features.windows)
            probs = self.session_run(waveform_batches(), self.new_session(), statistics)
        if not times:
            if segmentation == "vad":
                raise AudioError(f"no speech found in {describe(audio)} (segmentation 'vad')")
            raise AudioError(f"audio {describe(audio)} is shorter than min_duration {self.min_duration} s")
        smoothed = moving_average(probs, smoothing)
        return [(start, end, p) for (start, end), p in zip(times, smoothed)]

    def speech_pieces(self, audio: AudioSource, window: float, hop: float, sample_rate: Optional[int],
                      vad: Optional[str]) -> Iterator[Tuple[float, float, np.ndarray]]:
        """(start_s, end_s, samples) of the windows that speech_windows makes of the VAD's segments."""
        from mser.vad import speech_segments
        rate = self.sample_rate
        blocks = list(read_blocks(audio, rate, sample_rate))
        samples = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
        if samples.shape[0]:
            warn_if_band_limited(samples[:int(READ_BLOCK_SECONDS * rate)], rate, sample_rate, input_name(audio),
                                 self.model_band_hz)
            warn_if_clipped(samples[:int(READ_BLOCK_SECONDS * rate)], input_name(audio))
        duration = samples.shape[0] / rate
        with warnings.catch_warnings():   # loading Silero's TorchScript model: torch.jit deprecation notes
            warnings.simplefilter("ignore", FutureWarning)
            speech = speech_segments(samples, rate, vad)
        for start, end in speech_windows(speech, window, hop, self.min_duration, duration):
            first, last = round(start * rate), round(end * rate)
            yield self.segment(samples[first:last], first, rate, self.clip)

    def segments(self, audio: AudioSource, window: float, hop: float,
                 sample_rate: Optional[int] = None) -> Iterator[Tuple[float, float, np.ndarray]]:
        """(start_s, end_s, (samples,) float32) windows of the recording, read block by block."""
        rate = self.sample_rate
        window_n, hop_n, min_n = round(window * rate), max(1, round(hop * rate)), round(self.min_duration * rate)
        buffer, offset, covered = np.zeros(0, dtype=np.float32), 0, 0   # offset: sample index of buffer[0]
        for index, block in enumerate(read_blocks(audio, rate, sample_rate)):
            if index == 0:   # the first 10 s tell the recording's bandwidth and clipping (mser.errors warnings)
                warn_if_band_limited(block, rate, sample_rate, input_name(audio), self.model_band_hz)
                warn_if_clipped(block, input_name(audio))
            buffer = np.concatenate([buffer, block])
            while buffer.shape[0] >= window_n:
                yield self.segment(buffer[:window_n], offset, rate, self.clip)
                covered = offset + window_n
                buffer, offset = buffer[hop_n:], offset + hop_n
        # The tail: only when it holds audio no full window has covered, and is long enough.
        if offset + buffer.shape[0] > covered and buffer.shape[0] >= max(min_n, 1):
            yield self.segment(buffer, offset, rate, self.clip)

    @staticmethod
    def segment(samples: np.ndarray, offset: int, rate: int, clip: ClipSettings) -> Tuple[float, float, np.ndarray]:
        if clip.use_db_normalization:
            samples = normalize_db(samples, clip.target_db)
        return offset / rate, (offset + samples.shape[0]) / rate, np.ascontiguousarray(samples)


class WholeSession:
    """The clips of one speaker or recording under whole-session statistics: each batch is
    featurised as it comes (`add`) and its clips join `stats`; `probabilities` then standardises
    every clip with the statistics of the whole session and classifies it. Without speaker
    normalisation or without `stats`, a batch is classified as it comes (global statistics)."""

    def __init__(self, predictor: MSERPredictor, stats: Optional[SpeakerStats]):
        self.predictor, self.stats = predictor, stats
        self.normalised = predictor.speaker_norm is not None and stats is not None
        self.featurised: List[Tuple[torch.Tensor, torch.Tensor]] = []   # (features, frame_lengths) per batch
        self.classified: List[np.ndarray] = []                            # (batch, num_class) per batch

    def add(self, waveforms: Sequence[np.ndarray]) -> None:
        """One batch of loaded clips, (samples,) float32 each."""
        if not self.normalised:
            self.classified.append(self.predictor.session_probabilities(waveforms, None))
            return
        features, frame_lengths = self.predictor.features(waveforms)
        self.stats.add_batch(features, frame_lengths)
        self.featurised.append((features, frame_lengths))

    @torch.inference_mode()
    def probabilities(self) -> np.ndarray:
        """(clips added, num_class) float32, in the order they were added."""
        normalizer = self.predictor.speaker_norm
        parts = self.classified or [
            self.predictor.classify_features(normalizer.normalize_session(features, frame_lengths, self.stats),
                                             frame_lengths)
            for features, frame_lengths in self.featurised]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.predictor.labels)), dtype=np.float32)


def check_statistics(statistics: str) -> None:
    """ConfigError unless `statistics` is "whole" or "running"."""
    if statistics not in STATISTICS:
        raise ConfigError(f"statistics must be one of {', '.join(STATISTICS)}, got {statistics!r}")


def resolve_precision(precision: str, backend: str, device: torch.device) -> str:
    """The precision that runs: `precision` checked against the backend, "auto" decided (ConfigError)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        from mser.builder import cpu_has_native_bf16
        native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()
        return "bfloat16" if backend == "torch" and native else "float32"
    if precision == "int8" and backend != "onnx":
        raise ConfigError("precision int8 runs the quantised ONNX graph: use it with backend onnx")
    if precision == "bfloat16" and backend != "torch":
        raise ConfigError("precision bfloat16 needs the torch backend (ONNX Runtime has no bfloat16 kernels "
                          "on the CPU); use float32 or int8 with backend onnx")
    return precision


def label_list_overwritten(overwrites: Optional[str]) -> bool:
    from mser.config import parse_overwrites
    return bool(overwrites) and LABEL_LIST_KEY in parse_overwrites(overwrites)


def check_label_list(config: dict, labels: List[str], model_path: str) -> None:
    """Refuse a label list named by the config that differs from the checkpoint's `labels`; warn
    (LabelListWarning) and keep the checkpoint's labels when the named list is not readable."""
    from mser.data.lists import read_label_list
    from mser.errors import DataError
    path = config["dataset_conf"].get("label_list_path")
    if not path:
        return
    if not os.path.isfile(path):
        warnings.warn(f"label list {path} named by the config not found (relative to {os.getcwd()}); "
                      f"using the checkpoint's labels: {', '.join(labels)}", LabelListWarning, stacklevel=3)
        return
    try:
        named = read_label_list(path)
    except DataError as e:
        raise ConfigError(f"cannot read the label list named by the config: {e}") from None
    if named != labels:
        raise CheckpointError(f"checkpoint {model_path} was trained on labels {', '.join(labels)}, "
                              f"but the label list {path} has {', '.join(named)}")


def speech_windows(speech: Sequence[Tuple[float, float]], window: float, hop: float, min_duration: float,
                   duration: float, max_gap: float = 1.0) -> List[Tuple[float, float]]:
    """Windows to classify from speech segments [(start_s, end_s)] (in order, not overlapping):
    neighbours less than `max_gap` apart are merged while the result fits in `window`; a longer
    stretch is split into windows `hop` apart, the last one ending where the speech ends; a window
    shorter than `min_duration` is widened around its middle (within [0, duration])."""
    merged: List[List[float]] = []
    for start, end in speech:
        if merged and start - merged[-1][1] < max_gap and end - merged[-1][0] <= window:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    windows: List[Tuple[float, float]] = []
    for start, end in merged:
        if end - start <= window:
            windows.append(widened(start, end, min_duration, duration))
            continue
        last = end - window
        starts = [first for first in np.arange(start, last, hop) if last - first > hop / 4] + [last]
        windows.extend((float(first), float(first) + window) for first in starts)
    return windows


def widened(start: float, end: float, min_duration: float, duration: float) -> Tuple[float, float]:
    """[start, end] grown around its middle to `min_duration` seconds, kept within [0, duration]."""
    missing = min_duration - (end - start)
    if missing <= 0:
        return start, end
    start, end = start - missing / 2, end + missing / 2
    if start < 0:
        start, end = 0.0, end - start
    if end > duration:
        start, end = max(0.0, start - (end - duration)), duration
    return start, end


def batched(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def moving_average(probs: np.ndarray, radius: int) -> np.ndarray:
    """Centered mean over 2 * radius + 1 rows (fewer at the ends). probs: (segments, num_class)."""
    if radius <= 0 or probs.shape[0] < 2:
        return probs
    cumulative = np.concatenate([np.zeros((1, probs.shape[1])), np.cumsum(probs, axis=0, dtype=np.float64)])
    rows = np.arange(probs.shape[0])
    low, high = np.maximum(rows - radius, 0), np.minimum(rows + radius + 1, probs.shape[0])
    return ((cumulative[high] - cumulative[low]) / (high - low)[:, None]).astype(np.float32)


# ---- block-wise decoding of long recordings -------------------------------------------------

def read_blocks(audio: AudioSource, target_rate: int, sample_rate: Optional[int] = None,
                block_seconds: float = READ_BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Mono float32 blocks of `audio` at `target_rate`; files are never decoded whole."""
    if isinstance(audio, (np.ndarray, torch.Tensor)):
        yield load_audio(audio, target_rate, sample_rate=sample_rate)
        return
    with open_sound_file(audio) as sound:
        yield from resampled_blocks(sound, target_rate, block_seconds)


def open_sound_file(audio: AudioSource) -> soundfile.SoundFile:
    if isinstance(audio, (bytes, bytearray)):
        audio = io.BytesIO(audio)
    elif isinstance(audio, (str, os.PathLike)) and not os.path.isfile(audio):
        raise AudioError(f"audio file not found: {audio}")
    try:
        return soundfile.SoundFile(audio)
    except Exception as e:  # libsndfile reports truncated and non-audio input in many ways
        raise AudioError(f"cannot decode audio {describe(audio)}: {str(e).splitlines()[0]}") from None


def resampled_blocks(sound: soundfile.SoundFile, target_rate: int, block_seconds: float) -> Iterator[np.ndarray]:
    """Read, mix to mono and resample block by block. Each block is resampled with `context`
    input samples of its neighbours on both sides, then trimmed, so the result matches resampling
    the whole file (no clicks at block edges). Block and context are whole multiples of the
    resampling period, so every block starts exactly on an output sample."""
    rate = sound.samplerate
    period = rate // np.gcd(rate, target_rate)   # input samples per whole number of output samples
    block = max(1, round(block_seconds * rate / period)) * period
    context = 0 if rate == target_rate else -(-rate // 50 // period) * period * 2   # >= 40 ms
    previous = np.zeros(0, dtype=np.float32)
    current = read_mono(sound, block)
    while current.shape[0]:
        following = read_mono(sound, block)
        padded = np.concatenate([previous[-context:] if context else previous[:0], current,
                                 following[:context]])
        converted = resample(padded, rate, target_rate)
        skip = len(previous[-context:]) * target_rate // rate if context else 0
        yield converted[skip:skip + -(-current.shape[0] * target_rate // rate)]
        previous, current = current, following


def read_mono(sound: soundfile.SoundFile, frames: int) -> np.ndarray:
    try:
        samples = sound.read(frames, dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(f"cannot decode audio {sound.name}: {str(e).splitlines()[0]}") from None
    samples = samples.mean(axis=1)
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"audio {sound.name} holds NaN or infinite samples")
    return samples.astype(np.float32, copy=False)
