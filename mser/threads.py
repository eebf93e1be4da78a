"""How many threads torch uses in this process, set for a block and put back after it."""
import contextlib
import os
from typing import Iterator, Optional

import torch


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(count: Optional[int]) -> Iterator[None]:
    """torch on `count` threads inside the block (None: as it is)."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, count))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def threads_beside_workers(device: torch.device, workers: int) -> Optional[int]:
    """The torch threads for this process while `workers` DataLoader processes augment (and
    featurize) clips on the CPU: the cores they leave, at least one, never more than torch uses now (None:
    no change: no workers, or not the CPU). Two threads here and a worker on two cores slowed a
    TDNN epoch from audio down instead of overlapping the two (README, Data augmentation)."""
    if device.type != "cpu" or workers <= 0:
        return None
    return max(1, min(torch.get_num_threads(), usable_cores() - workers))
