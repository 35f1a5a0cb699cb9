"""HFEngine: grouping, left padding, logprobs, stop strings, EOS, seeds, finish reasons."""

from __future__ import annotations

import pytest
import torch

from reasonlab.models import tiny
from reasonlab.rollout import Prompt, SamplingParams, get_engine
from reasonlab.rollout.hf import HFEngine, _categorical, cut_at_stop

PROMPTS = ["<think> 12 + 7 =", "a", "The quick brown fox jumps over", "x y z <answer>"]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_char_tokenizer()


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def model(request, tokenizer):
    return tiny.build_model(
        tokenizer, arch=request.param, hidden_size=32, num_hidden_layers=2, seed=3
    )


def greedy(n_tokens: int, **kw) -> SamplingParams:
    return SamplingParams(temperature=0, max_new_tokens=n_tokens, **kw)


def teacher_forced_logprobs(model, rollout, temperature: float) -> torch.Tensor:
    ids = torch.tensor([rollout.prompt_ids + rollout.completion_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(rollout.prompt_ids) - 1 : -1] / temperature
    targets = torch.tensor(rollout.completion_ids)[:, None]
    return torch.log_softmax(logits, -1).gather(1, targets).squeeze(1)


def engine_with_eos(model, tokenizer, extra_eos: int) -> HFEngine:
    """An engine that also stops on `extra_eos` (a token the random model does produce)."""
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, extra_eos]
    try:
        return HFEngine(model, tokenizer)
    finally:
        model.generation_config.eos_token_id = tokenizer.eos_token_id


def test_grouped_by_prompt_with_unpadded_prompt_ids(model, tokenizer):
    prompts = [Prompt("hello", "ex-a"), Prompt("a much longer prompt", "ex-b")]
    out = HFEngine(model, tokenizer).generate(
        prompts, SamplingParams(n=3, max_new_tokens=5, seed=0)
    )
    assert [r.example_id for r in out] == ["ex-a"] * 3 + ["ex-b"] * 3
    for r in out:
        prompt = prompts[0] if r.example_id == "ex-a" else prompts[1]
        assert r.prompt_ids == tokenizer(prompt.text)["input_ids"]  # no pad tokens
        assert r.prompt_text == prompt.text
        assert len(r.logprobs) == len(r.completion_ids) <= 5
        assert all(lp <= 0 for lp in r.logprobs)
    # plain strings get their index as example id
    assert [r.example_id for r in HFEngine(model, tokenizer).generate(["p", "q"], greedy(2))] == [
        "0",
        "1",
    ]


def test_left_padded_batch_equals_each_prompt_alone(model, tokenizer):
    engine = HFEngine(model, tokenizer)
    batch = engine.generate(PROMPTS, greedy(16))
    for prompt, got in zip(PROMPTS, batch):
        alone = engine.generate([prompt], greedy(16))[0]
        assert got.completion_ids == alone.completion_ids
        assert got.logprobs == pytest.approx(alone.logprobs, abs=1e-4)
    # chunked into batches of 3 rows: same result
    chunked = HFEngine(model, tokenizer, batch_size=3).generate(PROMPTS, greedy(16))
    assert [r.completion_ids for r in chunked] == [r.completion_ids for r in batch]


@pytest.mark.parametrize("top_p,top_k", [(1.0, 0), (0.9, 20)])
def test_logprobs_match_teacher_forcing(model, tokenizer, top_p, top_k):
    params = SamplingParams(
        n=3, temperature=0.7, top_p=top_p, top_k=top_k, max_new_tokens=20, seed=1
    )
    for r in HFEngine(model, tokenizer).generate(PROMPTS, params):
        expected = teacher_forced_logprobs(model, r, 0.7)
        torch.testing.assert_close(torch.tensor(r.logprobs), expected, atol=1e-4, rtol=0)


def test_rows_finishing_at_different_steps(model, tokenizer):
    """Rows that stop early leave the batch; the others must go on exactly as if alone."""
    plain = HFEngine(model, tokenizer).generate(
        PROMPTS, SamplingParams(n=4, max_new_tokens=24, seed=2)
    )
    # stop on the commonest sampled token: rows then finish at many different steps
    counts = torch.bincount(torch.tensor([t for r in plain for t in r.completion_ids]))
    engine = engine_with_eos(model, tokenizer, int(counts.argmax()))
    out = engine.generate(PROMPTS, SamplingParams(n=4, temperature=1.0, max_new_tokens=24, seed=2))
    lengths = {len(r.completion_ids) for r in out}
    assert len(lengths) > 3, "the test needs rows of many lengths"
    for r in out:
        torch.testing.assert_close(
            torch.tensor(r.logprobs), teacher_forced_logprobs(model, r, 1.0), atol=1e-4, rtol=0
        )
    for prompt in PROMPTS:  # greedy rows too
        alone = engine.generate([prompt], greedy(24))[0]
        assert (
            engine.generate(PROMPTS, greedy(24))[PROMPTS.index(prompt)].completion_ids
            == alone.completion_ids
        )


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_shared_prompt_cache_samples_what_copied_caches_do(tokenizer, attn):
    """Decode steps that read one KV cache per prompt (shared-prefix attention) sample the same
    tokens as decoding with the prompt's cache copied to each of its rows, with logprobs equal to
    float rounding: grouped-query heads, left-padded prompts of several lengths, a prompt given
    twice, and rows that finish (and leave the batch) at different steps."""
    model = tiny.build_model(
        tokenizer, arch="qwen2", hidden_size=32, num_hidden_layers=2, num_key_value_heads=2, seed=4
    )
    model.config._attn_implementation = attn
    prompts = PROMPTS + [PROMPTS[0]]
    params = SamplingParams(n=5, temperature=1.0, max_new_tokens=24, seed=3)
    plain = HFEngine(model, tokenizer).generate(prompts, params)
    counts = torch.bincount(torch.tensor([t for r in plain for t in r.completion_ids]))
    shared = engine_with_eos(model, tokenizer, int(counts.argmax()))
    copied = engine_with_eos(model, tokenizer, int(counts.argmax()))
    copied._shares_prefix = False  # the copy-per-row decode
    assert shared._can_share_prefix()
    a, b = shared.generate(prompts, params), copied.generate(prompts, params)
    assert len({len(r.completion_ids) for r in a}) > 3, "the test needs rows of many lengths"
    assert [r.completion_ids for r in a] == [r.completion_ids for r in b]
    assert [r.finish_reason for r in a] == [r.finish_reason for r in b]
    for x, y in zip(a, b):
        torch.testing.assert_close(
            torch.tensor(x.logprobs), torch.tensor(y.logprobs), atol=1e-5, rtol=0
        )
        expected = teacher_forced_logprobs(model, x, 1.0)
        torch.testing.assert_close(torch.tensor(x.logprobs), expected, atol=1e-4, rtol=0)


def test_eos_ends_a_row_and_stays_out_of_the_text(model, tokenizer):
    base = HFEngine(model, tokenizer).generate(["hello"], greedy(12))[0]
    stop_token = base.completion_ids[4]
    first = base.completion_ids.index(stop_token)
    out = engine_with_eos(model, tokenizer, stop_token).generate(["hello"], greedy(12))[0]
    assert out.completion_ids == base.completion_ids[: first + 1]  # EOS kept in the ids
    assert out.finish_reason == "stop"
    assert out.text == tokenizer.decode(base.completion_ids[:first])


def test_max_new_tokens_gives_length(model, tokenizer):
    out = HFEngine(model, tokenizer).generate(PROMPTS, greedy(7))
    for r in out:
        assert tokenizer.eos_token_id not in r.completion_ids  # precondition for this model
        assert r.finish_reason == "length" and len(r.completion_ids) == 7
    empty = HFEngine(model, tokenizer).generate(["a"], greedy(0))[0]
    assert empty.completion_ids == [] and empty.finish_reason == "length"


def test_stop_string_cuts_text_and_ids(model, tokenizer):
    engine = HFEngine(model, tokenizer)
    base = engine.generate(["hello"], greedy(20))[0]
    stop = base.text[6:8]  # two characters the model does produce
    end = base.text.find(stop) + len(stop)
    out = engine.generate(["hello"], greedy(20, stop=[stop, "never-produced"]))[0]
    assert out.finish_reason == "stop"
    assert out.text == base.text[:end] and out.text.endswith(stop)
    assert out.completion_ids == base.completion_ids[: len(out.completion_ids)]
    assert tokenizer.decode(out.completion_ids[:-1]).find(stop) < 0  # not one token too late
    assert cut_at_stop("a </answer> b </answer>", ["</answer>", "b"]) == "a </answer>"


def test_seeds_make_samples_reproducible(model, tokenizer):
    engine = HFEngine(model, tokenizer)
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=10, seed=7)
    a = [r.completion_ids for r in engine.generate(PROMPTS, params)]
    b = [r.completion_ids for r in engine.generate(PROMPTS, params)]
    params.seed = 8
    c = [r.completion_ids for r in engine.generate(PROMPTS, params)]
    assert a == b and a != c
    # top_k=1 is greedy whatever the temperature
    top1 = engine.generate(
        PROMPTS, SamplingParams(temperature=1.5, top_k=1, max_new_tokens=10, seed=0)
    )
    assert [r.completion_ids for r in top1] == [
        r.completion_ids for r in engine.generate(PROMPTS, greedy(10))
    ]


def test_prompt_seeds_make_samples_independent_of_the_batch(model, tokenizer):
    """With `Prompt.seed`, a prompt samples the same responses alone, with other prompts, in
    another order or in chunks of rows that split its group (what a data-parallel rank holding
    part of the prompts needs)."""
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=12, seed=5)
    prompts = [Prompt(text, f"ex-{i}", seed=100 + i) for i, text in enumerate(PROMPTS)]
    together = HFEngine(model, tokenizer).generate(prompts, params)
    by_prompt = {p.example_id: [] for p in prompts}
    for r in together:
        by_prompt[r.example_id].append(r.completion_ids)
    for prompt in prompts:
        alone = HFEngine(model, tokenizer).generate([prompt], params)
        assert [r.completion_ids for r in alone] == by_prompt[prompt.example_id]
    shuffled = HFEngine(model, tokenizer, batch_size=2).generate(prompts[::-1], params)
    assert [r.completion_ids for r in shuffled] == [
        ids for p in prompts[::-1] for ids in by_prompt[p.example_id]
    ]
    # the n samples of a prompt are different draws, and the seed is what decides them
    assert len({tuple(ids) for ids in by_prompt["ex-0"]}) > 1
    reseeded = [Prompt(p.text, p.example_id, seed=p.seed + 1) for p in prompts]
    other = HFEngine(model, tokenizer).generate(reseeded, params)
    assert [r.completion_ids for r in other] != [r.completion_ids for r in together]
    with pytest.raises(ValueError, match="prompt 1 has no seed"):
        HFEngine(model, tokenizer).generate([prompts[0], Prompt("b")], params)


def test_categorical_draws_follow_the_probabilities():
    probs = torch.tensor([[0.1, 0.2, 0.0, 0.7]]).repeat(40_000, 1)
    u = 1.0 - torch.rand((40_000, 1), generator=torch.Generator().manual_seed(0))
    draws = _categorical(probs, u)
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert freq[2] == 0
    torch.testing.assert_close(freq, probs[0], atol=0.01, rtol=0)


def test_training_mode_restored_and_weights_synced(model, tokenizer):
    engine = HFEngine(model, tokenizer)
    model.train()
    engine.generate(["a"], greedy(2))
    assert model.training
    model.eval()
    other = tiny.build_model(tokenizer, arch=model.config.model_type, hidden_size=32, seed=99)
    separate = HFEngine(other, tokenizer)
    separate.update_weights(model)
    assert torch.equal(other.lm_head.weight, model.lm_head.weight)
    assert (
        separate.generate(PROMPTS, greedy(5))[0].completion_ids
        == engine.generate(PROMPTS, greedy(5))[0].completion_ids
    )


def test_bad_params_and_engines(model, tokenizer):
    engine = get_engine("hf", model=model, tokenizer=tokenizer, batch_size=4)
    with pytest.raises(ValueError, match="top_p"):
        engine.generate(["a"], SamplingParams(top_p=0))
    with pytest.raises(ValueError, match="list of strings"):
        engine.generate(["a"], SamplingParams(stop="</answer>"))
    with pytest.raises(ValueError, match="no tokens"):
        engine.generate([""], greedy(2))
    with pytest.raises((ImportError, ValueError), match="vllm|vLLM"):
        get_engine("vllm", model=model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="valid names: hf"):
        get_engine("sglang", model=model, tokenizer=tokenizer)
