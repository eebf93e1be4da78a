"""Export a checkpoint to ONNX (model.onnx beside it), checked against PyTorch on a real clip.

    python tools/export_onnx.py --model_path models/EcapaTdnn_Fbank/best_model
    python tools/export_onnx.py --model_path models/EcapaTdnn_Fbank/best_model --int8
    python tools/export_onnx.py --model_path ... --int8 --overwrites dataset_conf.train_list=other/train_list.txt

--int8 also writes model.int8.onnx: the graph with its convolutions quantised to int8, activation
ranges from 32 clips of the training list the config names (what MSERPredictor(backend="onnx",
precision="int8") runs and reuses).

A model trained with speaker normalisation is exported with the training set's global statistics
in the graph (what MSERPredictor.predict does for a clip without a speaker); metadata speaker_norm.
"""
import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from mser.cli.common import exits_cleanly  # noqa: E402
from mser.errors import ConfigError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", required=True,
                        help="checkpoint directory, e.g. models/EcapaTdnn_Fbank/best_model")
    parser.add_argument("--output", default=None, help="ONNX file to write (default: <model_path>/model.onnx)")
    parser.add_argument("--audio_path", default=None,
                        help="clip to compare onnxruntime with PyTorch on (default: the first clip of the "
                             "checkpoint config's test list)")
    parser.add_argument("--configs", default=None, help="YAML config replacing the one stored in the checkpoint")
    parser.add_argument("--int8", action="store_true",
                        help="also write <model_path>/model.int8.onnx, quantised with 32 clips of the training "
                             "list the config names")
    parser.add_argument("--overwrites", default=None,
                        help="override config values for --int8, e.g. dataset_conf.train_list=FILE when the "
                             "checkpoint's training list is not readable here")
    return parser


def first_test_clip(model_path: str) -> str:
    """The first existing clip of the test list named in the checkpoint's config."""
    from mser.checkpoint import load_config_and_labels
    config, _ = load_config_and_labels(model_path)
    test_list = config["dataset_conf"]["test_list"]
    if os.path.isfile(test_list):
        with open(test_list, encoding="utf-8") as f:
            for line in f:
                audio_path = line.split("\t")[0].strip()
                if audio_path and os.path.isfile(audio_path):
                    return audio_path
    raise ConfigError(f"the checkpoint's test list {test_list} is not readable here: pass --audio_path "
                      "with a clip to check the exported graph on")


@exits_cleanly
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from mser.export import MAX_DIFFERENCE, export_onnx
    audio_path = args.audio_path or first_test_clip(args.model_path)
    result = export_onnx(args.model_path, audio_path, args.output, args.configs,
                         log=lambda line: print(line, file=sys.stderr))
    print(f"wrote {result['path']}: {result['exporter']}, input '{result['input']}' with dynamic batch and "
          f"time axes")
    if result["speaker_norm"] == "global":
        print("speaker normalisation: the training set's global statistics are in the graph "
              "(as MSERPredictor.predict without a speaker); metadata speaker_norm=global")
    print(f"checked on {audio_path}: max |onnxruntime - PyTorch| on probabilities = "
          f"{result['max_abs_diff']:.2e} (limit {MAX_DIFFERENCE:g})")
    if args.int8:
        write_int8(args.model_path, args.configs, args.overwrites)
    return 0


def write_int8(model_path: str, configs: Optional[str], overwrites: Optional[str]) -> None:
    """Quantise the checkpoint's graph to <model_path>/model.int8.onnx (ExportError when it cannot)."""
    from mser.export import load_or_export
    from mser.predictor import MSERPredictor
    predictor = MSERPredictor(model_path, configs=configs, overwrites=overwrites)
    _, note = load_or_export(predictor, model_path, precision="int8")
    print(note.split("; ", 1)[-1])


if __name__ == "__main__":
    main()
