"""The emotion timeline of a long recording as a PNG (matplotlib, Agg backend, no display needed).

Top panel: each segment's class probabilities stacked to 1, so the widest colour at a moment is the
most likely emotion. Bottom band: the dominant label, named where a run of it is wide enough, with
a tick at each segment's start. Stretches no segment covers (silence under VAD segmentation) are
grey in both panels.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

SegmentProbabilities = Tuple[float, float, np.ndarray]   # (start_s, end_s, (num_class,) probabilities)

# Colours people expect for the common emotion names; other labels take the tab10 colours in order.
EMOTION_COLOURS = {
    "angry": "#d62728", "anger": "#d62728", "happy": "#f2c618", "happiness": "#f2c618", "joy": "#f2c618",
    "sad": "#1f77b4", "sadness": "#1f77b4", "neutral": "#9e9e9e", "calm": "#17becf", "fear": "#9467bd",
    "fearful": "#9467bd", "surprise": "#ff7f0e", "surprised": "#ff7f0e", "disgust": "#2ca02c",
    "disgusted": "#2ca02c", "boredom": "#8c564b", "other": "#e377c2", "unknown": "#ffffff",
}
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
         "#17becf"]
UNCOVERED = "#e6e6e6"


def label_colours(labels: Sequence[str]) -> Dict[str, str]:
    """A distinct colour per label: the usual one for an emotion name, else the next unused tab10."""
    colours: Dict[str, str] = {}
    spare = iter([colour for colour in TAB10 if colour not in
                  {EMOTION_COLOURS.get(label.lower()) for label in labels}] + TAB10)
    for label in labels:
        colour = EMOTION_COLOURS.get(label.lower())
        colours[label] = colour if colour and colour not in colours.values() else next(spare)
    return colours


def segment_cells(times: Sequence[Tuple[float, float]]) -> List[Tuple[float, float]]:
    """The stretch of time each segment stands for: overlapping windows split the overlap halfway
    between their centres; segments with a gap between them keep their own ends (the gap stays
    empty). times: [(start_s, end_s)] in order -> [(from_s, to_s)], one per segment."""
    centres = [(start + end) / 2 for start, end in times]
    cells = []
    for index, (start, end) in enumerate(times):
        low = max(start, (centres[index - 1] + centres[index]) / 2) if index else start
        high = min(end, (centres[index] + centres[index + 1]) / 2) if index + 1 < len(times) else end
        cells.append((low, max(low, high)))
    return cells


def dominant_runs(cells: Sequence[Tuple[float, float]], winners: Sequence[int]) -> List[Tuple[float, float, int]]:
    """Consecutive touching cells with the same winning class joined: [(from_s, to_s, class)]."""
    runs: List[List] = []
    for (low, high), winner in zip(cells, winners):
        if runs and runs[-1][2] == winner and abs(runs[-1][1] - low) < 1e-6:
            runs[-1][1] = high
        else:
            runs.append([low, high, winner])
    return [tuple(run) for run in runs]


def uncovered(cells: Sequence[Tuple[float, float]], duration: float) -> List[Tuple[float, float]]:
    """The stretches of [0, duration] no cell covers."""
    gaps, position = [], 0.0
    for low, high in cells:
        if low - position > 1e-6:
            gaps.append((position, low))
        position = max(position, high)
    if duration - position > 1e-6:
        gaps.append((position, duration))
    return gaps


def plot_timeline(path: str, segments: Sequence[SegmentProbabilities], labels: Sequence[str],
                  title: str = "", duration: Optional[float] = None) -> None:
    """Write the timeline PNG of one recording.

    segments: [(start_s, end_s, (num_class,) probabilities)] in time order (predict_long's windows,
              MSERPredictor.segment_probabilities); labels: the class names in index order;
    duration: the recording's length in seconds (default: the end of the last segment).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    times = [(float(start), float(end)) for start, end, _ in segments]
    probs = np.stack([np.asarray(p, dtype=np.float64) for _, _, p in segments])
    duration = max(duration or 0.0, times[-1][1])
    cells = segment_cells(times)
    colours = label_colours(labels)
    winners = probs.argmax(axis=1)

    figure, (top, band) = plt.subplots(2, 1, figsize=(max(8.0, min(20.0, 6 + duration / 20)), 4.2), sharex=True,
                                       gridspec_kw={"height_ratios": [4, 1], "hspace": 0.08})
    lefts = np.array([low for low, _ in cells])
    widths = np.array([high - low for low, high in cells])
    bottom = np.zeros(len(cells))
    for index, label in enumerate(labels):
        top.bar(lefts, probs[:, index], widths, bottom=bottom, align="edge", color=colours[label], linewidth=0)
        bottom += probs[:, index]
    for low, high in uncovered(cells, duration):
        for axis in (top, band):
            axis.axvspan(low, high, color=UNCOVERED, linewidth=0)
    top.set_ylim(0, 1)
    top.set_xlim(0, duration)
    top.set_ylabel("probability")
    top.set_title(title or "emotion over time", loc="left", fontsize=11)
    draw_band(band, cells, winners, labels, colours, times, duration)
    band.set_xlabel("time (s)")
    handles = [Patch(color=colours[label], label=label) for label in labels]
    if uncovered(cells, duration):
        handles.append(Patch(color=UNCOVERED, label="no segment (silence)"))
    top.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False, fontsize=9)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def draw_band(band, cells, winners, labels, colours, times, duration: float) -> None:
    """The dominant label's band, its name on runs wider than 6 % of the recording, segment ticks."""
    for low, high, winner in dominant_runs(cells, winners):
        band.axvspan(low, high, color=colours[labels[winner]], linewidth=0)
        if high - low >= 0.06 * duration:
            band.text((low + high) / 2, 0.5, labels[winner], ha="center", va="center", fontsize=9,
                      color="black", bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0, "pad": 1.5})
    for start, _ in times:
        band.plot([start, start], [0.0, 0.18], color="black", linewidth=0.8)
    band.set_ylim(0, 1)
    band.set_yticks([])
    band.set_ylabel("label", rotation=0, ha="right", va="center")
