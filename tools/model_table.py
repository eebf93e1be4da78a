"""Print a markdown table of every registered model: parameters, MACs and CPU latency.

The input is a 3 s clip of 80-bin features (300 frames, batch 1) and 6 classes, each model at its
default (paper) size. MACs come from torch.utils.flop_counter (half its FLOP count); recurrent
layers, which it does not see on CPU, are added analytically. Latency is the median over --runs
forward passes under torch.inference_mode after two warm-up passes.

    .venv/bin/python tools/model_table.py [--threads 1] [--runs 10] [--models EcapaTdnn CAMPPlus]
"""
import argparse
import statistics
import time
from typing import Dict, List

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mser.models import build_model, list_models

# parameter counts reported by the papers, with the setting they were reported for
PAPER_PARAMS: Dict[str, str] = {
    "EcapaTdnn": "6.2M (C=512, 192-d embedding)",
    "CAMPPlus": "7.2M (512-d embedding)",
    "PANNS_CNN6": "4.8M (527 classes)",
    "PANNS_CNN10": "5.2M (527 classes)",
    "PANNS_CNN14": "80.8M (527 classes)",
    "ERes2Net": "6.61M (3D-Speaker reference code, no head)",
    "ERes2NetV2": "17.86M (3D-Speaker reference code, no head)",
    "Res2Net": "25.70M (Res2Net-50 26w x 4s, ImageNet, 1000 classes; 23.65M without that layer)",
}


def rnn_macs(module: nn.RNNBase, frames: int) -> int:
    """Multiply-accumulates of an LSTM/GRU/RNN over `frames` steps, batch 1."""
    gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
    directions = 2 if module.bidirectional else 1
    total = 0
    for layer in range(module.num_layers):
        layer_input = module.input_size if layer == 0 else module.hidden_size * directions
        total += gates * module.hidden_size * (layer_input + module.hidden_size) * directions * frames
    return total


def count_macs(model: nn.Module, features: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass. features: (1, frames, input_size)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(features)
    macs = counter.get_total_flops() // 2
    per_module = counter.get_flop_counts()
    for name, module in model.named_modules():
        key = f"{type(model).__name__}.{name}"
        if isinstance(module, nn.RNNBase) and not sum(per_module.get(key, {}).values()):
            macs += rnn_macs(module, features.shape[1])
    return macs


def median_ms(model: nn.Module, features: torch.Tensor, runs: int) -> float:
    times = []
    with torch.inference_mode():
        for _ in range(2):
            model(features)
        for _ in range(runs):
            start = time.perf_counter()
            model(features)
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def table(names: List[str], frames: int, input_size: int, num_class: int, runs: int) -> str:
    lines = ["| Model | Parameters | Paper | MACs (3 s) | CPU ms (3 s, batch 1) |",
             "|---|---:|---|---:|---:|"]
    for name in names:
        torch.manual_seed(0)
        model = build_model(name, input_size=input_size, num_class=num_class).eval()
        features = torch.randn(1, frames, input_size)
        params = sum(p.numel() for p in model.parameters())
        macs = count_macs(model, features)
        ms = median_ms(model, features, runs)
        lines.append(f"| {name} | {params / 1e6:.2f}M | {PAPER_PARAMS.get(name, '—')} | "
                     f"{macs / 1e9:.2f}G | {ms:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames of the clip (300 = 3 s at 10 ms)")
    parser.add_argument("--input_size", type=int, default=80, help="feature bins a frame")
    parser.add_argument("--num_class", type=int, default=6, help="classes of the head")
    parser.add_argument("--runs", type=int, default=10, help="timed forward passes a model")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--models", nargs="*", default=None, help="a subset of the registered models")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.models or list_models()
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; registered: {', '.join(list_models())}")
    print(table(names, args.frames, args.input_size, args.num_class, args.runs))
    print(f"\n{args.frames} frames x {args.input_size} bins, {args.num_class} classes, "
          f"{torch.get_num_threads()} CPU thread(s), torch {torch.__version__}")


if __name__ == "__main__":
    main()
