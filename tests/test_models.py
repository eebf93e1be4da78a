"""Every registered model, with no per-model test code: shapes, gradients, padding, ONNX.

Models run at reduced width (SMALL_ARGS) so the file stays fast on a CPU; a model missing from
SMALL_ARGS runs with its defaults. Batch-norm statistics and affine parameters are randomised in
the padding and export tests, so a BN shift leaking into padded frames cannot hide behind the
identity that freshly initialised BN layers compute in eval mode.
"""
import copy
import inspect
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mser.errors import ConfigError, MSERError
from mser.models import MODELS as MODEL_REGISTRY
from mser.models import build_model, list_models
from mser.models.base import ClipTooShortError, ModelInputError
from mser.models.layers import masked_batch_norm
from mser.models.pooling import POOLINGS, build_pooling

SMALL_ARGS = {
    "BiLSTM": dict(hidden_size=24, embd_dim=16),
    "EcapaTdnn": dict(channels=32, mfa_channels=48, embd_dim=16, se_channels=8),
    "CAMPPlus": dict(fcm_channels=4, init_channels=16, growth_rate=8, bn_size=2, embd_dim=16,
                     block_layers=(2, 3, 2)),
    "ResNetSE": dict(channels=4, layers=(1, 1, 1, 1), embd_dim=16),
    "PANNS_CNN6": dict(channels=4, embd_dim=16),
    "PANNS_CNN10": dict(channels=4, embd_dim=16),
    "PANNS_CNN14": dict(channels=4, embd_dim=16),
    "TDNN": dict(channels=32, stats_channels=48, embd_dim=16),
    "ERes2Net": dict(channels=8, layers=(1, 1, 1, 1), embd_dim=16),
    "Res2Net": dict(channels=4, layers=(1, 2, 1, 1), base_width=32, scale=4, embd_dim=16),
    "ERes2NetV2": dict(channels=8, layers=(1, 1, 2, 1), embd_dim=16),
    "CNNTransformer": dict(channels=(4, 8, 8, 16, 16), d_model=16, num_heads=2, feedforward=32, num_layers=2),
    "ExtraTrees": dict(n_trees=6),
    "RandomForest": dict(n_trees=6),
}

# parameters of the default configuration, as reported by the papers (input 80, classes as given)
PAPER_PARAMS = {
    "EcapaTdnn": (dict(num_class=6), 6.2e6),
    "CAMPPlus": (dict(num_class=6), 7.2e6),
    "PANNS_CNN6": (dict(num_class=527), 4.8e6),
    "PANNS_CNN10": (dict(num_class=527), 5.2e6),
    "PANNS_CNN14": (dict(num_class=527), 80.8e6),
    "ERes2Net": (dict(num_class=1), 6.61e6),  # the 3D-Speaker reference size (no head there)
    "ERes2NetV2": (dict(num_class=1), 17.86e6),  # the 3D-Speaker reference size (no head there)
}

MODELS = list_models()


def small_model(name: str, input_size: int = 80, num_class: int = 5, **extra) -> torch.nn.Module:
    """A model at reduced width; one that learns by fitting (a forest) fitted on random clip vectors,
    so that its trees are real."""
    torch.manual_seed(0)
    model = build_model(name, input_size=input_size, num_class=num_class, **{**SMALL_ARGS.get(name, {}), **extra})
    if model.learns_by_fitting:
        rng = np.random.default_rng(0)
        model.fit(rng.standard_normal((60, input_size)), rng.integers(0, num_class, 60), seed=0)
    return model


def skip_fitted(name: str) -> None:
    if MODEL_REGISTRY.get(name).learns_by_fitting:
        pytest.skip(f"{name} is fitted, not trained by gradient steps (tests/test_forest.py)")


def randomise_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            size = module.running_mean.shape
            module.running_mean.copy_(0.3 * torch.randn(size, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
            if module.affine:
                module.weight.data.copy_(0.5 + torch.rand(size, generator=generator))
                module.bias.data.copy_(0.3 * torch.randn(size, generator=generator))
    return model


def padded_batch(lengths, frames: int, input_size: int = 80):
    """Random features with frames past each length zeroed, as the featurizers deliver them."""
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(len(lengths), frames, input_size, generator=generator)
    lengths = torch.tensor(lengths)
    features[torch.arange(frames)[None, :] >= lengths[:, None]] = 0.0
    return features, lengths


def frames_for(model, wanted: int) -> int:
    return max(wanted, model.min_frames)


@pytest.mark.parametrize("name", MODELS)
def test_forward_shape_batch_of_one_and_num_class(name):
    for num_class in (2, 7):
        model = small_model(name, num_class=num_class).eval()
        frames = frames_for(model, 60)
        with torch.no_grad():
            assert model(torch.randn(3, frames, 80)).shape == (3, num_class)
            assert model(torch.randn(1, frames, 80)).shape == (1, num_class)


@pytest.mark.parametrize("name", MODELS)
def test_backward_gives_finite_gradients_to_every_parameter(name):
    skip_fitted(name)
    model = small_model(name).train()
    features, lengths = padded_batch([70, 45, 33], 70)
    logits = model(features, lengths)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3, 4])).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{name}.{param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}.{param_name} has a non-finite gradient"


@pytest.mark.parametrize("name", MODELS)
def test_padding_never_changes_a_clips_result(name):
    model = randomise_batch_norm(small_model(name)).eval()
    # long enough for CAM++'s 100-frame segments (after its stride of 2) to end inside the padding
    longest = frames_for(model, 250)
    lengths = [longest, longest - 27, frames_for(model, 37)]
    features, lengths_tensor = padded_batch(lengths, longest)
    with torch.no_grad():
        batched = model(features, lengths_tensor)
        assert torch.allclose(model(features, torch.full((3,), longest)), model(features), atol=1e-5)
        for index, length in enumerate(lengths):
            alone = model(features[index:index + 1, :length])
            assert torch.allclose(batched[index], alone[0], rtol=1e-4, atol=1e-4), \
                f"{name}: clip {index} ({length} frames) differs when padded: {batched[index]} vs {alone[0]}"


@pytest.mark.parametrize("name", MODELS)
def test_extra_padding_changes_nothing_in_training(name):
    """Batch-norm statistics come from real frames: more padding gives the same outputs and the
    same running statistics (dropout off, so that the two passes are comparable)."""
    takes_dropout = "dropout" in inspect.signature(MODEL_REGISTRY.get(name)).parameters
    model = small_model(name, **({"dropout": 0.0} if takes_dropout else {})).train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    clone = copy.deepcopy(model)
    longest = frames_for(model, 81)
    features, lengths = padded_batch([longest, frames_for(model, 47), frames_for(model, 35)], longest)
    more_padding = torch.nn.functional.pad(features, (0, 0, 0, 19))
    out, out_more = model(features, lengths), clone(more_padding, lengths)
    assert torch.allclose(out, out_more, rtol=1e-4, atol=1e-4), f"{name}: {out} vs {out_more}"
    for (key, buffer), other in zip(model.state_dict().items(), clone.state_dict().values()):
        assert torch.allclose(buffer.float(), other.float(), rtol=1e-4, atol=1e-5), f"{name}.{key} differs"


@pytest.mark.parametrize("name", MODELS)
def test_mixed_precision_training_step(name):
    skip_fitted(name)
    model = small_model(name).train()
    features, lengths = padded_batch([64, 40, 33], 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(features, lengths)
    logits.float().logsumexp(dim=1).sum().backward()
    assert torch.isfinite(logits.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("norm", [torch.nn.BatchNorm1d(4), torch.nn.BatchNorm2d(4, momentum=None),
                                  torch.nn.BatchNorm1d(4, affine=False)])
def test_masked_batch_norm_with_full_lengths_is_batch_norm(norm):
    x = torch.randn(3, 4, 9) if isinstance(norm, torch.nn.BatchNorm1d) else torch.randn(3, 4, 9, 5)
    reference = copy.deepcopy(norm).train()
    for _ in range(2):
        assert torch.allclose(masked_batch_norm(norm.train(), x, torch.full((3,), 9)), reference(x), atol=1e-5)
    assert torch.allclose(norm.running_mean, reference.running_mean, atol=1e-6)
    assert torch.allclose(norm.running_var, reference.running_var, atol=1e-6)
    assert norm.num_batches_tracked == reference.num_batches_tracked == 2


@pytest.mark.parametrize("name", MODELS)
def test_too_short_clip_gets_a_clear_error(name):
    model = small_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(2, model.min_frames, 80)).shape == (2, 5)
        if model.min_frames == 1:
            return
        with pytest.raises(ClipTooShortError, match=f"at least {model.min_frames} frames"):
            model(torch.randn(2, model.min_frames - 1, 80))
        features, lengths = padded_batch([model.min_frames + 5, model.min_frames - 1], model.min_frames + 5)
        with pytest.raises(MSERError, match=f"at least {model.min_frames} frames"):
            model(features, lengths)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("input_size", [13, 40, 64, 128, 312])
def test_any_input_size_works_on_half_a_second(name, input_size):
    model = small_model(name, input_size=input_size).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 50, input_size)).shape == (2, 5)


@pytest.mark.parametrize("name", MODELS)
def test_wrong_feature_dim_is_refused(name):
    model = small_model(name).eval()
    with pytest.raises(ModelInputError, match=r"\(batch, frames, 80\)"):
        model(torch.randn(2, 60, 64))


@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_matches_pytorch(name):
    onnxruntime = pytest.importorskip("onnxruntime")
    model = randomise_batch_norm(small_model(name)).eval()
    frames = frames_for(model, 60)
    buffer = io.BytesIO()
    torch.onnx.export(model, (torch.randn(2, frames, 80),), buffer, dynamo=False, opset_version=17,
                      input_names=["features"], output_names=["logits"],
                      dynamic_axes={"features": {0: "batch", 1: "frames"}, "logits": {0: "batch"}})
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    features = torch.randn(3, frames + 171, 80)  # another batch size and length than at export
    with torch.no_grad():
        expected = model(features).numpy()
    actual = session.run(None, {"features": features.numpy()})[0]
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_default_configuration_runs(name):
    model = build_model(name, input_size=80, num_class=6).eval()
    with torch.no_grad():
        assert model(torch.randn(1, frames_for(model, 50), 80)).shape == (1, 6)


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_default_size_matches_the_paper(name):
    kwargs, expected = PAPER_PARAMS[name]
    model = build_model(name, input_size=80, **kwargs)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - expected) / expected < 0.02, f"{name}: {count} parameters, paper {expected:.0f}"


def test_ecapa_large_matches_the_paper():
    model = build_model("EcapaTdnn", input_size=80, num_class=6, channels=1024)
    assert abs(sum(p.numel() for p in model.parameters()) - 14.7e6) < 0.3e6


def test_bilstm_takes_clip_level_features_as_one_frame():
    model = small_model("BiLSTM", input_size=312).eval()
    with torch.no_grad():
        assert model(torch.randn(4, 1, 312), torch.ones(4, dtype=torch.long)).shape == (4, 5)


@pytest.mark.parametrize("pooling_type", sorted(POOLINGS))
def test_pooling_ignores_padding(pooling_type):
    torch.manual_seed(0)
    pooling = randomise_batch_norm(build_pooling(pooling_type, 6)).eval()
    x = torch.randn(2, 6, 20)
    x[1, :, 13:] = 1e3  # garbage in the padding must not matter
    with torch.no_grad():
        pooled = pooling(x, torch.tensor([20, 13]))
        assert pooled.shape == (2, pooling.out_dim)
        assert torch.allclose(pooled[1], pooling(x[1:, :, :13])[0], atol=1e-5)
        assert torch.allclose(pooled[0], pooling(x[:1])[0], atol=1e-5)


@pytest.mark.parametrize("training", [False, True])
def test_asp_global_context_is_its_definition(training):
    """ASP sends each clip's statistics through attention_in once, not once per frame: the same as
    the layer on the concatenated context [x; mean; std] of ECAPA-TDNN's paper."""
    from mser.models.pooling import masked_mean_std, masked_softmax
    torch.manual_seed(0)
    pooling = randomise_batch_norm(build_pooling("ASP", 6)).train(training)
    x, lengths = torch.randn(3, 6, 20), torch.tensor([20, 13, 7])
    mean, std = masked_mean_std(x, lengths, keepdim=True)
    context = torch.cat([x, mean.expand_as(x), std.expand_as(x)], dim=1)
    hidden = torch.relu(pooling.attention_in(context))
    reference = copy.deepcopy(pooling)   # the batch norm's running statistics move in training
    scores = reference.attention_out(torch.tanh(masked_batch_norm(reference.attention_norm, hidden, lengths)))
    weights = masked_softmax(scores, lengths)
    weighted_mean = (x * weights).sum(-1, keepdim=True)
    weighted_std = (weights * (x - weighted_mean) ** 2).sum(-1).clamp(min=1e-6).sqrt()
    expected = torch.cat([weighted_mean.squeeze(-1), weighted_std], dim=1)
    assert torch.allclose(pooling(x, lengths), expected, atol=1e-5)
    assert torch.allclose(pooling.attention_norm.running_mean, reference.attention_norm.running_mean, atol=1e-6)


def test_campplus_segment_mean_of_padding_is_zero_not_nan_in_half_precision():
    from mser.models.campplus import masked_segment_mean
    x = torch.randn(2, 3, 250).half()
    means = masked_segment_mean(x, torch.tensor([250, 60]), segment=100)
    assert torch.isfinite(means).all()
    assert (means[1, :, 100:] == 0).all()
    assert torch.allclose(means[1, :, :60].float(), x[1:, :, :60].float().mean(-1, keepdim=True)[0], atol=1e-2)


@pytest.mark.parametrize("pooling_type", sorted(POOLINGS))
def test_models_take_every_pooling_type(pooling_type):
    model = small_model("EcapaTdnn", pooling_type=pooling_type).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 30, 80)).shape == (2, 5)


def test_unknown_pooling_and_model_args_name_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'ASP'"):
        build_pooling("ASPP", 8)
    with pytest.raises(ConfigError, match="did you mean 'channels'"):
        build_model("EcapaTdnn", input_size=80, num_class=6, chanels=64)


def test_res2net50_backbone_matches_the_paper():
    """Res2Net-50 (26w x 4s) is 25.70M parameters with its 1000-class ImageNet layer (2048 * 1000 +
    1000); the stem here reads one channel instead of three (7 * 7 * 2 * 64 fewer weights)."""
    model = build_model("Res2Net", input_size=80, num_class=6)
    backbone = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("stem", "blocks")))
    expected = 25.70e6 - (2048 * 1000 + 1000) - 7 * 7 * 2 * 64
    assert abs(backbone - expected) / expected < 0.005, f"{backbone} parameters, paper {expected:.0f}"


def test_cnn_transformer_defaults_are_the_recipes_sizes():
    model = build_model("CNNTransformer", input_size=80, num_class=6)
    convs = [block.conv for block in model.blocks]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 32, (7, 7)), (32, 64, (3, 3)), (64, 128, (3, 3)), (128, 256, (3, 3)), (256, 512, (3, 3))]
    # pools are given as (frequency, time); the model's image is (frames, freq)
    assert [block.pool.kernel_size for block in model.blocks[:4]] == [(1, 4), (2, 2), (2, 2), (2, 2)]
    assert model.blocks[4].pool is None and model.min_frames == 8
    assert len(model.encoder) == 6
    layer = model.encoder[0]
    assert (layer.attention.out.in_features, layer.attention.num_heads) == (512, 4)
    assert layer.feedforward[0].out_features == 1024


def test_cnn_transformer_ignores_whatever_is_in_the_padding():
    """Padding is masked in the convolutions and as attention keys: garbage past a clip's end, not
    only zeros, leaves its logits as they are alone, and so does extra padding."""
    model = randomise_batch_norm(small_model("CNNTransformer")).eval()
    features, lengths = padded_batch([96, 41, 16], 96)
    features[1, 41:] = 1e3 * torch.randn(55, 80)
    features[2, 16:] = -50.0
    longer = torch.cat([features, 7.0 * torch.ones(3, 33, 80)], dim=1)
    with torch.no_grad():
        batched, padded_more = model(features, lengths), model(longer, lengths)
        for index, length in enumerate(lengths.tolist()):
            alone = model(features[index:index + 1, :length])[0]
            assert torch.allclose(batched[index], alone, atol=1e-5), f"clip {index}: {batched[index]} vs {alone}"
        assert torch.allclose(padded_more, batched, atol=1e-5)


def test_cnn_transformer_attention_sees_other_frames():
    """The encoder mixes frames: changing an early frame changes the result even though pooling
    is a mean (guards against a mask that hides every key)."""
    model = small_model("CNNTransformer").eval()
    features = torch.randn(1, 64, 80)
    changed = features.clone()
    changed[0, :8] += 3.0
    with torch.no_grad():
        assert not torch.allclose(model(features), model(changed), atol=1e-4)


@pytest.mark.parametrize("name, bad, message", [
    ("CNNTransformer", dict(d_model=30, num_heads=4), "divisible by num_heads"),
    ("CNNTransformer", dict(channels=(8, 8), pools=((2, 2), (2, 2))), "at most 1"),
    ("CNNTransformer", dict(pools=((2, 0),)), "positive sizes"),
    ("Res2Net", dict(channels=2, base_width=16), "raise channels or base_width"),
    ("ERes2NetV2", dict(channels=2, base_width=16), "raise channels or base_width"),
    ("ERes2Net", dict(channels=1), "raise channels or base_width"),
    ("ERes2NetV2", dict(layers=(3,)), "at least two stages"),
])
def test_bad_sizes_are_one_line_config_errors(name, bad, message):
    with pytest.raises(ConfigError, match=message) as error:
        build_model(name, input_size=80, num_class=6, **bad)
    assert "\n" not in str(error.value)


STATE_KEYS = Path(__file__).parent / "data" / "model_state_keys.json"


def state_shapes(name: str, input_size: int, num_class: int) -> dict:
    """{state_dict key: shape} of a model at its defaults, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = build_model(name, input_size=input_size, num_class=num_class)
    return {key: list(value.shape) for key, value in model.state_dict().items()}


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_keys_and_shapes_match_the_record(name):
    """Weights saved by an earlier version keep loading: every parameter and buffer keeps its name
    and shape (tests/data/model_state_keys.json, recorded before the shared layers moved)."""
    record = json.loads(STATE_KEYS.read_text())
    assert name in record["models"], (f"{name} has no recorded state_dict keys; record them once with "
                                      f"`.venv/bin/python tests/test_models.py --record-state-keys`")
    expected = record["models"][name]
    actual = state_shapes(name, record["input_size"], record["num_class"])
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    reshaped = sorted(key for key in set(expected) & set(actual) if expected[key] != actual[key])
    assert not (missing or extra or reshaped), (f"{name}: missing {missing[:5]}, new {extra[:5]}, "
                                                f"reshaped {reshaped[:5]} (of {len(missing)}, {len(extra)}, "
                                                f"{len(reshaped)})")


def record_missing_state_keys() -> None:
    """Add models registered since the record; recorded models are never rewritten."""
    record = json.loads(STATE_KEYS.read_text())
    added = [name for name in MODELS if name not in record["models"]]
    for name in added:
        record["models"][name] = state_shapes(name, record["input_size"], record["num_class"])
    models = record.pop("models")
    lines = [f" {json.dumps(key)}: {json.dumps(value)}," for key, value in record.items()]
    lines += [" \"models\": {", ",\n".join(f"  {json.dumps(name)}: {json.dumps(models[name], separators=(',', ':'))}"
                                             for name in sorted(models)), " }"]
    STATE_KEYS.write_text("{\n" + "\n".join(lines) + "\n}\n")
    print(f"recorded {', '.join(added) or 'nothing (every model is recorded)'}")


if __name__ == "__main__" and sys.argv[1:] == ["--record-state-keys"]:
    record_missing_state_keys()


@pytest.mark.parametrize("name", MODELS)
def test_the_speaker_adversary_taps_every_models_embedding(name):
    """train_conf.speaker_adversary reads the head's input: it must be the model's embedding, of the
    width embedding_size finds, and the model's forward must pass it through its head."""
    from mser.speaker_adversary import EmbeddingTap, embedding_size
    skip_fitted(name)   # the adversary trains by gradient steps: refused for a fitted model (build_run)
    model = small_model(name).eval()
    features = torch.randn(2, frames_for(model, 60), 80)
    tap = EmbeddingTap(model.head)
    with torch.no_grad():
        model(features)
        embedding = model.embedding(features)
    tapped = tap.take()
    tap.remove()
    assert tapped.shape == (2, embedding_size(model))
    torch.testing.assert_close(tapped, embedding)
