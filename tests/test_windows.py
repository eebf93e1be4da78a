"""The windows a stream is cut into are featurised as windows, whose duration is not the speech's
(mser.features.windows): eGeMAPS' `append_duration` then gives the training average."""
import math
import threading

import pytest
import soundfile
import torch

from mser.features import build_featurizer
from mser.features.windows import durations_known, fixed_length_windows
from test_opensmile import SAMPLE_RATE, voice


def test_a_window_gives_the_scaler_mean_for_its_duration_and_a_clip_its_own():
    featurizer = build_featurizer("eGeMAPS", SAMPLE_RATE, analysis_dBFS=-20, append_duration=True)
    featurizer.scaler_mean[-1] = 0.7   # as if fitted: the training clips' mean log duration
    clip = voice(1.5)[None]
    assert featurizer.extract(clip)[0, -1].item() == pytest.approx(math.log(1.5), abs=1e-6)
    with fixed_length_windows():
        assert not durations_known()
        windowed = featurizer.extract(clip)
        with fixed_length_windows():   # nested: still windows, and still after the inner block
            pass
        assert not durations_known()
    assert durations_known()
    assert windowed[0, -1].item() == pytest.approx(0.7)
    torch.testing.assert_close(windowed[0, :-1], featurizer.extract(clip)[0, :-1])   # nothing else moves


def test_the_window_state_belongs_to_one_thread():
    seen = []
    with fixed_length_windows():
        beside = threading.Thread(target=lambda: seen.append(durations_known()))
        beside.start()
        beside.join()
        seen.append(durations_known())
    assert seen == [True, False]


def test_fixed_windows_of_a_stream_are_featurised_as_windows(normalised_model, tmp_path):
    from mser import MSERPredictor
    from mser.cli.infer_record import describe_prediction
    predictor = MSERPredictor(str(normalised_model[0]), use_gpu=False)
    seen = []
    features = predictor.features

    def spy(waveforms):
        seen.append(durations_known())
        return features(waveforms)

    predictor.features = spy
    recording = tmp_path / "long.wav"
    soundfile.write(recording, voice(4.0).numpy(), SAMPLE_RATE)
    assert len(predictor.predict_long(str(recording), window=1.0, hop=1.0)) == 4
    assert seen and not any(seen)
    seen.clear()
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, voice(1.5, seed=1).numpy(), SAMPLE_RATE)
    predictor.predict(str(clip))
    assert seen and all(seen)
    seen.clear()
    describe_prediction(predictor, voice(1.0, seed=2).numpy(), 0.0, "microphone session")   # infer_record.py's window
    assert seen == [False] and durations_known()
