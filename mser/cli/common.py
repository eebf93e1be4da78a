"""What every script shares: boolean options, --configs/--overwrites, --use_gpu, help that shows
each default once, one-line errors, and a quiet exit when the reader of stdout goes away."""
import argparse
import errno
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


CONFIGS_HELP = ("YAML config: a file, or the name of a shipped config (see --list-configs), e.g. "
                "'egemaps', the recommended one")


def add_config_arguments(parser: argparse.ArgumentParser, default_config: str = "egemaps",
                         required: bool = False) -> None:
    """--configs (a file or a shipped config's name), --overwrites and --list-configs."""
    default_text = f"; default: {default_config}" if not required else ""
    parser.add_argument("--configs", default=None if required else default_config, required=required,
                        help=f"{CONFIGS_HELP}{default_text}")
    parser.add_argument("--overwrites", default=None,
                        help="override config values, e.g. \"train_conf.max_epoch=5,"
                             "dataset_conf.dataLoader.batch_size=16\" (values are YAML scalars)")
    add_list_configs_argument(parser)


class ListConfigsAction(argparse.Action):
    """Prints the shipped configs and exits, as --help does (before required options are checked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from mser.config import describe_shipped_configs
        print(describe_shipped_configs())
        parser.exit()


def add_views_argument(parser: argparse.ArgumentParser) -> None:
    """--views, the same in every script that classifies audio (mser.views)."""
    parser.add_argument("--views", default=None,
                        help="test-time views, comma-separated (telephone, gsm, overdrive, pitch_down, pitch_up), or "
                             "none: each clip is also classified as the view hears it, with its own speaker statistics"
                             ", and the probabilities are averaged; telephone: fewer answers change between wideband "
                             "and telephone audio, for one more model run per view (README, Robustness) "
                             "(default: the model folder's own: an ensemble folder's views, none for a checkpoint)")


def add_list_configs_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list-configs", "--list_configs", action=ListConfigsAction,
                        help="list the shipped configs (usable by name with --configs) and exit")


def check_output_folder(path: str) -> None:
    """Raise the OSError that creating the folder `path` would raise (a file in the way, no write
    permission), without creating anything, so that a run fails before its work and leaves no folder."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "Permission denied", parent)


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
        mismatch = torchaudio_mismatch(e)
        if mismatch:
            print(f"error: {mismatch}", file=sys.stderr)
            sys.exit(1)
        if e.filename is None:  # not about a path the user gave (a BrokenPipeError among them)
            raise
        print(f"error: {e.strerror or e}: {e.filename}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def torchaudio_mismatch(error: OSError) -> str:
    """What to do when torchaudio's compiled library does not load with the installed torch (a
    torchaudio from PyPI, built for CUDA, next to a CPU-only torch: 'libc10_cuda.so: cannot open
    shared object file'), or '' when `error` is about something else."""
    if "torchaudio" not in str(error) or "load" not in str(error):
        return ""
    import torch
    cause = f" ({error.__cause__})" if error.__cause__ else ""
    return (f"torchaudio cannot load its library with torch {torch.__version__}{cause}: install torch and "
            f"torchaudio as a pair from the same index, e.g. for the CPU builds: pip install torch torchaudio "
            f"--index-url {CPU_INDEX}")
