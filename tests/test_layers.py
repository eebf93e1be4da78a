"""The shared building blocks of mser.models.layers, and the rule that a model file imports shared
code from layers/pooling/base, never from another model's file."""
import ast
import copy
from pathlib import Path

import pytest
import torch

from mser.errors import ConfigError
from mser.models.layers import (AttentionalFusion, ConvReluBn, ERes2Block, MaskedConv1d, MaskedConv2d,
                                ResidualBlock, SqueezeExcitation, fold_frequency, frame_mask, halved,
                                halved_lengths, masked_batch_norm, res2_group_width, strided_lengths,
                                zero_padding)
from mser.models.pooling import masked_mean

MODELS_DIR = Path(__file__).resolve().parent.parent / "mser" / "models"
SHARED_MODULES = {"mser.models", "mser.models.base", "mser.models.layers", "mser.models.pooling"}


def padded(lengths, frames: int, *shape_after_time, channels: int = 3, seed: int = 0):
    """(batch, channels, frames, *rest) random values, with garbage (not zeros) past each length."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), channels, frames, *shape_after_time, generator=generator)
    return x, torch.tensor(lengths)


def randomise_batch_norm(module: torch.nn.Module) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(1)
    for norm in module.modules():
        if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
            size = norm.running_mean.shape
            norm.running_mean.copy_(0.3 * torch.randn(size, generator=generator))
            norm.running_var.copy_(0.5 + torch.rand(size, generator=generator))
            norm.weight.data.copy_(0.5 + torch.rand(size, generator=generator))
            norm.bias.data.copy_(0.3 * torch.randn(size, generator=generator))
    return module


def test_model_files_import_shared_code_only_from_shared_modules():
    offenders = []
    for path in sorted(MODELS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mser.models"):
                if node.module not in SHARED_MODULES or (node.module == "mser.models" and path.name != "__init__.py"
                                                         and any(a.name != "register_model" for a in node.names)):
                    offenders.append(f"{path.name}:{node.lineno} from {node.module} import "
                                     f"{', '.join(a.name for a in node.names)}")
    assert not offenders, "model files import from other model files: " + "; ".join(offenders)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 13, 80, 81])
@pytest.mark.parametrize("times", [0, 1, 3, 5])
def test_halved_is_the_size_after_stride_2_convolutions(size, times):
    x = torch.zeros(1, 1, size)
    for _ in range(times):
        x = torch.nn.functional.conv1d(x, torch.zeros(1, 1, 3), stride=2, padding=1)
    assert halved(size, times) == x.shape[-1]


def test_halved_lengths_is_the_stride_2_same_padding_formula():
    lengths = torch.arange(1, 40)
    assert torch.equal(halved_lengths(lengths), strided_lengths(lengths, 3, 2, 1))
    assert halved_lengths(None) is None


def test_frame_mask_and_zero_padding():
    lengths = torch.tensor([3, 1])
    assert frame_mask(lengths, 4).tolist() == [[True, True, True, False], [True, False, False, False]]
    x = torch.ones(2, 2, 4, 5)
    zeroed = zero_padding(x, lengths, time_dim=2)
    assert zeroed[0, :, :3].eq(1).all() and zeroed[0, :, 3:].eq(0).all() and zeroed[1, :, 1:].eq(0).all()
    assert zero_padding(x, None) is x


@pytest.mark.parametrize("stride", [1, 2])
def test_masked_convolutions_give_each_clip_its_own_result(stride):
    torch.manual_seed(0)
    conv1d = MaskedConv1d(3, 4, 5, stride=stride, padding=2)
    conv2d = MaskedConv2d(3, 4, 3, stride=stride, padding=1)
    for conv, rest in ((conv1d, ()), (conv2d, (6,))):
        x, lengths = padded([11, 6], 11, *rest)
        out, out_lengths = conv(x, lengths), conv.output_lengths(lengths)
        for index, length in enumerate(lengths.tolist()):
            alone = conv(x[index:index + 1, :, :length])
            assert alone.shape[2] == out_lengths[index]
            assert torch.allclose(out[index:index + 1, :, :alone.shape[2]], alone, atol=1e-6)


def test_fold_frequency_is_channel_major_per_frame():
    x = torch.randn(2, 3, 5, 4)
    folded = fold_frequency(x)
    assert folded.shape == (2, 12, 5)
    assert torch.equal(folded[:, 2 * 4 + 1, :], x[:, 2, :, 1])


def test_conv_relu_bn_applies_conv_then_relu_then_norm():
    block = randomise_batch_norm(ConvReluBn(3, 4, kernel_size=3)).eval()
    x = torch.randn(2, 3, 9)
    assert torch.allclose(block(x, None), block.norm(torch.relu(block.conv(x))))


def test_masked_batch_norm_ignores_what_is_in_the_padding():
    norms = [torch.nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)]
    x, lengths = padded([7, 4], 7, 5)
    other = x.clone()
    other[1, :, 4:] = 100.0
    first, second = masked_batch_norm(norms[0], x, lengths), masked_batch_norm(norms[1], other, lengths)
    assert torch.allclose(first[0], second[0]) and torch.allclose(first[1, :, :4], second[1, :, :4])
    assert torch.allclose(norms[0].running_var, norms[1].running_var)


@pytest.mark.parametrize("rest, affine", [((), True), ((5,), True), ((), False)])
def test_masked_batch_norm_trains_as_batch_norm_over_the_real_frames_alone(rest, affine):
    """Output and gradients on the real frames are those of nn.BatchNorm over the real frames packed
    together; a padded frame is normalised with their statistics, and a gradient arriving there
    flows as through (x - mean) * scale + bias (float64, so that only the formula can differ)."""
    x, lengths = padded([7, 4, 6], 7, *rest, channels=4)
    x = (3.0 * x + 2.0).double().requires_grad_()
    norm = torch.nn.BatchNorm2d(4, affine=affine) if rest else torch.nn.BatchNorm1d(4, affine=affine)
    norm = (randomise_batch_norm(norm) if affine else norm).double().train()
    reference = copy.deepcopy(norm)
    grad_out = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    out = masked_batch_norm(norm, x, lengths)
    (out * grad_out).sum().backward()

    real = [(row, slice(0, int(length))) for row, length in enumerate(lengths)]
    x_real = x.detach().clone().requires_grad_()
    packed = torch.cat([x_real[row, :, frames] for row, frames in real], dim=1)[None]
    expected = reference(packed)
    (expected * torch.cat([grad_out[row, :, frames] for row, frames in real], dim=1)[None]).sum().backward()
    start = 0
    for row, frames in real:
        width = frames.stop
        torch.testing.assert_close(out[row, :, frames], expected[0, :, start:start + width])
        start += width
    torch.testing.assert_close(norm.running_var, reference.running_var)
    mean = packed.detach().mean(dim=[0] + list(range(2, packed.dim())))
    variance = packed.detach().var(dim=[0] + list(range(2, packed.dim())), unbiased=False)
    shape = [1, 4, 1] + [1] * len(rest)
    scale = (variance + norm.eps).rsqrt() * (norm.weight.detach() if affine else 1.0)
    padding = (x.detach() - mean.view(shape)) * scale.view(shape) + (norm.bias.detach().view(shape) if affine else 0.0)
    torch.testing.assert_close(out[1, :, 4:], padding[1, :, 4:])

    # gradients: a gradient only on real frames is nn.BatchNorm's; everywhere, autograd of the formula
    on_real = x.grad.clone()
    x.grad = None
    mask = frame_mask(lengths, 7).view(3, 1, 7, *[1] * len(rest))
    again = copy.deepcopy(norm)
    again.zero_grad(set_to_none=True)
    masked_batch_norm(again, x, lengths).mul(grad_out * mask).sum().backward()
    for row, frames in real:
        torch.testing.assert_close(x.grad[row, :, frames], x_real.grad[row, :, frames])
    if affine:
        torch.testing.assert_close(again.weight.grad, reference.weight.grad)
        torch.testing.assert_close(again.bias.grad, reference.bias.grad)
    formula_x = x.detach().clone().requires_grad_()
    weights = mask.double()
    count = weights.sum() * (rest[0] if rest else 1)
    dims = [0] + list(range(2, x.dim()))
    formula_mean = (formula_x * weights).sum(dims) / count
    formula_var = ((formula_x - formula_mean.view(shape)).square() * weights).sum(dims) / count
    formula_scale = (formula_var + norm.eps).rsqrt() * (norm.weight.detach() if affine else 1.0)
    ((formula_x - formula_mean.view(shape)) * formula_scale.view(shape) * grad_out).sum().backward()
    torch.testing.assert_close(on_real, formula_x.grad)


def test_masked_batch_norm_under_bfloat16_autocast_keeps_the_dtype_and_trains():
    norm = randomise_batch_norm(torch.nn.BatchNorm1d(3)).train()
    x, lengths = padded([6, 3], 6)
    x = x.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = masked_batch_norm(norm, x, lengths)
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and x.grad.dtype == torch.bfloat16
    assert torch.isfinite(x.grad.float()).all() and norm.weight.grad is not None


@pytest.mark.parametrize("rest", [(), (6,)])
def test_squeeze_excitation_uses_real_frames_only(rest):
    torch.manual_seed(0)
    gate = SqueezeExcitation(3, 2)
    x, lengths = padded([9, 5], 9, *rest)
    out = gate(x, lengths)
    alone = gate(x[1:, :, :5])
    assert torch.allclose(out[1:, :, :5], alone, atol=1e-6)
    if not rest:  # over (batch, channels, frames) the squeeze is the pooling's masked mean
        assert torch.equal(SqueezeExcitation.squeeze(x, lengths), masked_mean(x, lengths))


def test_attentional_fusion_of_equal_inputs_is_their_sum():
    fusion = randomise_batch_norm(AttentionalFusion(4)).eval()
    x = torch.randn(2, 4, 6, 5)
    assert torch.allclose(fusion(x, x, None), 2 * x, atol=1e-6)


def test_residual_shortcut_projects_only_when_the_shape_changes():
    def block(in_channels, out_channels, stride):
        module = ResidualBlock()
        module.add_shortcut(in_channels, out_channels, stride)
        return module

    x = torch.randn(1, 4, 6, 6)
    assert block(4, 4, 1).residual(x, None) is x
    assert block(4, 4, (1, 1)).shortcut is None
    assert block(4, 8, 1).residual(x, None).shape == (1, 8, 6, 6)
    assert block(4, 4, (1, 2)).residual(x, None).shape == (1, 4, 6, 3)


@pytest.mark.parametrize("fuse", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
def test_eres2_block_shapes_and_padding(fuse, stride):
    torch.manual_seed(0)
    block = ERes2Block(8, 8, stride, fuse, base_width=32, scale=2, expansion=2, activation=torch.relu,
                       model="test")
    block = randomise_batch_norm(block).eval()
    x, lengths = padded([12, 7], 12, 6, channels=8)
    x = zero_padding(x, lengths, time_dim=2)  # the blocks' input has zeroed padding, as in the models
    out_lengths = strided_lengths(lengths, 3, stride, 1)
    with torch.no_grad():
        out = block(x, out_lengths)
        alone = block(x[1:, :, :7], out_lengths[1:])
    assert out.shape == (2, 16, halved(12, stride - 1), halved(6, stride - 1))
    assert torch.allclose(out[1:, :, :alone.shape[2]], alone, atol=1e-5)


def test_res2_group_width_too_thin_is_a_one_line_config_error():
    assert res2_group_width(64, 26, "Res2Net") == 26
    with pytest.raises(ConfigError, match="Res2Net: planes=2 with base_width=16") as error:
        res2_group_width(2, 16, "Res2Net")
    assert "\n" not in str(error.value)
