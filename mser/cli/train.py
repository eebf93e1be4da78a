"""train.py: train a model from a YAML config (one process, or under torchrun for DDP)."""
import argparse

from mser.cli.common import HelpFormatter, add_config_arguments, add_use_gpu_argument, exits_cleanly


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a speech emotion recognition model. Run under "
                    "`torchrun --nproc_per_node=N train.py ...` to train data-parallel.",
        formatter_class=HelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--data_augment_configs", default=None,
                        help="augmentation YAML: a file or a shipped config's name (e.g. augmentation, "
                             "augmentation_channel); none when omitted")
    parser.add_argument("--save_model_path", default="models/",
                        help="checkpoints go to <save_model_path>/<Model>_<Feature>/")
    parser.add_argument("--log_dir", default="log/", help="VisualDL log directory ('' to disable)")
    parser.add_argument("--resume_model", default=None,
                        help="checkpoint directory to continue from exactly (epoch, optimizer, schedule)")
    parser.add_argument("--pretrained_model", default=None,
                        help="checkpoint directory whose matching weights initialise the model")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the checkpoints of an earlier run in <save_model_path>/<Model>_<Feature>/ "
                             "(without it a fresh run into such a folder is refused)")
    add_use_gpu_argument(parser, "train")
    return parser.parse_args(argv)


@exits_cleanly
def main(argv=None):
    args = parse_args(argv)
    from mser import ensemble
    if ensemble.is_ensemble_config(args.configs):
        train_ensemble(args)
        return
    from mser.trainer import MSERTrainer
    trainer = MSERTrainer(configs=args.configs, use_gpu=args.use_gpu, overwrites=args.overwrites,
                          data_augment_configs=args.data_augment_configs)
    trainer.train(save_model_path=args.save_model_path, log_dir=args.log_dir,
                  resume_model=args.resume_model, pretrained_model=args.pretrained_model,
                  overwrite=args.overwrite)


def train_ensemble(args: argparse.Namespace) -> None:
    """An ensemble config (mser.ensemble): every member in turn, then the manifest."""
    from mser import ensemble
    from mser.errors import ConfigError
    if args.resume_model or args.pretrained_model:
        raise ConfigError("--resume_model/--pretrained_model take one checkpoint: continue an ensemble member "
                          "with its own config, then eval.py the ensemble folder")
    ensemble.train(args.configs, save_model_path=args.save_model_path, log_dir=args.log_dir, use_gpu=args.use_gpu,
                   overwrites=args.overwrites, data_augment_configs=args.data_augment_configs,
                   overwrite=args.overwrite)


if __name__ == "__main__":
    main()
