"""Data-parallel RL with `torch.distributed` (torchrun; gloo on CPU, NCCL on GPUs).

How the work is split, and why the result equals one process with the combined batch:

1. Prompts: every rank reads the same deterministic data stream and takes its own contiguous slice
   of each block of prompts, so groups (all `n` responses of one prompt) never straddle ranks.
   Each prompt is sampled with its own seed (its index in the step), not the rank's.
2. Generation and scoring run locally on each rank's prompts; the scored responses are then
   all-gathered, so every rank holds the step's whole batch in stream order and makes the same
   dynamic-sampling decisions (groups kept, prompts to draw next round: the block size is global,
   its split over ranks may be uneven) and ends at the same stream position, which is what a
   checkpoint saves. The kept groups are shared out again in equal contiguous blocks (their
   count cut to a multiple of the world size) for the update.
3. Advantages: the small per-response tensors (rewards, response masks, values, KL) are all-gathered
   so every rank computes advantages on the *global* batch and keeps its rows. Group estimators
   would be right with local groups alone; batch-whitened ones (REINFORCE++, GAE) need the gather.
4. Loss: each minibatch's normaliser (token count for token-mean, response count for the
   sequence modes) is all-reduced (sum) before the loss is formed, so every rank's loss is its share
   of the global minibatch loss.
5. Gradients: summed over ranks by the engine `model.parallel` names (`reasonlab.parallel`: DDP
   with a summing communication hook, or FSDP2 with a divide factor of 1), once per minibatch
   after its accumulated backward passes: the sum of the ranks' shares is exactly the gradient of
   the global minibatch loss, no 1/W rescaling to undo. The PPO value head, outside the wrapped
   policy, is summed by `Dist.all_reduce_grads`. Clipping and the AdamW step then run on identical
   (or, under FSDP, consistently sharded) gradients, so parameters stay identical on every rank.

`Dist` wraps these collectives; `Dist.single()` is the no-op version for one process, so the trainer
has one code path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    """This process's place in the data-parallel group and the collectives the trainer needs."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def single(cls) -> Dist:
        return cls(0, 1)

    @classmethod
    def from_env(cls, backend: str | None = None) -> Dist:
        """Join the process group that torchrun describes in the environment (WORLD_SIZE, RANK,
        MASTER_ADDR, ...); one process when WORLD_SIZE is unset or 1. gloo on CPU, NCCL on CUDA."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls.single()
        if not dist.is_initialized():
            backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
            dist.init_process_group(backend=backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_slice(self, count: int, *, even: bool = True) -> slice:
        """This rank's contiguous share of `count` items, in rank order. even=True: count must be
        divisible by world_size; even=False: the first `count % world_size` ranks take one more
        (a rank may get none)."""
        if even and count % self.world_size:
            raise ValueError(f"{count} items do not split evenly over {self.world_size} ranks")
        share, extra = divmod(count, self.world_size)
        start = self.rank * share + min(self.rank, extra)
        return slice(start, start + share + (self.rank < extra))

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """In place; returns the tensor. op: sum, max or min."""
        if self.enabled:
            ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
            dist.all_reduce(tensor, op=ops[op])
        return tensor

    def sum_scalar(self, value: float | torch.Tensor, device: torch.device | str = "cpu") -> float:
        tensor = torch.as_tensor(value, dtype=torch.float64, device=device).clone()
        return float(self.all_reduce(tensor).item())

    def min_int(self, value: int, device: torch.device | str = "cpu") -> int:
        tensor = torch.tensor([value], dtype=torch.int64, device=device)
        return int(self.all_reduce(tensor, op="min").item())

    def all_gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's [b_r, ...] tensor along dim 0, in rank order. Trailing dims are
        padded with zeros to the largest (responses differ in length across ranks); the rows per rank
        must be equal."""
        if not self.enabled:
            return tensor
        shape = torch.tensor(list(tensor.shape), dtype=torch.int64, device=tensor.device)
        self.all_reduce(shape, op="max")
        padded = tensor.new_zeros(tuple(shape.tolist()))
        padded[tuple(slice(0, s) for s in tensor.shape)] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat(parts, dim=0)

    def all_gather_objects(self, obj: object) -> list:
        if not self.enabled:
            return [obj]
        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def all_reduce_grads(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Sum the gradients of `parameters` over ranks (in place), one flat bucket per dtype.
        A parameter with no gradient on this rank contributes zeros. (The policy's gradients are
        summed by DDP or FSDP2; this serves modules outside it, the value head.)"""
        if not self.enabled:
            return
        params = [p for p in parameters if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        by_dtype: dict[torch.dtype, list[torch.nn.Parameter]] = {}
        for p in params:
            by_dtype.setdefault(p.grad.dtype, []).append(p)
        for group in by_dtype.values():
            flat = torch.cat([p.grad.reshape(-1) for p in group])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            offset = 0
            for p in group:
                n = p.grad.numel()
                p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
                offset += n

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


__all__ = ["Dist"]
