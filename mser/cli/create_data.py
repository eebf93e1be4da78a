"""create_data.py: turn a corpus folder into train_list.txt, test_list.txt and label_list.txt,
or (--test_only) into a test list for a model trained on another corpus."""
import argparse
import os
import time
from typing import List, Optional

from mser.cli.common import HelpFormatter, exits_cleanly, str2bool
from mser.data.corpora import (DATASETS, format_summary, format_test_only_summary, load_corpus, split_by_fold,
                               split_corpus, write_lists, write_test_only_list)
from mser.errors import ConfigError, DataError

DEFAULT_DEMO_DIR = "dataset/demo"
DEFAULT_TEST_LIST = "test_list.txt"
DEFAULT_TEST_FOLD = 10


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Write speaker-independent train/test lists and a label list for a corpus "
                    "(path<TAB>label_index, plus <TAB>speaker when the corpus names its speakers). "
                    "List paths are --data_dir joined with each file's path below it, so a relative "
                    "--data_dir gives paths relative to the current directory. With --test_only, write "
                    "only a test list indexed by an existing label list (cross-corpus evaluation).",
        formatter_class=HelpFormatter)
    parser.add_argument("--dataset", default="demo", choices=list(DATASETS),
                        help="corpus naming scheme (see mser/data/corpora.py); folder: DIR/<label>/*.wav; "
                             "urbansound8k: DIR/metadata/UrbanSound8K.csv and DIR/audio/foldN/; csv: a table "
                             "with file,label[,speaker] columns (--csv_path)")
    parser.add_argument("--data_dir", default=None,
                        help=f"corpus root folder; defaults to {DEFAULT_DEMO_DIR} for --dataset demo and to the "
                             "table's folder for --dataset csv (files in the table are relative to it), "
                             "required otherwise")
    parser.add_argument("--test_fold", type=int, default=None,
                        help=f"urbansound8k only: the fold (1-10) that is the test set, the others train; "
                             f"folds are never mixed (default: {DEFAULT_TEST_FOLD})")
    parser.add_argument("--csv_path", default=None,
                        help="csv only: the table, one clip per row, columns file and label and optionally "
                             "speaker (then train and test never share a speaker)")
    parser.add_argument("--list_dir", default="dataset",
                        help="where train_list.txt, test_list.txt and label_list.txt are written")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the train/test split")
    parser.add_argument("--test_ratio", type=float, default=0.2,
                        help="share of each label to put in test, as whole speakers (or groups)")
    parser.add_argument("--speaker_pattern", default=None,
                        help="folder only: regex searched in each file name whose group 'speaker' "
                             r"(or first group) names the speaker, e.g. '^(?P<speaker>\w+?)_'; "
                             "without it the split is by file")
    parser.add_argument("--include_song", type=str2bool, default=False,
                        help="ravdess only: also list the sung clips (vocal channel 02)")
    parser.add_argument("--test_only", action="store_true",
                        help="cross-corpus evaluation: list every clip of the corpus as test data, indexed "
                             "by the label list of the corpus the model is trained on (--label_list); clips "
                             "whose label is not in it are skipped and counted; train_list.txt and "
                             "label_list.txt are not written")
    parser.add_argument("--list_name", default=None,
                        help=f"with --test_only: file name of the test list in --list_dir "
                             f"(default: {DEFAULT_TEST_LIST})")
    parser.add_argument("--label_list", default=None,
                        help="with --test_only: the training corpus's label list "
                             "(default: <list_dir>/label_list.txt)")
    return parser


def resolve_data_dir(dataset: str, data_dir: Optional[str]) -> Optional[str]:
    if data_dir:
        return data_dir
    if dataset == "demo":
        return DEFAULT_DEMO_DIR
    if dataset == "csv":
        return None   # the table's folder
    raise DataError(f"--data_dir is required for --dataset {dataset}")


def check_args(args: argparse.Namespace) -> None:
    for option, dataset in (("test_fold", "urbansound8k"), ("csv_path", "csv")):
        if getattr(args, option) is not None and args.dataset != dataset:
            raise ConfigError(f"--{option} applies to --dataset {dataset} only")
    if not args.test_only:
        for option in ("list_name", "label_list"):
            if getattr(args, option) is not None:
                raise ConfigError(f"--{option} applies with --test_only only")
    elif args.list_name is not None and (not args.list_name or os.sep in args.list_name):
        raise ConfigError(f"--list_name must be a file name inside --list_dir, got {args.list_name!r}")


def write_test_only(args: argparse.Namespace, data_dir: str) -> None:
    corpus = load_corpus(args.dataset, data_dir, args.speaker_pattern, args.include_song, min_labels=1,
                         csv_path=args.csv_path)
    label_list = args.label_list or os.path.join(args.list_dir, "label_list.txt")
    path = os.path.join(args.list_dir, args.list_name or DEFAULT_TEST_LIST)
    written = write_test_only_list(corpus, label_list, path)
    print(format_test_only_summary(corpus, written))
    print(f"wrote {path}")


@exits_cleanly
def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    check_args(args)
    start = time.time()
    data_dir = resolve_data_dir(args.dataset, args.data_dir)
    if args.test_only:
        write_test_only(args, data_dir)
        return
    corpus = load_corpus(args.dataset, data_dir, args.speaker_pattern, args.include_song, csv_path=args.csv_path)
    if args.dataset == "urbansound8k":
        split = split_by_fold(corpus, DEFAULT_TEST_FOLD if args.test_fold is None else args.test_fold)
    else:
        split = split_corpus(corpus, args.test_ratio, args.seed)
    paths = write_lists(corpus, split, args.list_dir)
    print(format_summary(corpus, split))
    print(f"wrote {', '.join(paths)} in {time.time() - start:.2f} s")


if __name__ == "__main__":
    main()
