"""eval.py: accuracy, unweighted accuracy, macro-F1, per-class report and confusion matrix."""
import argparse
import json
import os

from mser.cli.common import (HelpFormatter, add_list_configs_argument, add_use_gpu_argument, add_views_argument,
                             check_output_folder, exits_cleanly)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Evaluate a checkpoint on the test list. The config and labels stored in the "
                    "checkpoint are used unless --configs is given. A model trained with speaker "
                    "normalisation gets each clip standardised with the statistics of its speaker "
                    "in the list (third column), clips without one with the training set's.",
        formatter_class=HelpFormatter)
    parser.add_argument("--resume_model", required=True,
                        help="checkpoint directory, e.g. models/EcapaTdnn_Fbank/best_model")
    parser.add_argument("--configs", default=None,
                        help="YAML config overriding the stored one: a file or a shipped config's name")
    parser.add_argument("--overwrites", default=None, help="override config values, e.g. \"a.b=1,c.d=x\"")
    parser.add_argument("--test_list", default=None,
                        help="data list to evaluate (default: dataset_conf.test_list of the config)")
    parser.add_argument("--output_dir", default="output/eval",
                        help="where metrics.json and confusion_matrix.png are written")
    parser.add_argument("--json", action="store_true", help="print metrics.json as the last line of stdout")
    add_views_argument(parser)
    add_use_gpu_argument(parser, "evaluate")
    add_list_configs_argument(parser)
    return parser.parse_args(argv)


def evaluation_config(args: argparse.Namespace) -> dict:
    from mser import checkpoint
    from mser.config import apply_overwrites, load_config
    from mser.factory import check_same_setup
    from mser.predictor import check_label_list
    if args.configs:
        config = load_config(args.configs)
        # a label list the config names must be the one the checkpoint was trained on
        check_label_list(config, checkpoint.load_config_and_labels(args.resume_model)[1], args.resume_model)
    else:
        config, _ = checkpoint.load_config_and_labels(args.resume_model)
    # The checkpoint's own label list is the one its output layer was trained on.
    config["dataset_conf"]["label_list_path"] = os.path.join(checkpoint.resolve(args.resume_model),
                                                             checkpoint.LABEL_FILE)
    config = apply_overwrites(config, args.overwrites) if args.overwrites else config
    # before the featurizer is built: another feature method's arguments would fail first, less clearly
    stored, _ = checkpoint.load_config_and_labels(args.resume_model)
    check_same_setup(config, stored, args.resume_model)
    return config


def evaluate(args: argparse.Namespace) -> dict:
    """The metrics of a checkpoint, or of an ensemble folder's averaged members (mser.ensemble)."""
    from mser import ensemble
    from mser.errors import ConfigError
    from mser.executor import Executor
    from mser import views
    chosen = views.resolve_views(args.resume_model, args.views)
    if chosen:   # through the predictor, as infer.py hears files
        if args.configs or args.overwrites:
            raise ConfigError("test-time views evaluate a checkpoint with its stored config (--configs/--overwrites "
                              "are not taken with them; --test_list still works; --views none turns them off)")
        return views.evaluate(args.resume_model, chosen, args.test_list, args.use_gpu, args.output_dir)
    if ensemble.is_ensemble(args.resume_model):
        if args.configs or args.overwrites:
            raise ConfigError(f"{args.resume_model} is an ensemble: its members are evaluated with their stored "
                              f"configs (--configs/--overwrites apply to one checkpoint; --test_list still works)")
        return ensemble.evaluate(args.resume_model, args.test_list, args.use_gpu, args.output_dir)
    executor = Executor.from_config(evaluation_config(args), use_gpu=args.use_gpu)   # no trainer, no reseeding
    return executor.evaluate(resume_model=args.resume_model, list_path=args.test_list, output_dir=args.output_dir)


@exits_cleanly
def main(argv=None):
    args = parse_args(argv)
    from mser.metrics import format_report
    if args.output_dir:
        check_output_folder(args.output_dir)  # fails now, not after evaluating; created once there are results
    from mser.errors import warnings_as_lines
    with warnings_as_lines():   # e.g. a label list the config names that is missing: one `warning:` line
        metrics = evaluate(args)
    for member, score in metrics.get("members", {}).items():
        print(f"ensemble member {member}: unweighted accuracy {score:.4f}")
    if "combine" in metrics:
        print(f"ensemble of {len(metrics['members'])} members, their probabilities combined by their "
              f"{'geometric mean' if metrics['combine'] == 'geometric' else 'mean'}")
    if "views" in metrics:
        print(f"test-time views {', '.join(metrics['views'])}: their probabilities averaged, each speaker of "
              f"the list heard as one session per view")
    print(format_report(metrics))
    print(f"wrote {os.path.join(args.output_dir, 'metrics.json')} and "
          f"{os.path.join(args.output_dir, 'confusion_matrix.png')}")
    if args.json:
        print(json.dumps(metrics))


if __name__ == "__main__":
    main()
