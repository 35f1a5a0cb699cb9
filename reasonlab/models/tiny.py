"""Tiny tokenizers and models built from scratch, offline, for the CPU demo and the tests.

Tokenizer (`build_tokenizer`): byte-level BPE trained on the corpus with the `tokenizers` library,
as GPT-2/Qwen tokenizers are, with two choices for small reasoning models:

- digits are split one per token (`Digits(individual_digits=True)`, as LLaMA and Qwen do), so
  arithmetic is done digit by digit instead of over an arbitrary set of number tokens;
- or (`pre_tokenizer="numbers"`) every run of digits is its own piece, so BPE learns whole
  numbers as single tokens (as GPT-2's vocabulary has for frequent numbers): a ~1M-parameter model
  then does `15 - 2 = 13` as one lookup and compares `13 vs 13` token to token, which it gets
  right far more often than digit by digit; numbers too rare for a merge stay split into digits;
- no whitespace pre-split (`ByteLevel(use_regex=False)`), so BPE merges across words and a fixed
  prompt template repeated in every text (the R1-Zero system prompt) shrinks to a few tokens
  (`pre_tokenizer="compact"`, 45 tokens for a countdown prompt instead of 160).

`pre_tokenizer="qwen2"` instead splits words with Qwen2's regex (which also isolates digits) after
NFC normalisation, exactly as transformers' `Qwen2Tokenizer` rebuilds any tokenizer it loads: a
`model_type: qwen2` folder always gets that class from `AutoTokenizer`, so a compact tokenizer
saved next to a Qwen2 model would come back splitting text differently. Hence tiny models default
to the Llama architecture (the same decoder without QKV biases), whose folders load the tokenizer
exactly as saved; `reasonlab.models.save` refuses a folder whose tokenizer would not round-trip.

The tags `<think> </think> <answer> </answer>` are single added tokens that are *not* special:
`decode(..., skip_special_tokens=True)` keeps them, so completion text still carries its format.
`<|endoftext|>` is the special EOS and pad token (as in Qwen2 base models). Any text encodes,
unknown characters falling back to their UTF-8 bytes.

Model (`build_model`): a Qwen2 (or Llama) decoder with the transformers config classes, float32,
with the tokenizer's EOS/pad ids in its config and generation config; `SIZES` names the presets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch

EOS = "<|endoftext|>"
TAGS = ("<think>", "</think>", "<answer>", "</answer>")

QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)
"""The pre-tokenisation regex of Qwen2's tokenizer (and GPT-4's cl100k, with digits one by one)."""

SIZES: dict[str, dict[str, int]] = {
    # ~0.4M parameters with a 1k vocabulary: seconds per hundred steps on a laptop core.
    "tiny": dict(hidden_size=96, num_hidden_layers=3, num_attention_heads=4, intermediate_size=256),
    # ~1.3M parameters: the CPU demo's base model.
    "small": dict(
        hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=384
    ),
    # ~7M parameters: better arithmetic, for a machine with more cores or a GPU.
    "base": dict(
        hidden_size=256, num_hidden_layers=6, num_attention_heads=8, intermediate_size=768
    ),
}


def build_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 1024,
    special_tokens: tuple[str, ...] = (EOS,),
    tags: tuple[str, ...] = TAGS,
    min_frequency: int = 2,
    pre_tokenizer: str = "compact",
) -> Any:
    """Train a byte-level BPE tokenizer on `texts`; returns a `PreTrainedTokenizerFast`.

    `special_tokens[0]` is the EOS and pad token. `vocab_size` counts the 256 byte symbols, the
    special tokens and the tags; merges fill the rest (fewer when the corpus runs out of pairs).
    Saves with `save_pretrained` and loads back with `AutoTokenizer.from_pretrained`.
    pre_tokenizer: "compact" (digits split, merges across words), "numbers" (whole numbers as
    tokens, merges across words) or "qwen2" (see module doc).
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    if not special_tokens:
        raise ValueError("special_tokens must name at least the EOS token")
    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if pre_tokenizer == "compact":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    elif pre_tokenizer == "numbers":
        digits = pre_tokenizers.Split(Regex(r"[0-9]+"), behavior="isolated", invert=False)
        tok.pre_tokenizer = pre_tokenizers.Sequence([digits, byte_level])
    elif pre_tokenizer == "qwen2":
        tok.normalizer = normalizers.NFC()
        split = pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False)
        tok.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    else:
        raise ValueError(f"pre_tokenizer {pre_tokenizer!r} is not one of: compact, numbers, qwen2")
    tok.decoder = decoders.ByteLevel()
    # Tags are added before training so that BPE never learns merges through them.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in tags])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_without_tags(texts, tags), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=special_tokens[0],
        pad_token=special_tokens[0],
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def build_char_tokenizer(tags: tuple[str, ...] = TAGS, pre_tokenizer: str = "compact") -> Any:
    """A byte-level tokenizer with no merges (one token per byte): 256 bytes + EOS + tags."""
    return build_tokenizer([], vocab_size=0, tags=tags, pre_tokenizer=pre_tokenizer)


def _without_tags(texts: Iterable[str], tags: tuple[str, ...]) -> Iterable[str]:
    # The trainer sees the pieces between tags, as encoding will (added tokens split text first),
    # so that it learns no merge through a tag and every merge it learns can apply.
    pattern = re.compile("|".join(re.escape(t) for t in tags)) if tags else None
    for text in texts:
        yield from (pattern.split(text) if pattern else [text])


def build_model(
    tokenizer: Any,
    arch: str = "llama",
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int | None = None,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 512,
    tie_word_embeddings: bool = True,
    rope_theta: float = 10000.0,
    seed: int = 0,
) -> Any:
    """A randomly initialised causal LM (float32) sized for `tokenizer`.

    `num_key_value_heads` defaults to `num_attention_heads` (no GQA); `intermediate_size` to
    4 * `hidden_size`. The global torch RNG is left untouched: weights come from `seed` alone.
    """
    from transformers import (
        AutoModelForCausalLM,
        GenerationConfig,
        LlamaConfig,
        Qwen2Config,
    )

    configs = {"qwen2": Qwen2Config, "llama": LlamaConfig}
    if arch not in configs:
        raise ValueError(f"arch {arch!r} is not one of: {', '.join(configs)}")
    if hidden_size % num_attention_heads:
        raise ValueError(
            f"hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}"
        )
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    if eos_id is None:
        raise ValueError("the tokenizer has no EOS token; build it with build_tokenizer")
    config = configs[arch](
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads or num_attention_heads,
        intermediate_size=intermediate_size or 4 * hidden_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(
            config, dtype=torch.float32, attn_implementation="sdpa"
        )
    model.generation_config = GenerationConfig(
        bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=pad_id, do_sample=True
    )
    return model


def size_kwargs(size: str) -> dict[str, int]:
    """The `build_model` keyword arguments of a named size preset."""
    if size not in SIZES:
        raise ValueError(f"size {size!r} is not one of: {', '.join(SIZES)}")
    return dict(SIZES[size])


__all__ = [
    "EOS",
    "SIZES",
    "TAGS",
    "build_char_tokenizer",
    "build_model",
    "build_tokenizer",
    "size_kwargs",
]
