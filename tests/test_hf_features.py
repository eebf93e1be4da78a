"""Pretrained speech encoders as features (preprocess_conf.use_hf_model), with tiny randomly
initialised encoders built from transformers configs and saved to tmp_path: nothing is downloaded."""
import json
import shutil

import pytest
import torch

from conftest import assert_one_line_error, run_script
from tone_corpus import tone_overwrites, write_tone_corpus
from mser.errors import CheckpointError, ConfigError

transformers = pytest.importorskip("transformers")

SAMPLE_RATE = 16000
# Two layers of 32 units; three convolutions with a total stride of 320 samples (50 frames/s, as the real ones).
COMMON = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
              conv_dim=(16, 16, 16), conv_stride=(5, 8, 8), conv_kernel=(10, 8, 8), num_conv_pos_embeddings=16,
              num_conv_pos_embedding_groups=2)


def encoder_model(kind: str):
    if kind == "wav2vec2":
        return transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(
            feat_extract_norm="layer", do_stable_layer_norm=True, **COMMON))
    if kind == "hubert":   # group norm in its first convolution, as hubert-base
        return transformers.HubertModel(transformers.HubertConfig(feat_extract_norm="group", **COMMON))
    if kind == "wavlm":
        return transformers.WavLMModel(transformers.WavLMConfig(
            feat_extract_norm="layer", do_stable_layer_norm=True, num_buckets=16, max_bucket_distance=40, **COMMON))
    if kind == "data2vec":
        args = {k: v for k, v in COMMON.items() if not k.startswith("num_conv_pos")}
        return transformers.Data2VecAudioModel(transformers.Data2VecAudioConfig(
            num_conv_pos_embeddings=2, conv_pos_kernel_size=5, **args))
    assert kind == "w2vbert"
    return transformers.Wav2Vec2BertModel(transformers.Wav2Vec2BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        feature_projection_input_dim=160, conv_depthwise_kernel_size=5, output_hidden_size=32))


def save_encoder(kind: str, folder, seed: int = 0) -> str:
    torch.manual_seed(seed)
    encoder_model(kind).save_pretrained(folder)
    if kind == "w2vbert":
        transformers.SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, stride=2).save_pretrained(folder)
    else:
        transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoders")
    return {kind: save_encoder(kind, root / kind) for kind in ("wav2vec2", "hubert", "wavlm", "data2vec", "w2vbert")}


def featurizer(source, **args):
    from mser.features import build_encoder_featurizer
    return build_encoder_featurizer(source, sample_rate=SAMPLE_RATE, **args)


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "wavlm", "data2vec", "w2vbert"])
def test_padding_never_changes_a_clips_features(encoders, kind):
    module = featurizer(encoders[kind], layer="weighted")
    generator = torch.Generator().manual_seed(1)
    clip = torch.randn(1, 8000, generator=generator) * 0.1
    alone, alone_frames = module(clip, torch.tensor([8000]))
    batch = torch.zeros(3, 16000)
    batch[0, :8000], batch[1], batch[2, :12000] = clip[0], 0.3, torch.randn(12000, generator=generator)
    features, frame_lengths = module(batch, torch.tensor([8000, 16000, 12000]))
    frames = int(alone_frames[0])
    assert features.shape[2] == module.feature_dim == 3 * 32
    assert frame_lengths.tolist() == module.frame_lengths(torch.tensor([8000, 16000, 12000])).tolist()
    torch.testing.assert_close(features[0, :frames], alone[0, :frames], atol=1e-5, rtol=1e-4)
    assert torch.all(features[0, frames:] == 0)


def test_layer_choice_and_bad_values(encoders):
    clip = torch.randn(2, 8000) * 0.1
    stacked, _ = featurizer(encoders["wav2vec2"], layer="weighted")(clip)
    last, _ = featurizer(encoders["wav2vec2"])(clip)
    first, _ = featurizer(encoders["wav2vec2"], layer=0)(clip)
    torch.testing.assert_close(last, stacked[:, :, 64:])
    torch.testing.assert_close(first, stacked[:, :, :32])
    for layer in (3, -4, "mean", 1.5):
        with pytest.raises(ConfigError, match="layer must be 'weighted' or a hidden-state index from -3 to 2"):
            featurizer(encoders["wav2vec2"], layer=layer)
    with pytest.raises(ConfigError, match="unknown key 'layers'"):
        featurizer(encoders["wav2vec2"], layers=1)
    with pytest.raises(ConfigError, match="takes 16000 Hz audio"):
        from mser.features import build_encoder_featurizer
        build_encoder_featurizer(encoders["wav2vec2"], sample_rate=8000)


def test_weighted_front_mixes_layers_with_softmax_weights(encoders):
    module = featurizer(encoders["wavlm"], layer="weighted")
    front = module.model_front()
    features, _ = module(torch.randn(1, 8000) * 0.1)
    with torch.no_grad():
        front.layer_weights.copy_(torch.tensor([0.0, 1.0, 2.0]))
    weights = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), dim=0)
    expected = sum(w * features[:, :, i * 32:(i + 1) * 32] for i, w in enumerate(weights))
    torch.testing.assert_close(front(features), expected)
    assert front.layer_weights.requires_grad
    assert not module.model_front().layer_weights.requires_grad or module.weighted
    assert not featurizer(encoders["wavlm"], layer=1).model_front().layer_weights.requires_grad


def test_folder_without_weights_and_unreachable_hub_id(tmp_path, encoders):
    broken = tmp_path / "broken"
    shutil.copytree(encoders["wav2vec2"], broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"encoder folder .*broken has no weights"):
        featurizer(str(broken))
    with pytest.raises(ConfigError, match="encoder folder not found"):
        featurizer(str(tmp_path / "nothing" / "here"))
    with pytest.raises(ConfigError, match="'mser-tests/no-such-encoder'.*set preprocess_conf.feature_method to that "
                                          "folder") as raised:
        featurizer("mser-tests/no-such-encoder")
    assert "\n" not in str(raised.value)


# ---- through the scripts ----------------------------------------------------------------------

def write_corpus(root) -> dict:
    return write_tone_corpus(root, 24, 8)


def overwrites(corpus, encoder, **extra) -> str:
    return tone_overwrites(corpus, **{"optimizer_conf.optimizer_args.lr": 0.05,
                                      "preprocess_conf.feature_method": encoder, **extra})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, encoders):
    """One epoch of configs/hf_wavlm.yml (layer: weighted) on the tiny WavLM."""
    work = tmp_path_factory.mktemp("hf_train")
    corpus = write_corpus(work / "corpus")
    result = run_script("train.py", "--configs", "configs/hf_wavlm.yml", "--use_gpu", "false",
                        "--save_model_path", work / "models", "--log_dir", work / "log",
                        "--overwrites", overwrites(corpus, encoders["wavlm"]))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, corpus, work / "models" / "BiLSTM_wavlm" / "best_model"


def test_layer_weights_train_and_are_saved_and_restored(trained, encoders):
    from mser.predictor import MSERPredictor
    _, corpus, best = trained
    weights = torch.load(best / "model.pth", weights_only=True)
    assert torch.any(weights["front.layer_weights"] != 0)   # they start at 0 (equal weights)
    assert weights["front.encoder_digest"].dtype == torch.uint8 and int(weights["front.layer"]) == -1
    predictor = MSERPredictor(str(best), use_gpu=False)
    torch.testing.assert_close(predictor.model.front.layer_weights, weights["front.layer_weights"])
    label, score = predictor.predict(corpus["test"].read_text().split("\t")[0])
    assert label in ("hum", "whistle") and 0.0 <= score <= 1.0


def test_eval_and_infer_scripts(trained):
    work, corpus, best = trained
    result = run_script("eval.py", "--resume_model", best, "--use_gpu", "false", "--json",
                        "--output_dir", work / "eval")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["num_samples"] == 8
    clip = corpus["test"].read_text().split("\t")[0]
    result = run_script("infer.py", "--model_path", best, "--audio_path", clip, "--use_gpu", "false", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["label"] in ("hum", "whistle")


def test_moved_encoder_folder_is_the_same_encoder(trained, tmp_path, encoders):
    from mser.predictor import MSERPredictor
    _, corpus, best = trained
    moved = shutil.copytree(encoders["wavlm"], tmp_path / "elsewhere")
    predictor = MSERPredictor(str(best), use_gpu=False, overwrites=f"preprocess_conf.feature_method={moved}")
    assert predictor.predict(corpus["test"].read_text().split("\t")[0])[0] in ("hum", "whistle")


def test_another_encoder_or_layer_is_refused(trained, tmp_path, encoders):
    from mser.predictor import MSERPredictor
    _, corpus, best = trained
    other = save_encoder("wavlm", tmp_path / "wavlm-other", seed=1)
    result = run_script("infer.py", "--model_path", best, "--audio_path", corpus["test"].read_text().split("\t")[0],
                        "--use_gpu", "false", "--overwrites", f"preprocess_conf.feature_method={other}")
    assert_one_line_error(result, "was trained on features of another speech encoder")
    with pytest.raises(CheckpointError, match="trained on the weighted sum of all hidden states .* asks for hidden "
                                              "state 2"):
        MSERPredictor(str(best), use_gpu=False, overwrites="preprocess_conf.method_args.layer=-1")
    with pytest.raises(CheckpointError, match="use_hf_model=true, but the config asks for false"):
        MSERPredictor(str(best), use_gpu=False, overwrites="preprocess_conf.use_hf_model=false,"
                                                           "preprocess_conf.feature_method=Fbank")


def test_fixed_layer_features_are_cached_by_extract_features(tmp_path, encoders):
    corpus = write_corpus(tmp_path / "corpus")
    cache_dir = tmp_path / "cache"
    args = overwrites(corpus, encoders["hubert"], **{"preprocess_conf.method_args.layer": 1,
                                                      "dataset_conf.feature_cache.enable": "true",
                                                      "dataset_conf.feature_cache.cache_dir": cache_dir})
    result = run_script("extract_features.py", "--configs", "configs/hf_wavlm.yml", "--use_gpu", "false",
                        "--overwrites", args)
    assert result.returncode == 0, result.stderr[-3000:]
    cached = sorted(p.name for p in cache_dir.iterdir())
    assert len(cached) == 2 and all(name.startswith("hubert_") for name in cached), cached
    result = run_script("train.py", "--configs", "configs/hf_wavlm.yml", "--use_gpu", "false",
                        "--save_model_path", tmp_path / "models", "--log_dir", tmp_path / "log", "--overwrites", args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cached features" not in result.stdout   # read, not rebuilt
    assert (tmp_path / "models" / "BiLSTM_hubert" / "best_model" / "model.pth").is_file()


def test_scripts_give_one_line_for_a_hub_id_they_cannot_reach(tmp_path, encoders):
    corpus = write_corpus(tmp_path / "corpus")
    result = run_script("train.py", "--configs", "configs/hf_wavlm.yml", "--use_gpu", "false",
                        "--save_model_path", tmp_path / "models", "--overwrites",
                        overwrites(corpus, "mser-tests/no-such-encoder"))
    assert_one_line_error(result, "cannot load speech encoder 'mser-tests/no-such-encoder'")
    broken = shutil.copytree(encoders["wav2vec2"], tmp_path / "broken")
    (broken / "model.safetensors").unlink()
    result = run_script("train.py", "--configs", "configs/hf_wavlm.yml", "--use_gpu", "false",
                        "--save_model_path", tmp_path / "models", "--overwrites", overwrites(corpus, broken))
    assert_one_line_error(result, "has no weights (model.safetensors or pytorch_model.bin)")
