"""An LLM judge of the four cognitive behaviours, after Gandhi et al. 2025 ("Cognitive Behaviors
that Enable Self-Improving Reasoners"), whose repository (kanishkg/cognitive-behaviors,
`behavioral_evals/api_eval.py`) asks a judge model four questions about a countdown trace, one
per behaviour, each answered as `<count>N</count>`.

`JUDGE_PROMPTS` follow that design (same four behaviours, same definitions, an example of each,
the same answer tag), in this project's own wording: figures from this judge are not the paper's.
What is implemented:

- one prompt per (response, behaviour): the countdown numbers and target (from the example's
  `meta`, "unknown" when absent), the response, the behaviour's definition, and the instruction to
  answer `<count>N</count>`; a tokenizer with a chat template gets it as one user message;
- generation through the rollout engine (`reasonlab.rollout`, the `hf` engine: any local Hugging
  Face causal LM), greedy, in batches;
- the count is the first `<count>N</count>` of the answer; an answer without one is `None`
  (counted apart as unparsed, not as 0: the paper's script reads a missing tag as 0);
- a cache keyed by the SHA-256 of (judge model name, prompt text), kept in a JSONL file, so a
  rerun asks the model only about responses it has not judged.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reasonlab.analysis.behaviours import BEHAVIOURS
from reasonlab.io import read_jsonl

_HEAD = (
    "Below is the reasoning a language model wrote while playing CountDown with the numbers "
    "{numbers}; the goal is to reach {target}.\n\nReasoning:\n{completion}\n\n"
)
_TAIL = (
    "\n\nCount the distinct instances and give the number between the tags <count> </count>; "
    "if there are none, answer <count>0</count>."
)
JUDGE_PROMPTS: dict[str, str] = {
    "verification": _HEAD
    + "Does the reasoning verify its answers, that is, explicitly compare a result it reached "
    "with the target (for example 'this gives 1, which is not 22' or 'since 25 is not 22')?"
    + _TAIL,
    "backtracking": _HEAD
    + "Does the reasoning backtrack, that is, notice that a path will not work and explicitly "
    "go back to try another one (for example 'let me try again' or 'we need a different "
    "sequence')?" + _TAIL,
    "subgoal_setting": _HEAD
    + "Does the reasoning set explicit subgoals, that is, break the problem into intermediate "
    "goals (for example 'first I will try to get close to {half_target}, then ...')?" + _TAIL,
    "backward_chaining": _HEAD
    + "Does the reasoning chain backward, that is, start from the target and work back towards "
    "the given numbers (for example, with target 24 and numbers 12 and 2: 'working backwards, "
    "24 / 2 = 12, so 12 * 2 = 24')?" + _TAIL,
}
"""One prompt per behaviour; fields: numbers, target, half_target, completion."""

_COUNT = re.compile(r"<count>\s*(\d+)\s*</count>")


def judge_prompt(behaviour: str, completion: str, meta: Mapping[str, Any] | None = None) -> str:
    """The judge's question about one response for one behaviour."""
    if behaviour not in JUDGE_PROMPTS:
        raise ValueError(f"unknown behaviour {behaviour!r}; valid: {', '.join(BEHAVIOURS)}")
    meta = meta or {}
    target = meta.get("target", "unknown")
    half = target // 2 if isinstance(target, int) else "half the target"
    return JUDGE_PROMPTS[behaviour].format(
        numbers=meta.get("numbers", "unknown"),
        target=target,
        half_target=half,
        completion=completion,
    )


def parse_count(answer: str) -> int | None:
    """N of the first `<count>N</count>` in a judge's answer; None when there is none."""
    match = _COUNT.search(answer)
    return int(match.group(1)) if match else None


class Judge:
    """Labels responses with the four behaviour counts by asking a language model.

    `engine` is a rollout engine (`generate(prompts, SamplingParams) -> list[Rollout]`);
    `tokenizer`, when it has a chat template, wraps each prompt as a user message; `model_name`
    keys the cache (answers of two judges never mix); `cache` is a JSONL file (created when
    absent, appended to).
    """

    def __init__(
        self,
        engine: Any,
        model_name: str,
        tokenizer: Any = None,
        cache: str | Path | None = None,
        max_new_tokens: int = 256,
        batch_size: int = 16,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"Judge: batch_size must be >= 1, got {batch_size}")
        self.engine, self.model_name, self.tokenizer = engine, model_name, tokenizer
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.cache_path = Path(cache) if cache is not None else None
        self.cache: dict[str, dict[str, Any]] = {}
        self.generated = 0
        """Prompts sent to the model by this object (cache misses)."""
        if self.cache_path is not None and self.cache_path.is_file():
            for row in read_jsonl(self.cache_path, ("key",), drop_partial_last_line=True):
                self.cache[row["key"]] = row

    def _key(self, prompt: str) -> str:
        return hashlib.sha256(f"{self.model_name}\0{prompt}".encode()).hexdigest()

    def _render(self, prompt: str) -> str:
        if self.tokenizer is not None and getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": prompt}]
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        return prompt

    def label(
        self, texts: Sequence[str], metas: Sequence[Mapping[str, Any] | None] | None = None
    ) -> list[dict[str, int | None]]:
        """Per response, the judged count of each behaviour (None: the answer had no count)."""
        from reasonlab.rollout import SamplingParams

        if metas is not None and len(metas) != len(texts):
            raise ValueError(f"Judge.label: {len(metas)} metas for {len(texts)} texts")
        prompts = [
            [judge_prompt(b, t, None if metas is None else metas[i]) for b in BEHAVIOURS]
            for i, t in enumerate(texts)
        ]
        flat = [p for row in prompts for p in row]
        missing = list(dict.fromkeys(p for p in flat if self._key(p) not in self.cache))
        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=self.max_new_tokens)
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            rollouts = self.engine.generate([self._render(p) for p in batch], params)
            rows = [
                {"key": self._key(p), "answer": r.text, "count": parse_count(r.text)}
                for p, r in zip(batch, rollouts, strict=True)
            ]
            self.generated += len(rows)
            for row in rows:
                self.cache[row["key"]] = row
            if self.cache_path is not None:  # appended per batch: an interrupted run keeps these
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.cache_path, "a", encoding="utf-8") as f:
                    f.writelines(json.dumps(row) + "\n" for row in rows)
        return [
            {b: self.cache[self._key(p)]["count"] for b, p in zip(BEHAVIOURS, row, strict=True)}
            for row in prompts
        ]


def load_judge(
    model_dir: str | Path, cache: str | Path | None = None, device: str = "cpu", **kwargs: Any
) -> Judge:
    """A `Judge` on the Hugging Face model in `model_dir` (local folder) on `device`, with the
    `hf` engine; `kwargs` go to `Judge`."""
    from reasonlab import models
    from reasonlab.rollout import get_engine

    model, tokenizer = models.load(model_dir, device=device)
    engine = get_engine("hf", model=model, tokenizer=tokenizer)
    return Judge(engine, str(Path(model_dir).resolve()), tokenizer, cache, **kwargs)
