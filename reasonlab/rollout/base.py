"""The rollout interface: every generation engine (Hugging Face now, vLLM on GPUs) implements it.

    engine.generate(prompts, SamplingParams(n=8, temperature=1.0, max_new_tokens=64))
        -> list[Rollout]   # len(prompts) * n, grouped by prompt: [p0s0, p0s1, ..., p1s0, ...]

`rl/`, `eval/` and `search/` depend only on this module, never on a backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from reasonlab.records import Rollout


@dataclass
class SamplingParams:
    """Sampling settings, named as in vLLM."""

    n: int = 1
    """Samples per prompt."""
    temperature: float = 1.0
    """0 means greedy."""
    top_p: float = 1.0
    top_k: int = 0
    """0 or -1: no top-k filtering."""
    max_new_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    """Stop strings: generation of a sample ends after the first one it produces (kept in the text)."""
    seed: int | None = None
    """Seed for this call's sampling (None: the engine's generator state); prompts that carry
    their own `Prompt.seed` ignore it."""
    logprobs_mode: str = "raw"
    """Which log-probability each sampled token records (vLLM's logprobs_mode): raw, of the model's
    distribution at the temperature before top-k/top-p (what a trainer recomputes), or processed,
    of the truncated, renormalised distribution the token was actually drawn from."""


@dataclass
class Prompt:
    """A prompt to sample from: the rendered text and the example it belongs to."""

    text: str
    example_id: str = ""
    seed: int | None = None
    """This prompt's own sampling seed (vLLM's per-request seed): its `n` samples then depend only
    on the seed, the prompt and the weights, not on the other prompts of the call or their order.
    Give every prompt of a call a seed, or none (then `SamplingParams.seed` applies)."""


class RolloutEngine(Protocol):
    def generate(self, prompts: Sequence[Prompt | str], params: SamplingParams) -> list[Rollout]:
        """n samples per prompt, grouped by prompt, each with token ids, text, per-token logprobs
        (of the sampling distribution) and finish reason."""
        ...

    def update_weights(self, model) -> None:  # noqa: ANN001 - a torch module or a state dict
        """Load the policy's current weights, a module or its (full) state dict, without a
        save/load round trip (a no-op when the engine shares the model object)."""
        ...
