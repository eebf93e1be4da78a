"""What every script shares: boolean options, --configs/--overwrites, and one-line errors."""
import argparse
import functools
import sys

from mser.errors import MSERError


def str2bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "y", "on"):
        return True
    if value in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_arguments(parser: argparse.ArgumentParser, default_config: str = "configs/ecapa_tdnn.yml",
                         required: bool = False) -> None:
    parser.add_argument("--configs", default=None if required else default_config, required=required,
                        help=f"YAML config file (default: {default_config})")
    parser.add_argument("--overwrites", default=None,
                        help="override config values, e.g. \"train_conf.max_epoch=5,"
                             "dataset_conf.dataLoader.batch_size=16\" (values are YAML scalars)")


def exits_cleanly(main):
    """Turn user errors (and unusable paths) into `error: ...` on stderr and exit code 2, and Ctrl-C
    into exit 130."""
    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except MSERError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except OSError as e:
            if e.filename is None:  # not about a path the user gave
                raise
            print(f"error: {e.strerror or e}: {e.filename}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
    return wrapper
