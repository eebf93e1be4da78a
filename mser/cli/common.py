"""What every script shares: boolean options, --configs/--overwrites, --use_gpu, help that shows
each default once, one-line errors, and a quiet exit when the reader of stdout goes away."""
import argparse
import functools
import os
import sys

from mser.errors import MSERError


def str2bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "y", "on"):
        return True
    if value in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class HelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to an option's help, unless the help already says its default or the
    option is off when left out (default None or False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        off = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if not action.option_strings or "default" in text or off:
            return text
        return f"{text} (default: %(default)s)"


def add_use_gpu_argument(parser: argparse.ArgumentParser, verb: str = "run") -> None:
    """--use_gpu, the same in every script: the GPU when there is one, else the CPU."""
    parser.add_argument("--use_gpu", type=str2bool, default=True,
                        help=f"{verb} on the GPU when there is one, on the CPU otherwise; false: always "
                             "on the CPU (default: true)")


def add_config_arguments(parser: argparse.ArgumentParser, default_config: str = "configs/ecapa_tdnn.yml",
                         required: bool = False) -> None:
    parser.add_argument("--configs", default=None if required else default_config, required=required,
                        help=f"YAML config file (default: {default_config})")
    parser.add_argument("--overwrites", default=None,
                        help="override config values, e.g. \"train_conf.max_epoch=5,"
                             "dataset_conf.dataLoader.batch_size=16\" (values are YAML scalars)")


# The exit status of a process that SIGPIPE ends, as `yes | head -1` leaves `yes`.
BROKEN_PIPE_EXIT = 128 + 13


def exits_cleanly(main):
    """Turn user errors (and unusable paths) into `error: ...` on stderr and exit code 2, Ctrl-C
    into exit 130, and a closed stdout (`infer.py ... | head -1`) into a quiet exit 141."""
    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            try:
                return report_errors(main, argv)
            finally:
                sys.stdout.flush()  # a closed pipe shows here, not as a message at interpreter exit
        except BrokenPipeError:
            # what is still buffered goes nowhere, so the interpreter's own flush at exit is quiet
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(BROKEN_PIPE_EXIT)
    return wrapper


def report_errors(main, argv):
    """main(argv), with user errors as one `error: ...` line and exit 2, Ctrl-C as exit 130."""
    try:
        return main(argv)
    except MSERError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        if e.filename is None:  # not about a path the user gave (a BrokenPipeError among them)
            raise
        print(f"error: {e.strerror or e}: {e.filename}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
