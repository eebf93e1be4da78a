"""emotion2vec through FunASR (feature_method: Emotion2Vec), with tiny randomly initialised models
that FunASR's own Emotion2vec class builds from a config and that are saved to tmp_path: nothing is
downloaded. Skipped without the funasr package."""
import json

import numpy as np
import pytest
import torch
import yaml

from conftest import assert_one_line_error, run_script
from tone_corpus import tone_overwrites, write_tone_corpus
from mser.errors import CheckpointError, ConfigError

pytest.importorskip("funasr")

SAMPLE_RATE = 16000
EMBED_DIM = 16
# emotion2vec base's layout at toy size: 7 convolutions with a total stride of 320 samples (50 frames/s),
# 1 pre-net block and 2 transformer blocks with ALiBi attention bias, 16 units.
AUDIO = dict(
    type="AUDIO", extractor_mode="layer_norm",
    feature_encoder_spec="[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2",
    conv_pos_width=15, conv_pos_groups=4, conv_pos_depth=3, conv_pos_pre_ln=False, prenet_depth=1,
    prenet_layerdrop=0.0, prenet_dropout=0.0, start_drop_path_rate=0.0, end_drop_path_rate=0.0, num_extra_tokens=2,
    init_extra_token_zero=False, mask_noise_std=0.01, mask_prob_min=None, inverse_mask=True, mask_prob=0.5,
    mask_prob_adjust=0.05, keep_masked_pct=0.0, mask_length=5, add_masks=False, remove_masks=False,
    mask_dropout=0.0, encoder_zero_mask=True, mask_channel_prob=0.0, mask_channel_length=64,
    ema_local_encoder=False, local_grad_mult=1.0, use_alibi_encoder=True, alibi_scale=1.0, learned_alibi=False,
    alibi_max_pos=None, learned_alibi_scale=True, learned_alibi_scale_per_head=True,
    learned_alibi_scale_per_layer=False, num_alibi_heads=2, model_depth=2, decoder=None)
MODEL_CONF = dict(
    depth=2, embed_dim=EMBED_DIM, num_heads=2, mlp_ratio=2.0, norm_eps=1e-5, norm_affine=True, layer_norm_first=False,
    encoder_dropout=0.1, post_mlp_drop=0.1, attention_dropout=0.1, activation_dropout=0.0, dropout_input=0.0,
    layerdrop=0.0, start_drop_path_rate=0.0, end_drop_path_rate=0.0, loss_beta=0.0, loss_scale=None,
    average_top_k_layers=2, end_of_block_targets=False, clone_batch=1, normalize=True, modalities=dict(audio=AUDIO))


def save_model(folder, seed: int = 0) -> str:
    """config.yaml and model.pt of a randomly initialised tiny emotion2vec, as FunASR reads them."""
    from funasr.models.emotion2vec.model import Emotion2vec
    folder.mkdir(parents=True)
    config = {"model": "Emotion2vec", "model_conf": MODEL_CONF}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(seed)
    torch.save(Emotion2vec(**config).state_dict(), folder / "model.pt")
    return str(folder)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("emotion2vec") / "tiny")


def featurizer(model, **args):
    from mser.features import build_featurizer
    return build_featurizer("Emotion2Vec", model=model, **args)


def funasr_features(folder, clips, granularity):
    """What FunASR's own pipeline (AutoModel.generate) gives for each clip."""
    from funasr import AutoModel
    auto = AutoModel(model=folder, device="cpu", ncpu=torch.get_num_threads(), disable_update=True,
                     disable_pbar=True, log_level="ERROR")
    results = auto.generate(input=[clip.numpy() for clip in clips], granularity=granularity, extract_embedding=True)
    return [torch.from_numpy(np.asarray(result["feats"])) for result in results]


def test_features_are_funasrs_own(tiny):
    waveforms = torch.randn(3, 24000) * 0.1
    lengths = torch.tensor([24000, 16000, 7000])
    clips = [waveforms[row, :n] for row, n in enumerate(lengths.tolist())]
    features, frame_lengths = featurizer(tiny)(waveforms, lengths)
    assert features.shape == (3, 74, EMBED_DIM) and frame_lengths.tolist() == [74, 49, 21]   # 50 frames/s
    for row, expected in enumerate(funasr_features(tiny, clips, "frame")):
        torch.testing.assert_close(features[row, :frame_lengths[row]], expected, atol=1e-5, rtol=1e-5)
    utterance, ones = featurizer(tiny, granularity="utterance")(waveforms, lengths)
    assert utterance.shape == (3, 1, EMBED_DIM) and ones.tolist() == [1, 1, 1]
    for row, expected in enumerate(funasr_features(tiny, clips, "utterance")):
        torch.testing.assert_close(utterance[row, 0], expected, atol=1e-5, rtol=1e-5)


def test_padding_never_changes_a_clips_features(tiny):
    encoder = featurizer(tiny)
    clip = torch.randn(1, 12345) * 0.1
    alone, alone_lengths = encoder(clip)
    batch = torch.zeros(2, 30000)
    batch[0, :12345], batch[1] = clip[0], torch.randn(30000) * 0.1
    padded, lengths = encoder(batch, torch.tensor([12345, 30000]))
    assert lengths[0] == alone_lengths[0] == encoder.frame_lengths(torch.tensor([12345]))[0]
    assert (padded[0, :lengths[0]] - alone[0]).abs().max() < 1e-6
    assert padded[0, lengths[0]:].abs().max() == 0   # frames past a clip's length are zero
    assert encoder.frame_lengths(torch.tensor([30000, 200])).tolist() == lengths[1:].tolist() + [1]
    features, one_frame = encoder(torch.randn(1, 200) * 0.1)   # under the 25 ms receptive field
    assert one_frame.tolist() == [1] and torch.isfinite(features).all()


def test_encoder_is_frozen_and_deterministic(tiny):
    encoder = featurizer(tiny).train()
    assert not encoder.encoder.training and not any(p.requires_grad for p in encoder.parameters())
    clip = torch.randn(2, 16000) * 0.1
    torch.testing.assert_close(encoder(clip)[0], encoder(clip)[0], atol=0, rtol=0)   # no dropout


def test_bad_folders_settings_and_unreachable_hub_id(tmp_path, tiny, monkeypatch):
    from mser.features import emotion2vec
    broken = save_model(tmp_path / "broken")
    (tmp_path / "broken" / "model.pt").unlink()
    with pytest.raises(ConfigError, match="has no model.pt"):
        featurizer(broken)
    with pytest.raises(ConfigError, match="emotion2vec folder not found"):
        featurizer(str(tmp_path / "nowhere" / "emotion2vec"))
    with pytest.raises(ConfigError, match="granularity must be one of frame, utterance"):
        featurizer(tiny, granularity="segment")
    with pytest.raises(ConfigError, match="takes 16000 Hz audio"):
        featurizer(tiny, sample_rate=8000)

    def offline(url):
        raise OSError("no network here")
    monkeypatch.setattr(emotion2vec, "check_reachable", offline)
    for hub in ("ms", "hf"):
        with pytest.raises(ConfigError, match="cannot load emotion2vec model 'mser-tests/no-such-emotion2vec'.*"
                                              "method_args.model to that folder") as raised:
            featurizer("mser-tests/no-such-emotion2vec", hub=hub)
        assert "\n" not in str(raised.value)


# ---- through the scripts ----------------------------------------------------------------------

def write_corpus(root) -> dict:
    return write_tone_corpus(root, 16, 6)


def overwrites(corpus, model, **extra) -> str:
    return tone_overwrites(corpus, **{"preprocess_conf.method_args.model": model, **extra})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny):
    """One epoch of configs/emotion2vec.yml on the tiny model."""
    work = tmp_path_factory.mktemp("emotion2vec_train")
    corpus = write_corpus(work / "corpus")
    result = run_script("train.py", "--configs", "configs/emotion2vec.yml", "--use_gpu", "false",
                        "--save_model_path", work / "models", "--log_dir", work / "log",
                        "--overwrites", overwrites(corpus, tiny))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, corpus, work / "models" / "BiLSTM_Emotion2Vec" / "best_model"


def test_train_eval_and_infer_scripts(trained):
    work, corpus, best = trained
    weights = torch.load(best / "model.pth", weights_only=True)
    assert weights["front.encoder_digest"].dtype == torch.uint8
    result = run_script("eval.py", "--resume_model", best, "--use_gpu", "false", "--json",
                        "--output_dir", work / "eval")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["num_samples"] == 6
    clip = corpus["test"].read_text().split("\t")[0]
    result = run_script("infer.py", "--model_path", best, "--audio_path", clip, "--use_gpu", "false", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["label"] in ("hum", "whistle")


def test_another_model_or_granularity_is_refused(trained, tmp_path):
    from mser.predictor import MSERPredictor
    _, corpus, best = trained
    other = save_model(tmp_path / "other", seed=1)
    clip = corpus["test"].read_text().split("\t")[0]
    result = run_script("infer.py", "--model_path", best, "--audio_path", clip, "--use_gpu", "false",
                        "--overwrites", f"preprocess_conf.method_args.model={other}")
    assert_one_line_error(result, "was trained on features of another emotion2vec model or granularity")
    with pytest.raises(CheckpointError, match="another emotion2vec model or granularity"):
        MSERPredictor(str(best), use_gpu=False, overwrites="preprocess_conf.method_args.granularity=utterance")


def test_features_are_cached_by_extract_features(tmp_path, tiny):
    corpus = write_corpus(tmp_path / "corpus")
    cache_dir = tmp_path / "cache"
    args = overwrites(corpus, tiny, **{"dataset_conf.feature_cache.enable": "true",
                                        "dataset_conf.feature_cache.cache_dir": cache_dir})
    result = run_script("extract_features.py", "--configs", "configs/emotion2vec.yml", "--use_gpu", "false",
                        "--overwrites", args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len([p for p in cache_dir.iterdir() if p.name.startswith("Emotion2Vec_")]) == 2


def test_scripts_give_one_line_for_a_folder_without_weights(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    broken = save_model(tmp_path / "broken")
    (tmp_path / "broken" / "model.pt").unlink()
    result = run_script("train.py", "--configs", "configs/emotion2vec.yml", "--use_gpu", "false",
                        "--save_model_path", tmp_path / "models", "--overwrites", overwrites(corpus, broken))
    assert_one_line_error(result, "has no model.pt")
