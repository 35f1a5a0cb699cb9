"""Data-parallel training: one place that every trainer (RL, SFT, pretraining) calls.

    dist = Dist.from_env()               # this process's rank in the torchrun group (or one)

    wrapped = wrap_model(model, parallel="fsdp", param_dtype=torch.bfloat16)
    out = wrapped.module(**inputs)       # passes whose gradients are reduced over ranks
    wrapped.model.config                  # the Hugging Face model underneath

What each `parallel` does under `torchrun` (a process group is initialised, world size > 1):

- `none`: the model as it is (one process).
- `ddp`: `torch.nn.parallel.DistributedDataParallel`: every rank holds the whole model and AdamW
  state; gradients are all-reduced in buckets during the backward pass (overlapping it).
- `fsdp`: FSDP2 (`torch.distributed.fsdp.fully_shard`, Zhao et al. 2023 "PyTorch FSDP"), applied to
  each decoder layer and then to the root (as torchtitan and TRL/accelerate's FSDP2 plugin do):
  parameters, gradients and AdamW state are sharded over ranks (DTensors on dim 0); a layer's
  parameters are all-gathered just before its forward and backward and freed after; gradients are
  reduce-scattered. With `param_dtype` bfloat16 (a `MixedPrecisionPolicy`) the all-gathered
  parameters and the compute are bfloat16, while the sharded master weights, the optimiser and the
  gradient reduction (`reduce_dtype`) stay float32. `cpu_offload` keeps the shards and the
  optimiser on the CPU (FSDP2's `CPUOffloadPolicy`; it needs an accelerator for the compute).

Gradients are *summed* over ranks, not averaged: the trainers divide each rank's loss by the
global batch's normaliser (token or sequence count, all-reduced), so the sum of the ranks'
gradients is the gradient of the global loss, as one process computes it on the combined batch.
DDP gets a summing communication hook; FSDP2 a gradient divide factor of 1.

With one process (no process group) `ddp` and `fsdp` leave the model as it is, so one recipe runs
on one device and under `torchrun`.

LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") through `peft` (the
optional extra `reasonlab[lora]`): `add_lora` injects adapters W + (alpha / r) B A into the named
linear layers of the model, in place, and freezes everything else; the reference policy of a KL
penalty is then the same model with its adapters disabled (`peft`'s `disable_adapter`, as TRL's
GRPOTrainer does), so no second full copy is kept.

`Dist` is this process's place in the group (rank, world size, `local_slice` of a global batch) and
the few collectives the trainers need (sums of scalars and gradients, gathers, barriers);
`Dist.single()` is the no-op one-process version, so a trainer has one code path.

`grad_sync(False)` skips the reduction during gradient accumulation (DDP's `no_sync`, FSDP2's
`set_requires_gradient_sync`); the last micro-batch of an optimiser step reduces the sum.
`clip_grad_norm` clips sharded (DTensor) and plain gradients together. `full_state_dict` gathers
an FSDP2 model's full weights on every rank (for the generation copy, see `reasonlab.rl.trainer`).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

PARALLEL = ("none", "ddp", "fsdp")
"""The values of `model.parallel`."""


@dataclass
class LoraConfig:
    """LoRA adapters (peft's LoraConfig underneath; `model.lora`)."""

    r: int = 16
    """Rank of each adapter (peft `r`)."""
    alpha: float = 32.0
    """Scale numerator: the update is (alpha / r) B A (peft `lora_alpha`)."""
    dropout: float = 0.0
    """Dropout on the adapter's input (peft `lora_dropout`; RL switches every dropout off)."""
    target_modules: list[str] = field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
    )
    """Names of the linear layers that get adapters (these: every linear layer of a Qwen2 or
    Llama decoder block; peft also takes `all-linear`)."""


def add_lora(model: torch.nn.Module, lora: LoraConfig) -> Any:
    """Inject LoRA adapters into `model` in place (its base weights frozen) and return the peft
    model around it (for `disable_adapter`, `save_pretrained` of the adapters, and
    `merge_and_unload`). `model` itself stays the Hugging Face model to call and train."""
    try:
        import peft
    except ImportError:
        raise ImportError(
            "model.lora needs peft: pip install 'reasonlab[lora]' (or pip install peft)"
        ) from None
    targets: Any = lora.target_modules
    if targets == ["all-linear"]:
        targets = "all-linear"
    config = peft.LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    try:
        return peft.get_peft_model(model, config)
    except ValueError as err:  # e.g. a target module the model does not have
        raise ValueError(f"model.lora.target_modules: {err}") from None


@dataclass
class Wrapped:
    """A model prepared for training: call `module`; read attributes (config, save_pretrained) of
    `model`. For `fsdp` both are the same (sharded) object; for `ddp`, `module` is the DDP wrapper
    of `model`."""

    module: torch.nn.Module
    model: torch.nn.Module
    kind: str = "none"

    @property
    def sharded(self) -> bool:
        """Whether the parameters are FSDP2 shards (DTensors): state dicts need gathering."""
        return self.kind == "fsdp"

    @contextlib.contextmanager
    def grad_sync(self, enabled: bool) -> Iterator[None]:
        """Backward passes inside reduce gradients over ranks only when `enabled` (gradient
        accumulation: disable it for every micro-batch but an optimiser step's last)."""
        if self.kind == "ddp" and not enabled:
            with self.module.no_sync():
                yield
        elif self.kind == "fsdp":
            self.module.set_requires_gradient_sync(enabled)
            try:
                yield
            finally:
                self.module.set_requires_gradient_sync(True)
        else:
            yield


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
        padded with zeros to the largest (responses differ in length across ranks); the rows per
        rank must be equal."""
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


def _sum_hook(state, bucket):  # noqa: ANN001, ANN202 - DDP checks the annotations it finds
    """DDP communication hook: all-reduce a bucket with SUM (the default hook averages)."""
    work = dist.all_reduce(bucket.buffer(), op=dist.ReduceOp.SUM, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder blocks of a Hugging Face causal LM (the `_no_split_modules` classes, e.g.
    Qwen2DecoderLayer), in order; FSDP2 shards each as one unit."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(
            f"{type(model).__name__} names no decoder layer class (_no_split_modules): FSDP needs "
            "one to shard each block"
        )
    return layers


def wrap_model(
    model: torch.nn.Module,
    *,
    parallel: str = "none",
    param_dtype: torch.dtype | None = None,
    cpu_offload: bool = False,
    trainable: bool = True,
) -> Wrapped:
    """Prepare `model` for data-parallel training (see the module docstring).

    parallel: none | ddp | fsdp. param_dtype: fsdp's compute dtype (None or float32: none);
    cpu_offload: fsdp only. trainable=False (a frozen reference model): fsdp shards it the same way,
    ddp leaves it as it is (nothing to reduce)."""
    if parallel not in PARALLEL:
        raise ValueError(f"model.parallel: {parallel!r} is not one of: {', '.join(PARALLEL)}")
    if cpu_offload and parallel != "fsdp":
        raise ValueError("model.cpu_offload: needs model.parallel=fsdp")
    if parallel == "none" or not (dist.is_available() and dist.is_initialized()):
        return Wrapped(model, model, "none")
    if parallel == "ddp":
        if not trainable:
            return Wrapped(model, model, "none")
        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        # broadcast_buffers=False: no collective in a forward call but the one-off bucket rebuild
        # of the second training iteration (a caller makes one training call per pass on every
        # rank); generation and evaluation call the model underneath
        module = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=ids, broadcast_buffers=False
        )
        module.register_comm_hook(None, _sum_hook)
        return Wrapped(module, model, "ddp")

    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    kwargs: dict[str, Any] = {}
    if param_dtype is not None and param_dtype != torch.float32:
        kwargs["mp_policy"] = MixedPrecisionPolicy(
            param_dtype=param_dtype, reduce_dtype=torch.float32
        )
    if cpu_offload:
        if not torch.cuda.is_available():
            raise ValueError(
                "model.cpu_offload: FSDP2's CPU offload computes on an accelerator and none is "
                "available; set it to false on CPU"
            )
        kwargs["offload_policy"] = CPUOffloadPolicy()
    layers = decoder_layers(model)
    for layer in layers:
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    if trainable:  # sum over ranks (see the module docstring); each FSDP unit has its setting
        for unit in (*layers, model):
            unit.set_gradient_divide_factor(1.0)
            unit.set_force_sum_reduction_for_comms(True)  # plain SUM: gloo has no PREMUL_SUM
    return Wrapped(model, model, "fsdp")


def clip_grad_norm(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Clip the global L2 norm of the gradients to `max_norm` (inf: only measure it); returns the
    norm before clipping. Sharded (DTensor) gradients count with their full tensors, so every rank
    gets the same norm; plain ones (a value head beside an FSDP model) are added in."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return 0.0
    from torch.distributed.tensor import DTensor

    groups = [
        group
        for group in (
            [p for p in params if isinstance(p.grad, DTensor)],
            [p for p in params if not isinstance(p.grad, DTensor)],
        )
        if group
    ]
    norms = [torch.nn.utils.get_total_norm([p.grad for p in group], 2.0) for group in groups]
    if len(norms) == 1:  # the usual case: the norm as torch's clip_grad_norm_ uses it
        total, scales = norms[0], norms
    else:  # sharded and plain gradients: one global norm, as a plain tensor
        full = [n.full_tensor() if isinstance(n, DTensor) else n for n in norms]
        total = torch.stack([n.float() for n in full]).norm()
        scales = [
            DTensor.from_local(total, n.device_mesh) if isinstance(n, DTensor) else total
            for n in norms
        ]
    value = float(total.full_tensor() if isinstance(total, DTensor) else total)
    if math.isfinite(value):
        # clip_grads_with_norm_ scales the .grad of the parameters it is given
        for group, scale in zip(groups, scales):
            torch.nn.utils.clip_grads_with_norm_(group, max_norm, scale)
    return value


def full_state_dict(model: torch.nn.Module, *, rank0_only: bool = False) -> dict[str, Any]:
    """The full (unsharded) weights of an FSDP2 model, gathered: on every rank, or only on rank 0
    (on the CPU; other ranks get {}) with `rank0_only`. A collective: every rank must call it.
    A plain model's state dict as it is."""
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=rank0_only)
    return get_model_state_dict(model, options=options)


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether `model` was wrapped by FSDP2 (`fully_shard`): its parameters are shards."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


__all__ = [
    "PARALLEL",
    "Dist",
    "LoraConfig",
    "Wrapped",
    "add_lora",
    "clip_grad_norm",
    "decoder_layers",
    "full_state_dict",
    "is_sharded",
    "wrap_model",
]
