"""Hugging Face rollout engine: batched sampling from any `AutoModelForCausalLM` with a KV cache.

A decode loop of our own instead of `model.generate`, for what RL needs and `generate` does not give
cheaply: the log-probability of every sampled token, per-sample finish reasons, and less per-step
overhead on small models. Per batch of rows (a row is one sample of one prompt):

1. prefill each distinct prompt once (left-padded, `position_ids` counted from each prompt's first
   real token, logits of the last position only);
2. decode one token per step for every unfinished row, feeding the cache. When prompts have
   several samples, their KV cache is shared rather than copied to each sample row (cascade or
   shared-prefix attention, as in Hydragen, Juravsky et al. 2024): a decode step's attention
   scores each row's query against its prompt's keys in one matmul per prompt (the prompt's keys
   and values read once, not once per sample) and against the row's own generated keys, then
   takes one softmax over both. A decode step's attention reads the whole cache of each row, so
   with long prompts and many samples the copies are most of what it reads. The numbers are those
   of attention over prompt + response up to float rounding (sums in another order; the tests
   compare tokens and logprobs with the copied cache). Used with the `sdpa` and `eager` attention
   of models whose layers are all full attention and pass attention keyword arguments through
   (checked once per engine by a one-token probe); otherwise each row gets a copy of its prompt's
   cache, as before;
3. a row finishes on an EOS token, on a stop string, or after `max_new_tokens` tokens; finished
   rows are dropped from the batch (and from the cache), and the loop ends when none is left.

Sampling follows vLLM's order: logits / temperature, then top-k, then top-p (nucleus, Holtzman et
al. 2020), then a categorical draw by inverse CDF from one uniform number per row and token.
`temperature=0` is greedy (argmax). The uniforms come from one `torch.Generator` for the call,
seeded by `SamplingParams.seed` (a row's draws then depend on its place in the batch), or, when
the prompts carry their own `Prompt.seed`, from a table per prompt: sample j of a prompt reads row j
of a [n, max_new_tokens] table drawn on the CPU from a generator seeded by that prompt's seed, so
what a prompt samples does not depend on which other prompts share the call (a data-parallel rank
holding half of the prompts samples what one process holding all of them does).

Recorded per token: `log_softmax(logits / T)[token]`, with `T` the temperature (1 for greedy),
*before* top-k/top-p filtering. That is the log-probability the policy itself gives the token
(what an RL trainer recomputes from the same weights: TRL's GRPOTrainer, veRL) rather than the
truncated sampler's; the two agree when top_p=1 and top_k=0. `logprobs_mode="processed"` records
the truncated sampler's instead (vLLM's processed_logprobs): the behaviour policy's, which the
trainer's rollout correction (`algorithm.rollout_is` / `rollout_rs`) weighs against.

Completion ids end with the EOS token when one was sampled (so an RL loss learns to stop); the text
never contains it. On a stop string, the ids end with the token that completed it and the text is
cut right after the stop string (which it keeps), as in vLLM.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import AttentionInterface

from reasonlab.models import cache_keyword
from reasonlab.records import Rollout
from reasonlab.rollout.base import Prompt, SamplingParams


class HFEngine:
    """Generation with a Hugging Face causal LM held in this process (CPU or one GPU).

    batch_size: most rows (prompt samples) decoded together; None puts all of a call's rows in one
    batch. device: where inputs go; by default the model's device.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
    ):
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.eos_ids = _eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]
        self._keep_last_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._cache_kw = cache_keyword(model)
        self._shares_prefix: bool | None = None  # found out at the first call that could share
        # Unseeded calls draw from this generator, itself seeded from torch's global RNG, so that
        # `torch.manual_seed` at the top of a script fixes every sample.
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))

    def update_weights(self, model: Any) -> None:
        """Take the policy's current weights (a module, or its state dict: the weights gathered
        from FSDP shards), in memory; nothing to do when it is the model we sample from."""
        if model is not self.model:
            state = model if isinstance(model, Mapping) else model.state_dict()
            self.model.load_state_dict(state)

    def generate(
        self, prompts: Sequence[Prompt | str], params: SamplingParams | None = None
    ) -> list[Rollout]:
        """`params.n` samples per prompt, grouped by prompt: [p0s0, p0s1, ..., p1s0, ...]."""
        params = params or SamplingParams()
        _check_params(params)
        items = [
            p if isinstance(p, Prompt) else Prompt(text=p, example_id=str(i))
            for i, p in enumerate(prompts)
        ]
        if not items:
            return []
        prompt_ids = self.tokenizer([p.text for p in items], add_special_tokens=True)["input_ids"]
        for i, ids in enumerate(prompt_ids):
            if not ids:
                raise ValueError(f"prompt {i} ({items[i].example_id!r}) encodes to no tokens")
        rows = [i for i in range(len(items)) for _ in range(params.n)]  # prompt index of each row
        step = self.batch_size or len(rows)
        seeded = [p.seed is not None for p in items]
        if any(seeded) and not all(seeded):
            raise ValueError(
                f"prompt {seeded.index(False)} has no seed but prompt {seeded.index(True)} has one: "
                "give every prompt of a call a Prompt.seed, or none"
            )
        generator = self._generator
        if params.seed is not None and not any(seeded):
            generator = torch.Generator(device=self.device)
            generator.manual_seed(params.seed)

        was_training = self.model.training
        self.model.eval()
        rollouts: list[Rollout] = []
        try:
            with torch.inference_mode():
                for start in range(0, len(rows), step):
                    chunk = rows[start : start + step]
                    if all(seeded):
                        seeds = [items[i].seed for i in chunk]
                        uniforms = _Uniforms.per_prompt(seeds, start, params, self.device)
                    else:
                        uniforms = _Uniforms(generator=generator)
                    outs = self._generate_rows([prompt_ids[i] for i in chunk], params, uniforms)
                    for i, (ids, logprobs, reason) in zip(chunk, outs):
                        rollouts.append(
                            self._rollout(items[i], prompt_ids[i], ids, logprobs, reason, params)
                        )
        finally:
            self.model.train(was_training)
        return rollouts

    # -- the decode loop ------------------------------------------------------------------------

    def _generate_rows(
        self, row_prompts: list[list[int]], params: SamplingParams, uniforms: _Uniforms
    ) -> list[tuple[list[int], list[float], str]]:
        """Sample one completion per row; rows holding the same prompt share one prefill."""
        device, max_new = self.device, params.max_new_tokens
        num_rows = len(row_prompts)
        if max_new == 0:
            return [([], [], "length")] * num_rows
        distinct: dict[tuple[int, ...], int] = {}
        row_to_prompt = [distinct.setdefault(tuple(p), len(distinct)) for p in row_prompts]
        uniq = list(distinct)
        prompt_len = max(len(p) for p in uniq)

        input_ids = torch.full((len(uniq), prompt_len), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(uniq), prompt_len + max_new), dtype=torch.long)
        for j, ids in enumerate(uniq):  # left padding
            input_ids[j, prompt_len - len(ids) :] = torch.tensor(ids)
            attention[j, prompt_len - len(ids) : prompt_len] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)
        positions = (attention[:, :prompt_len].cumsum(-1) - 1).clamp(min=0)  # [prompts, prompt_len]

        share = len(uniq) < num_rows and self._can_share_prefix()
        cache = _new_cache(self.model, prompt_len + (0 if share else max_new))
        extra = {"logits_to_keep": 1} if self._keep_last_logits else {}
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention[:, :prompt_len],
            position_ids=positions,
            use_cache=True,
            **{self._cache_kw: cache},
            **extra,
        )
        expand = torch.tensor(row_to_prompt, device=device)  # [rows] -> prompt index
        prefix = None
        if share:  # the prompts' cache stays one per prompt; rows cache their own tokens
            prefix = _SharedPrefix(cache, attention[:, :prompt_len].bool(), row_to_prompt)
            cache = _new_cache(self.model, max_new)
        elif len(uniq) != num_rows:
            cache.reorder_cache(expand)
        logits = out.logits[:, -1, :].float().index_select(0, expand)  # [rows, vocab]
        attention = attention.index_select(0, expand)  # [rows, prompt_len + max_new]
        next_pos = positions[:, -1].index_select(0, expand) + 1  # [rows]

        tokens = torch.full((num_rows, max_new), self.pad_id, dtype=torch.long, device=device)
        logprobs = torch.zeros((num_rows, max_new), dtype=torch.float32, device=device)
        lengths = [max_new] * num_rows
        reasons = ["length"] * num_rows
        active = torch.arange(num_rows, device=device)  # batch position -> row
        eos = torch.tensor(self.eos_ids, device=device)
        stop_check = _StopChecker(self.tokenizer, params.stop) if params.stop else None

        live = torch.ones(num_rows, dtype=torch.bool, device=device)  # [batch] not finished
        for t in range(max_new):
            u = None if params.temperature == 0 else uniforms.draw(active, t)  # [batch, 1]
            token, logprob = sample(logits, params, u)  # [batch], [batch]
            # Finished rows still in the batch write junk past their length; `lengths` cuts it.
            tokens[active, t] = token
            logprobs[active, t] = logprob
            done = live & torch.isin(token, eos)
            if stop_check is not None:
                tail = tokens[active, max(0, t + 1 - stop_check.window) : t + 1]
                done |= stop_check.hits(tail, skip=done | ~live)
            if bool(done.any()):
                for row in active[done].tolist():
                    lengths[row], reasons[row] = t + 1, "stop"
                live &= ~done
                num_live = int(live.sum())
                if num_live == 0:
                    break
                # Drop finished rows (and their cache) once they are a quarter of the batch: fewer
                # rows per step, for one copy of the cache each time.
                if num_live <= 0.75 * live.numel() and t < max_new - 1:
                    keep = live.nonzero().squeeze(1)  # [live rows]
                    cache.reorder_cache(keep)
                    if prefix is not None:
                        prefix.select(keep)
                    active, token, live = active[keep], token[keep], live[keep]
                    attention, next_pos = attention[keep], next_pos[keep]
            if t == max_new - 1:
                break
            if prefix is not None:
                out = prefix.decode(
                    self.model, token[:, None], next_pos[:, None], {self._cache_kw: cache}
                )
            else:
                attention[:, prompt_len + t] = 1
                out = self.model(
                    input_ids=token[:, None],
                    attention_mask=attention[:, : prompt_len + t + 1],
                    position_ids=next_pos[:, None],
                    use_cache=True,
                    **{self._cache_kw: cache},
                )
            logits = out.logits[:, -1, :].float()
            next_pos = next_pos + 1

        tokens_list, logprobs_list = tokens.tolist(), logprobs.tolist()
        return [
            (tokens_list[r][: lengths[r]], logprobs_list[r][: lengths[r]], reasons[r])
            for r in range(num_rows)
        ]

    def _can_share_prefix(self) -> bool:
        """Whether decode steps can attend to a prompt cache shared by the prompt's rows
        (`_SharedPrefix`): sdpa or eager attention, every layer full attention in a buffered
        cache, and attention keyword arguments reaching the attention function (one probe call)."""
        if self._shares_prefix is None:
            self._shares_prefix = _SharedPrefix.supported(self.model, self._cache_kw)
        return self._shares_prefix

    def _rollout(
        self,
        prompt: Prompt,
        prompt_ids: list[int],
        ids: list[int],
        logprobs: list[float],
        reason: str,
        params: SamplingParams,
    ) -> Rollout:
        body = ids[:-1] if ids and ids[-1] in self.eos_ids else ids
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        if reason == "stop" and params.stop:
            text = cut_at_stop(text, params.stop)
        return Rollout(
            example_id=prompt.example_id,
            prompt_ids=list(prompt_ids),
            completion_ids=ids,
            text=text,
            logprobs=logprobs,
            finish_reason=reason,
            prompt_text=prompt.text,
        )


def sample(
    logits: torch.Tensor, params: SamplingParams, u: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row of `logits` [batch, vocab] and its log-probability under logits / T.

    Greedy when `params.temperature == 0` (log-probabilities then at T=1; `u` unused, may be None);
    else `u` [batch, 1] holds each row's uniform number in (0, 1] for the categorical draw.
    """
    if params.temperature == 0:
        token = logits.argmax(-1)
        logp = torch.log_softmax(logits, -1)
    else:
        scaled = logits / params.temperature
        logp = torch.log_softmax(scaled, -1)
        filtered = _top_k_top_p(scaled, params.top_k, params.top_p)
        probs = logp.exp() if filtered is scaled else torch.softmax(filtered, -1)
        token = _categorical(probs, u)
        if params.logprobs_mode == "processed" and filtered is not scaled:
            logp = torch.log_softmax(filtered, -1)
    return token, logp.gather(1, token[:, None]).squeeze(1)


def _categorical(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One draw per row of `probs` [batch, vocab] by inverse CDF: the first token whose cumulative
    probability reaches u * total, u [batch, 1] uniform in (0, 1]. Exact like `torch.multinomial`,
    and much faster on CPU (one uniform per row instead of a pass over the vocabulary)."""
    cdf = probs.double().cumsum(-1)  # float64: no drift over a 150k vocabulary
    # u in (0, 1]: a zero-probability token is never the first to reach u * total
    token = torch.searchsorted(cdf, u.to(cdf) * cdf[:, -1:]).squeeze(1)
    return token.clamp_(max=probs.shape[-1] - 1)


class _Uniforms:
    """The uniform numbers u in (0, 1] of the categorical draws of one batch of rows.

    From a shared generator (`generator=`): one number per live row and token, drawn in batch
    order. Per prompt (`per_prompt`): a [rows, max_new_tokens] table fixed before decoding, whose
    row for sample j of a prompt is row j of that prompt's own seeded table, whatever the batch.
    """

    def __init__(
        self, *, generator: torch.Generator | None = None, table: torch.Tensor | None = None
    ):
        self.generator, self.table = generator, table

    @classmethod
    def per_prompt(
        cls, seeds: list[int], first_row: int, params: SamplingParams, device: torch.device
    ) -> _Uniforms:
        """The table of a chunk of rows; `seeds` [rows]: each row's prompt seed, `first_row`: the
        chunk's first row within the call (rows are grouped by prompt, `params.n` per prompt)."""
        n, width = params.n, max(1, params.max_new_tokens)
        table = torch.empty((len(seeds), width), dtype=torch.float64)  # [rows, max_new]
        tables: dict[int, torch.Tensor] = {}  # prompt index in the call -> its [n, max_new] table
        for r, seed in enumerate(seeds):
            prompt, sample_index = divmod(first_row + r, n)
            if prompt not in tables:
                generator = torch.Generator().manual_seed(int(seed) % 2**63)
                tables[prompt] = 1.0 - torch.rand(
                    (n, width), generator=generator, dtype=torch.float64
                )
            table[r] = tables[prompt][sample_index]
        return cls(table=table.to(device))

    def draw(self, active: torch.Tensor, t: int) -> torch.Tensor:
        """u [batch, 1] for decode step `t` of the rows `active` [batch] (row index per position)."""
        if self.table is not None:
            return self.table[active, t].unsqueeze(1)
        shape = (active.shape[0], 1)
        return 1.0 - torch.rand(
            shape, generator=self.generator, device=active.device, dtype=torch.float64
        )


def _top_k_top_p(scaled: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """`scaled` with the logits outside the top-k and the top-p nucleus set to -inf."""
    out = scaled
    if 0 < top_k < scaled.shape[-1]:
        kth = torch.topk(out, top_k, dim=-1).values[:, -1:]  # [batch, 1]
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(out, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, -1)
        # Drop a token when the tokens ranked above it already hold top_p of the mass.
        drop = (probs.cumsum(-1) - probs) > top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        out = torch.empty_like(out).scatter_(-1, order, sorted_logits)
    return out


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to and including the stop string that ends first."""
    ends = [i + len(s) for s in stop if s and (i := text.find(s)) >= 0]
    return text[: min(ends)] if ends else text


class _StopChecker:
    """Finds rows whose text just produced a stop string, decoding only each row's last tokens.

    A stop string that appears now and not one step earlier must end inside the newest token, so
    the window holds enough tokens for the longest stop string plus the token that completes it
    (every token decodes to at least one character, partial UTF-8 bytes to a replacement one).
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str]):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.window = max(len(s) for s in self.stop) + 2

    def hits(self, tail: torch.Tensor, *, skip: torch.Tensor) -> torch.Tensor:
        """tail: [active, <= window] last tokens; skip: rows already finished. -> bool [active]"""
        texts = self.tokenizer.batch_decode(tail.tolist(), skip_special_tokens=True)
        skip_rows = skip.tolist()
        hit = [
            not s and any(stop in text for stop in self.stop) for text, s in zip(texts, skip_rows)
        ]
        return torch.tensor(hit, device=tail.device)


class _BufferedLayer(DynamicLayer):
    """A `DynamicLayer` that writes new keys and values into a buffer allocated once for the whole
    generation, instead of concatenating (a copy of the whole cache per token)."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        batch, heads, _, dim = key_states.shape
        self._keys = key_states.new_empty((batch, heads, self.capacity, dim))
        self._values = value_states.new_empty(
            (batch, value_states.shape[1], self.capacity, value_states.shape[-1])
        )
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"KV cache of {self.capacity} positions is full")
        self._keys[:, :, self.length : end] = key_states
        self._values[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.is_initialized:
            self._keys = self._keys.index_select(0, beam_idx)
            self._values = self._values.index_select(0, beam_idx)
            self.keys, self.values = (
                self._keys[:, :, : self.length],
                self._values[:, :, : self.length],
            )


def _new_cache(model: Any, capacity: int) -> Any:
    """A DynamicCache whose plain full-attention layers are `_BufferedLayer`s of `capacity`
    positions; other layer kinds (sliding window, linear attention) keep their own classes."""
    cache = DynamicCache(config=model.config)
    layers = getattr(cache, "layers", None)
    if layers and all(type(layer) is DynamicLayer for layer in layers):
        cache.layers = [_BufferedLayer(capacity) for _ in layers]
    return cache


_SHARED_PREFIX = "reasonlab_shared_prefix"
"""The attention implementation name a decode step runs under while it shares prompt caches."""


def _shared_prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    shared_prefix: _SharedPrefix | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """A transformers attention function for decode steps with a shared prompt cache: `key`,
    `value` hold each row's generated tokens only, `shared_prefix` the prompts'. Without it (the
    probe of a model that drops attention keyword arguments), plain sdpa over `key`, `value`."""
    if shared_prefix is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    shared_prefix.calls += 1
    return shared_prefix.attend(module.layer_idx, query, key, value, scaling), None


AttentionInterface.register(_SHARED_PREFIX, _shared_prefix_attention)


class _SharedPrefix:
    """The prompts' KV cache of a decode loop, one copy per distinct prompt, and the attention of
    a decode step over it plus each row's own generated tokens (`_shared_prefix_attention`).

    Rows are laid out by prompt in slots [prompts, m] (m: the most rows any prompt has), so that
    the scores against a prompt's keys are one matmul for all its rows: its keys and values are
    read once per step, not once per row. Finished rows leave by `select`, as they leave the
    rows' cache.
    """

    def __init__(self, prefill: Any, prompt_mask: torch.Tensor, row_to_prompt: list[int]):
        self.keys = [layer.keys for layer in prefill.layers]  # [prompts, kv_heads, P, head_dim]
        self.values = [layer.values for layer in prefill.layers]
        self.prompt_mask = prompt_mask  # [prompts, P] True at real tokens
        self.calls = 0
        self._layout(row_to_prompt)

    def _layout(self, owner: list[int]) -> None:
        """Slots of the rows: `row_slot` [rows] -> slot, `slot_row` [prompts * m] -> a row (row 0
        for an empty slot, whose results are never read)."""
        prompts = self.prompt_mask.shape[0]
        seen = [0] * prompts
        row_slot = []
        for prompt in owner:
            row_slot.append((prompt, seen[prompt]))
            seen[prompt] += 1
        self.m = max(seen)
        device = self.prompt_mask.device
        self.owner = owner
        self.row_slot = torch.tensor([p * self.m + k for p, k in row_slot], device=device)
        self.slot_row = torch.zeros(prompts * self.m, dtype=torch.long, device=device)
        self.slot_row[self.row_slot] = torch.arange(len(owner), device=device)
        # rows already in slot order (every prompt's m rows, prompt by prompt): no reordering
        self.in_order = len(owner) == prompts * self.m and owner == sorted(owner)

    def select(self, keep: torch.Tensor) -> None:
        """Keep rows `keep` [live rows] (batch positions), in that order."""
        self._layout([self.owner[i] for i in keep.tolist()])

    def decode(self, model: Any, input_ids: torch.Tensor, position_ids: torch.Tensor, cache: dict):
        """One decode step of `model` under this attention (no mask: a row sees all of its
        prompt's real tokens and all of its own tokens)."""
        config = model.config
        previous = config._attn_implementation
        config._attn_implementation = _SHARED_PREFIX
        try:
            return model(
                input_ids=input_ids,
                position_ids=position_ids,
                use_cache=True,
                shared_prefix=self,
                **cache,
            )
        finally:
            config._attn_implementation = previous

    def attend(
        self,
        layer: int,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        scaling: float | None,
    ) -> torch.Tensor:
        """softmax(q . [K_prompt; K_row] * scaling) . [V_prompt; V_row] for one decode step.

        query [b, heads, 1, d]; key, value [b, kv_heads, t, d] (the row's tokens); returns the
        attention output [b, 1, heads, d], the layout transformers' attention functions return.
        """
        prompt_keys, prompt_values = self.keys[layer], self.values[layer]
        prompts, kv_heads, P, d = prompt_keys.shape
        b, heads = query.shape[0], query.shape[1]
        g = heads // kv_heads  # query heads per kv head (GQA)
        scale = d**-0.5 if scaling is None else scaling
        q = query.reshape(b, kv_heads, g, d) * scale  # [b, kv_heads, g, d]
        # against the prompt: the rows of a prompt side by side, [prompts, kv_heads, g * m, d]
        prompt_scores = torch.matmul(self._to_slots(q), prompt_keys.transpose(-1, -2))
        prompt_scores = prompt_scores.masked_fill(
            ~self.prompt_mask[:, None, None, :], float("-inf")
        )  # [prompts, kv_heads, g * m, P]
        own_scores = torch.matmul(q, key.transpose(-1, -2))  # [b, kv_heads, g, t]
        scores = torch.cat(
            [self._to_rows(prompt_scores, g), own_scores], dim=-1
        )  # [b, kv, g, P + t]
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        own = torch.matmul(probs[..., P:], value)  # [b, kv_heads, g, d]
        from_prompt = torch.matmul(
            self._to_slots(probs[..., :P]), prompt_values
        )  # [u, kv, g * m, d]
        return (self._to_rows(from_prompt, g) + own).reshape(b, 1, heads, d)

    def _to_slots(self, x: torch.Tensor) -> torch.Tensor:
        """[b, kv_heads, g, n] per row -> [prompts, kv_heads, g * m, n] per prompt slot."""
        _, kv_heads, g, n = x.shape
        prompts, m = self.prompt_mask.shape[0], self.m
        if not self.in_order:
            x = x.index_select(0, self.slot_row)
        x = x.view(prompts, m, kv_heads, g, n).permute(0, 2, 3, 1, 4)
        return x.reshape(prompts, kv_heads, g * m, n)

    def _to_rows(self, x: torch.Tensor, g: int) -> torch.Tensor:
        """[prompts, kv_heads, g * m, n] per prompt slot -> [b, kv_heads, g, n] per row."""
        prompts, kv_heads, _, n = x.shape
        x = x.view(prompts, kv_heads, g, self.m, n).permute(0, 3, 1, 2, 4)
        x = x.reshape(prompts * self.m, kv_heads, g, n)
        return x if self.in_order else x.index_select(0, self.row_slot)

    @staticmethod
    def supported(model: Any, cache_kw: str) -> bool:
        """Whether `model` can decode with a shared prompt cache: sdpa or eager attention, every
        layer full attention (plain `DynamicLayer`s, made `_BufferedLayer`s), and attention
        keyword arguments passed through to the attention function (a one-token probe)."""
        config = model.config
        if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
            return False
        cache = _new_cache(model, 2)
        layers = getattr(cache, "layers", None)
        if not layers or not all(isinstance(layer, _BufferedLayer) for layer in layers):
            return False
        probe = _SharedPrefix.__new__(_SharedPrefix)
        probe.calls = 0
        probe.attend = lambda layer, query, key, value, scaling: torch.zeros(  # type: ignore
            query.shape[0],
            1,
            query.shape[1],
            query.shape[3],
            dtype=query.dtype,
            device=query.device,
        )
        pad = model.config.pad_token_id or 0
        ids = torch.tensor([[pad]], device=_model_device(model))
        try:
            with torch.inference_mode():
                _SharedPrefix.decode(probe, model, ids, torch.zeros_like(ids), {cache_kw: cache})
        except TypeError:  # a forward that takes no extra keyword arguments
            return False
        return probe.calls == len(layers)


def _model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS ids from the generation config (an int or a list, as in Llama 3) and the tokenizer."""
    ids: list[int] = []
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (gen_eos, model.config.eos_token_id, tokenizer.eos_token_id):
        if value is None:
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v not in ids:
                ids.append(int(v))
    if not ids:
        raise ValueError("neither the model nor the tokenizer defines an EOS token id")
    return ids


def _check_params(params: SamplingParams) -> None:
    problems = []
    if params.n < 1:
        problems.append(f"n={params.n} (must be >= 1)")
    if params.temperature < 0:
        problems.append(f"temperature={params.temperature} (must be >= 0)")
    if not 0 < params.top_p <= 1:
        problems.append(f"top_p={params.top_p} (must be in (0, 1])")
    if params.logprobs_mode not in ("raw", "processed"):
        problems.append(f"logprobs_mode={params.logprobs_mode!r} (must be raw or processed)")
    if params.max_new_tokens < 0:
        problems.append(f"max_new_tokens={params.max_new_tokens} (must be >= 0)")
    if isinstance(params.stop, str):
        problems.append("stop must be a list of strings, not a string")
    if problems:
        raise ValueError("invalid SamplingParams: " + "; ".join(problems))
