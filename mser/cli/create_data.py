"""create_data.py: turn a corpus folder into train_list.txt, test_list.txt and label_list.txt."""
import argparse
import time
from typing import List, Optional

from mser.cli.common import exits_cleanly, str2bool
from mser.data.corpora import PARSERS, format_summary, load_corpus, split_corpus, write_lists
from mser.errors import DataError

DEFAULT_DEMO_DIR = "dataset/demo"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Write speaker-independent train/test lists and a label list for a corpus. "
                    "List paths are --data_dir joined with each file's path below it, so a relative "
                    "--data_dir gives paths relative to the current directory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", default="demo", choices=list(PARSERS),
                        help="corpus naming scheme (see mser/data/corpora.py); folder: DIR/<label>/*.wav")
    parser.add_argument("--data_dir", default=None,
                        help=f"corpus root folder; defaults to {DEFAULT_DEMO_DIR} for --dataset demo, "
                             "required otherwise")
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
    return parser


def resolve_data_dir(dataset: str, data_dir: Optional[str]) -> str:
    if data_dir:
        return data_dir
    if dataset == "demo":
        return DEFAULT_DEMO_DIR
    raise DataError(f"--data_dir is required for --dataset {dataset}")


@exits_cleanly
def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    start = time.time()
    data_dir = resolve_data_dir(args.dataset, args.data_dir)
    corpus = load_corpus(args.dataset, data_dir, args.speaker_pattern, args.include_song)
    split = split_corpus(corpus, args.test_ratio, args.seed)
    paths = write_lists(corpus, split, args.list_dir)
    print(format_summary(corpus, split))
    print(f"wrote {', '.join(paths)} in {time.time() - start:.2f} s")


if __name__ == "__main__":
    main()
