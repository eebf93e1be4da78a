"""How much a speaker's mix of emotions moves speaker normalisation.

A model trained with speaker normalisation standardises each clip with its speaker's statistics,
and those are taken over whatever clips of the speaker it is given. Corpora and the demo corpus
give every speaker every emotion in about equal shares; a user's recordings of one person rarely
do (mostly neutral, or one angry call). This script keeps, for each speaker of a test list, a
random share of each emotion's clips (shares drawn from a Dirichlet distribution, `--alpha`: 1 is
any mix alike, larger is closer to even, smaller is one or two emotions), and scores the kept clips
twice, both with whole-speaker statistics (as eval.py and infer.py on files):

  own mix     statistics from the kept clips alone, what a user with those recordings gets
  even mix    statistics from all of the speaker's clips in the list, an even mix of emotions

and once more without speaker statistics (`no speaker`: every clip with the training set's global
statistics, what a user gets who names no speaker). The difference between the first two is what
the mix costs. Nothing is trained; the checkpoint is used as it is.

    python tools/speaker_mix.py --model_path models/Ensemble --test_list dataset/test_list.txt \
        [--alpha 1.0] [--draws 3] [--seed 0] [--json out.json]
"""
import argparse
import os
import sys
import warnings
from typing import Dict, List, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # mser, from a checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))                    # robustness.py beside it

from mser.audio import load_audio  # noqa: E402
from mser.data.lists import read_data_list  # noqa: E402
from mser.metrics import compute_metrics  # noqa: E402
from robustness import CONDITIONS, SAMPLE_RATE, predict_condition, report  # noqa: E402

MIN_CLIPS = 2   # a speaker keeps at least this many clips (a statistics of one clip is its own mean)


def mixed_rows(truth: Sequence[int], speakers: Sequence[str], num_class: int, alpha: float,
               rng: np.random.Generator) -> List[int]:
    """Rows kept: for each speaker, emotion shares drawn from Dirichlet(alpha), and each clip kept
    with its emotion's share over the largest share (so the most frequent emotion keeps every clip)."""
    truth = np.asarray(truth)
    kept: List[int] = []
    for speaker in dict.fromkeys(speakers):
        rows = np.array([i for i, s in enumerate(speakers) if s == speaker])
        shares = rng.dirichlet([alpha] * num_class)
        keep = rng.random(len(rows)) < (shares / shares.max())[truth[rows]]
        chosen = rows[keep] if keep.sum() >= MIN_CLIPS else rows[:MIN_CLIPS]
        kept.extend(chosen.tolist())
    return kept


def unweighted_accuracy(truth: Sequence[int], predicted: Sequence[int], labels: Sequence[str]) -> float:
    return compute_metrics(list(truth), list(predicted), labels)["unweighted_accuracy"]


def summary(result: Dict[str, float]) -> str:
    return (f"UA own mix {result['own_mix_ua']:.3f}  even mix {result['even_mix_ua']:.3f}  no speaker "
            f"{result['no_speaker_ua']:.3f}  answer changed on {result['answers_changed']:.1%} (own against even)")


def evaluate(model_path: str, test_list: str, alpha: float = 1.0, draws: int = 3, seed: int = 0,
             use_gpu: bool = False, views=None) -> Dict[str, object]:
    """UA of each draw's kept clips with their own mix's statistics and with the even mix's, and the
    means over the draws."""
    from mser import MSERPredictor
    from mser.errors import BandwidthWarning, ClippingWarning, DataError
    warnings.filterwarnings("ignore", category=BandwidthWarning)  # the lists may hold telephone clips
    warnings.filterwarnings("ignore", category=ClippingWarning)   # and clipped ones
    predictor = MSERPredictor(model_path=model_path, use_gpu=use_gpu, views=views)
    items = read_data_list(test_list, len(predictor.labels))
    speakers = [item.speaker for item in items]
    if not all(speakers):
        raise DataError(f"{test_list} names no speaker for some clips (third column): mixes are per speaker")
    clips = [load_audio(item[0], SAMPLE_RATE) for item in items]
    truth = np.array([item[1] for item in items])
    as_is = CONDITIONS["clean"]
    even = np.array(predict_condition(predictor, clips, speakers, as_is, statistics="whole"))
    global_only = np.array(predict_condition(predictor, clips, [""] * len(clips), as_is))
    rng = np.random.default_rng(seed)
    results = {"alpha": alpha, "draws": []}
    for draw in range(draws):
        rows = mixed_rows(truth, speakers, len(predictor.labels), alpha, rng)
        own = predict_condition(predictor, [clips[r] for r in rows], [speakers[r] for r in rows], as_is,
                                statistics="whole")
        entry = {"num_samples": len(rows), "own_mix_ua": unweighted_accuracy(truth[rows], own, predictor.labels),
                 "even_mix_ua": unweighted_accuracy(truth[rows], even[rows], predictor.labels),
                 "no_speaker_ua": unweighted_accuracy(truth[rows], global_only[rows], predictor.labels),
                 "answers_changed": float(np.mean(np.array(own) != even[rows]))}
        results["draws"].append(entry)
        print(f"draw {draw}: {len(rows)} clips  {summary(entry)}", flush=True)
    for key in ("own_mix_ua", "even_mix_ua", "no_speaker_ua", "answers_changed"):
        results[key] = float(np.mean([entry[key] for entry in results["draws"]]))
    print(f"mean of {draws} draws (alpha {alpha}): {summary(results)}")
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model_path", required=True, help="checkpoint or ensemble directory")
    parser.add_argument("--test_list", default="dataset/test_list.txt", help="clips with speakers (third column)")
    parser.add_argument("--alpha", type=float, default=1.0,
                        help="Dirichlet concentration of each speaker's emotion shares (larger: closer to even)")
    parser.add_argument("--draws", type=int, default=3, help="how many mixes to draw for every speaker")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--use_gpu", action="store_true", help="run the model on the GPU")
    parser.add_argument("--views", default=None,
                        help="test-time views of the predictor (mser.views), e.g. telephone, or none "
                             "(default: the model folder's own)")
    args = parser.parse_args(argv)
    if args.alpha <= 0 or args.draws < 1:
        parser.error("--alpha must be above 0 and --draws at least 1")
    report(lambda: evaluate(args.model_path, args.test_list, args.alpha, args.draws, args.seed, args.use_gpu,
                            args.views), args.json)


if __name__ == "__main__":
    main()
