"""torchrun support: who this process is, and the few collectives the trainer needs."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Context:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str = ""   # the process group's (gloo or nccl); empty for a single process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        """One line for the log: the processes, the process group's backend and the device."""
        if not self.distributed:
            return f"one process on {self.device.type}"
        return f"data-parallel: {self.world_size} processes, {self.backend} backend, on {self.device.type}"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(use_gpu: bool) -> Context:
    """Read torchrun's environment; start the process group (nccl on GPU, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    on_gpu = use_gpu and torch.cuda.is_available()
    if on_gpu:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    backend = ""
    if world_size > 1:
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if on_gpu else "gloo")
        backend = str(dist.get_backend())
    return Context(rank, local_rank, world_size, device, backend)


def local_context(use_gpu: bool) -> Context:
    """This process alone, whatever torchrun's environment says: the first GPU when `use_gpu` and
    there is one, else the CPU. No process group is started (evaluation, feature extraction, tools)."""
    on_gpu = use_gpu and torch.cuda.is_available()
    return Context(0, 0, 1, torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu"))


def sum_across_ranks(values, context: Context) -> list:
    """Element-wise sum of a list of numbers over all ranks."""
    if not context.distributed:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def average_gradients(module: torch.nn.Module, context: Context) -> None:
    """Average the gradients of a module that DistributedDataParallel does not wrap over all ranks."""
    if not context.distributed:
        return
    for parameter in module.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
            parameter.grad /= context.world_size


def all_agree(flag: bool, context: Context) -> bool:
    """True when `flag` is true in every process: a decision all processes take together."""
    if not context.distributed:
        return bool(flag)
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int32, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return bool(tensor.item())


def gather_objects(value, context: Context) -> list:
    """[value of rank 0, value of rank 1, ...] in every process (picklable values)."""
    if not context.distributed:
        return [value]
    gathered = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()


def cleanup(context: Context) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()
