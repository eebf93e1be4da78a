"""extract_features.py: compute a config's features for its data lists once and cache them."""
import argparse
import time

from mser.cli.common import HelpFormatter, add_config_arguments, add_use_gpu_argument, exits_cleanly


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Compute the features of the train, validation and test lists once and cache them "
                    "(dataset_conf.feature_cache.cache_dir). Training and evaluation read the cache when "
                    "dataset_conf.feature_cache.enable is true; clip-level features (CustomFeatures) always "
                    "do, with a scaler fitted on the training list only.",
        formatter_class=HelpFormatter)
    add_config_arguments(parser)
    add_use_gpu_argument(parser, "compute")
    return parser.parse_args(argv)


@exits_cleanly
def main(argv=None):
    args = parse_args(argv)
    from mser.ensemble import is_ensemble_config
    from mser.errors import ConfigError
    from mser.executor import Executor
    if is_ensemble_config(args.configs):
        raise ConfigError(f"{args.configs} is an ensemble config: train.py --configs {args.configs} caches each "
                          f"member's features as it trains it; give extract_features.py one member's config "
                          f"(e.g. configs/egemaps.yml)")
    started = time.time()
    executor = Executor.from_config(args.configs, use_gpu=args.use_gpu, overwrites=args.overwrites)
    caches = executor.prepare_caches(rebuild=True)
    clips = sum(len(cache["features"]) for cache in caches)
    print(f"cached {clips} clips in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
