"""Training on several processes (GPUs, nodes) launched by torchrun.

    torchrun --nproc_per_node=4 train.py --dataroot ... --name ...

`setup()` reads torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE), joins the process group
(nccl on CUDA, gloo on CPU) and picks this process's device. A plain `python train.py` gets a
single-process `Context` whose methods are local no-ops: torch.distributed is never initialised.

How the replicas stay identical. The networks are NOT wrapped in DistributedDataParallel: DDP's
bookkeeping follows `forward()` calls, while one CUT iteration calls G's `encode` directly (twice
per PatchNCE term), calls D on several batches, runs the Langevin chain on D (gradients w.r.t. the
image only) and toggles D's `requires_grad` between the D and G/F steps -- each a way to break
DDP's reducer or to need `no_sync`/`find_unused_parameters` juggling. Instead, right before every
optimizer step, a step pre-hook averages that optimizer's gradients over all ranks with one
all-reduce of a flat buffer. That is DDP's arithmetic (mean of per-rank gradients, same step on
every rank) for any call pattern. Cost: communication does not overlap the backward pass (for
CUT's default networks 14.7 M parameters, 59 MB of gradients per iteration, in 3 all-reduces).

Buffers (batch-norm running statistics) are not averaged: training uses batch statistics, and
checkpoints hold rank 0's running statistics -- what DDP's default `broadcast_buffers` gives.
"""
from __future__ import annotations

import atexit
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from util.runtime import select_device

_TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in _TORCHRUN_ENV)


def is_main_process() -> bool:
    """Rank 0, or a plain run; usable before `setup()` (reads torchrun's RANK)."""
    return int(os.environ.get("RANK", "0")) == 0


def rank_seed(seed: int, rank: int, iteration: int) -> int:
    """A distinct, reproducible seed for rank `rank`'s RNG stream starting at `iteration`."""
    return int(np.random.SeedSequence((seed, rank, iteration)).generate_state(1)[0])


@dataclass(frozen=True)
class Context:
    """This process's place in the run; every collective method must be called by all ranks."""

    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # -- model ----------------------------------------------------------------------------------
    def share_model(self, nets: Iterable[nn.Module], optimizers: Iterable[torch.optim.Optimizer]) -> None:
        """Start every rank from rank 0's weights and average gradients before each optimizer step.

        Call once the optimizers exist (CUT creates netF's lazily) and after any resume.
        """
        if not self.distributed:
            return
        with torch.no_grad():
            for net in nets:
                for tensor in [*net.parameters(), *net.buffers()]:
                    dist.broadcast(tensor, src=0)
        for optimizer in optimizers:
            optimizer.register_step_pre_hook(self._average_gradients)

    def _average_gradients(self, optimizer: torch.optim.Optimizer, _args: object, _kwargs: object) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        # A missing gradient joins as zeros (every rank sends the same-sized buffer, so a rank can
        # never wait on a differently shaped collective) and stays None: Adam skips such parameters.
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        with torch.no_grad():
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat.div_(self.world_size)
            for grad, averaged in zip(grads, flat.split([g.numel() for g in grads])):
                grad.copy_(averaged.view_as(grad))

    # -- agreement and logging ------------------------------------------------------------------
    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def max_int(self, value: int) -> int:
        """The largest `value` over ranks: lets all ranks stop at the same iteration on a signal
        that reached only some of them."""
        if not self.distributed:
            return value
        tensor = torch.tensor(value, dtype=torch.int64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())

    def mean_values(self, values: dict[str, float]) -> dict[str, float]:
        """Average logged numbers over ranks (the loss of the effective batch)."""
        if not self.distributed or not values:
            return values
        tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return dict(zip(values, (tensor / self.world_size).tolist()))

    # -- random number generators ---------------------------------------------------------------
    def seed_rank(self, seed: int, iteration: int = 0) -> None:
        """Give each rank its own stream (Langevin noise, patch sampling, flips); the networks are
        built before this, from the shared seed."""
        if self.distributed:
            torch.manual_seed(rank_seed(seed, self.rank, iteration))

    def rng_state(self) -> dict[str, torch.Tensor]:
        state = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def gather_rng_states(self) -> list[dict[str, torch.Tensor]]:
        """Every rank's RNG state, in rank order (for the checkpoint written by rank 0)."""
        if not self.distributed:
            return [self.rng_state()]
        states: list = [None] * self.world_size
        dist.all_gather_object(states, self.rng_state())
        return states

    def restore_rng(self, states: list[dict[str, torch.Tensor]]) -> None:
        """Restore this rank's state from `gather_rng_states()` of a run with as many processes."""
        if not self.distributed:
            return
        mine = states[self.rank]
        torch.set_rng_state(mine["cpu"].cpu())
        if "cuda" in mine and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda"].cpu(), self.device)


def setup(gpu_ids: str | None) -> Context:
    """A single-process context, or -- under torchrun -- join the process group."""
    if not launched_by_torchrun():
        return Context(device=select_device(gpu_ids))
    rank, local_rank, world_size = (int(os.environ[name]) for name in _TORCHRUN_ENV)
    device = _device_for(gpu_ids, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", device_id=device)
    else:
        dist.init_process_group(backend="gloo")
    atexit.register(_cleanup)
    return Context(device=device, rank=rank, local_rank=local_rank, world_size=world_size)


def _device_for(gpu_ids: str | None, local_rank: int) -> torch.device:
    """cuda:LOCAL_RANK by default; --gpu_ids -1 = CPU; --gpu_ids 2,3 = this node's GPUs, one per process."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", local_rank + 1))
    if gpu_ids is None:
        if not torch.cuda.is_available():
            return torch.device("cpu")
        if torch.cuda.device_count() < per_node:
            raise ValueError(f"torchrun started {per_node} processes on this node but only "
                             f"{torch.cuda.device_count()} GPU(s) are visible: lower --nproc_per_node")
        return torch.device(f"cuda:{local_rank}")
    ids = [int(i) for i in str(gpu_ids).split(",") if i.strip()]
    if not ids or ids[0] < 0:
        return torch.device("cpu")
    if len(ids) < per_node:
        raise ValueError(f"--gpu_ids {gpu_ids} names {len(ids)} GPU(s) but torchrun started {per_node} "
                         "processes on this node: name one GPU per process, or omit --gpu_ids")
    return select_device(str(ids[local_rank]))


def _cleanup() -> None:
    """Leave the process group at exit, however training ended."""
    if dist.is_initialized():
        dist.destroy_process_group()
