"""Pretraining: packing, loss masks, schedule, and that a tiny model actually learns a corpus."""

from __future__ import annotations

import json
import random

import pytest
import torch

from reasonlab.models import pretrain as P
from reasonlab.models import tiny
from reasonlab.rollout import SamplingParams
from reasonlab.rollout.hf import HFEngine
from reasonlab.tasks import corpus


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_char_tokenizer()


def test_tokenize_marks_completion_and_eos_as_targets(tokenizer):
    (ids, target), (ids2, target2) = P.tokenize_samples([("ab", "cd"), "xyz"], tokenizer)
    eos = tokenizer.eos_token_id
    assert ids == tokenizer("abcd")["input_ids"] + [eos]
    assert target == [False, False, True, True, True]
    assert ids2[-1] == eos and target2 == [False, True, True, True]
    (_, every), *_ = P.tokenize_samples([("ab", "cd")], tokenizer, loss_on="all")
    assert every == [False, True, True, True, True]
    with pytest.raises(ValueError, match="loss_on"):
        P.tokenize_samples(["a"], tokenizer, loss_on="prompt")
    with pytest.raises(TypeError, match="sample 0"):
        P.tokenize_samples([("a", "b", "c")], tokenizer)


def test_pack_restarts_positions_and_keeps_samples_whole():
    samples = [
        ([1, 2, 3], [False, True, True]),
        ([4, 5], [False, True]),
        ([6, 7, 8, 9], [False] * 4),
    ]
    ids, pos, tgt = P.pack(samples, seq_len=6, pad_id=0, rng=random.Random(0))
    assert ids.shape == pos.shape == tgt.shape and ids.shape[1] == 6
    seen = []
    for row_ids, row_pos in zip(ids.tolist(), pos.tolist()):
        starts = [i for i, p in enumerate(row_pos) if p == 0] + [6]
        seen += [row_ids[a:b] for a, b in zip(starts, starts[1:])]
    for sample, _ in samples:
        assert sample in seen  # each sample sits whole in one row, from position 0
    assert int(tgt.sum()) == 3


def test_bfd_packs_every_sample_once_whole_in_fewer_rows_than_greedy():
    """Best-fit decreasing: each sample once per epoch, whole, from position 0; rows never over
    seq_len; fewer rows than greedy packing of the same samples (sizes where greedy wastes room);
    the same seed gives the same rows and another seed another order."""
    rng = random.Random(5)
    sizes = [rng.choice([3, 4, 5, 6, 9, 11, 14]) for _ in range(120)]
    samples = [
        (list(range(100 * i, 100 * i + n)), [False] + [True] * (n - 1)) for i, n in enumerate(sizes)
    ]
    rows = {}
    for strategy in ("greedy", "bfd"):
        ids, pos, tgt = P.pack(samples, 16, pad_id=-1, rng=random.Random(0), strategy=strategy)
        seen = []
        for row_ids, row_pos in zip(ids.tolist(), pos.tolist()):
            starts = [i for i, p in enumerate(row_pos) if p == 0] + [16]
            seen += [[t for t in row_ids[a:b] if t != -1] for a, b in zip(starts, starts[1:])]
        seen = sorted(s for s in seen if s)
        assert seen == sorted(ids for ids, _ in samples)  # every sample exactly once, whole
        assert int(tgt.sum()) == sum(n - 1 for n in sizes)
        rows[strategy] = len(ids)
    assert sum(sizes) / 16 <= rows["bfd"] < rows["greedy"]
    again = P.pack(samples, 16, pad_id=-1, rng=random.Random(0), strategy="bfd")[0]
    other = P.pack(samples, 16, pad_id=-1, rng=random.Random(1), strategy="bfd")[0]
    assert torch.equal(
        again, P.pack(samples, 16, pad_id=-1, rng=random.Random(0), strategy="bfd")[0]
    )
    assert not torch.equal(again, other)
    with pytest.raises(ValueError, match="greedy or bfd"):
        P.pack(samples, 16, pad_id=-1, rng=random.Random(0), strategy="wrapped")
    stream = P.RowStream(samples, 16, pad_id=-1, seed=0, packing="bfd")
    assert len(stream) == rows["bfd"]


def test_packed_rows_do_not_attend_across_samples(tokenizer):
    """transformers builds a block-diagonal mask from restarting position ids (no attention mask,
    no cache): logits of a sample in a packed row equal its logits alone."""
    model = tiny.build_model(tokenizer, hidden_size=32, num_hidden_layers=2).eval()
    a, b = tokenizer("first one")["input_ids"], tokenizer("second")["input_ids"]
    ids = torch.tensor([a + b])
    pos = torch.tensor([list(range(len(a))) + list(range(len(b)))])
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0]
        alone = model(input_ids=torch.tensor([b]), use_cache=False).logits[0]
    torch.testing.assert_close(packed[len(a) :], alone, atol=1e-5, rtol=0)


SHARED = [
    ("q1:", " aa!"),
    ("q1:", " bbb!"),
    ("q2 long:", " c!"),
    ("q1:", " dd!"),
    ("q2 long:", " e!"),
]


def test_pack_shared_keeps_one_prompt_per_segment_and_every_completion_once(tokenizer):
    data = P.tokenize_samples(SHARED, tokenizer)
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p, _ in SHARED]
    groups = P.group_by_prompt(data, lengths)
    assert [len(g[2]) for g in groups] == [3, 2]
    rows = P.pack_shared(groups, seq_len=16, pad_id=0, rng=random.Random(0))
    seen = []
    for r in range(len(rows)):
        ids, pos, br, seg, tgt = (
            t[r].tolist()
            for t in (rows.input_ids, rows.positions, rows.branch, rows.segment, rows.targets)
        )
        for s in set(seg):
            at = [i for i, x in enumerate(seg) if x == s]
            if not any(tgt[i] for i in at):
                continue  # the row's padding
            prompt = [ids[i] for i in at if br[i] == 0]
            for b in sorted({br[i] for i in at} - {0}):
                toks = [i for i in at if br[i] == b]
                # a completion continues its prompt's positions and follows it in the row
                assert [pos[i] for i in toks] == list(range(len(prompt), len(prompt) + len(toks)))
                assert min(toks) > max(i for i in at if br[i] == 0)
                seen.append(tokenizer.decode(prompt) + tokenizer.decode([ids[i] for i in toks]))
    expected = [p + c + tokenizer.eos_token for p, c in SHARED]
    assert sorted(seen) == sorted(expected)  # every completion exactly once, after its prompt
    # the prompt is stored once per segment: fewer tokens than packing each sample whole
    assert int((rows.targets).sum()) == sum(sum(t) for _, t in data)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_shared_prompt_packing_gives_each_sample_its_own_logits(tokenizer, attn):
    """A completion packed after its shared prompt (and after sibling completions) gets exactly the
    next-token distribution it gets alone, at every target, including its first token (which the
    prompt's last token predicts, not the sibling before it)."""
    model = tiny.build_model(tokenizer, hidden_size=32, num_hidden_layers=2).eval()
    model.config._attn_implementation = attn
    data = P.tokenize_samples(SHARED, tokenizer)
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p, _ in SHARED]
    rows = P.pack_shared(P.group_by_prompt(data, lengths), 32, 0, random.Random(1))
    mask = P.shared_prompt_mask(rows.segment, rows.branch, attn, torch.float32)
    with torch.no_grad():
        logits = model(
            input_ids=rows.input_ids,
            position_ids=rows.positions,
            attention_mask=mask,
            use_cache=False,
        ).logits
        b, t = rows.targets.nonzero(as_tuple=True)
        packed = logits[b, rows.source[b, t]].log_softmax(-1)[
            torch.arange(len(b)), rows.input_ids[b, t]
        ]
        alone = []
        for ids, target in data:
            lp = (
                model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, :-1].log_softmax(-1)
            )
            alone += [lp[i - 1, ids[i]] for i in range(1, len(ids)) if target[i]]
    torch.testing.assert_close(
        packed.sort().values, torch.stack(alone).sort().values, atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="valid: sdpa, eager"):
        P.shared_prompt_mask(rows.segment, rows.branch, "flash_attention_2", torch.float32)


def test_shared_prompt_pretraining_learns_the_same_corpus(tokenizer):
    pairs = [(f"{w}:", f" {w[::-1]}{k}!") for w in ("cat", "dog", "sun") for k in "xy"]
    model = tiny.build_model(tokenizer, hidden_size=48, num_hidden_layers=2, num_attention_heads=4)
    stats = P.pretrain(
        pairs, tokenizer, model, steps=150, batch_size=2, lr=1e-2, seq_len=32, warmup=10,
        log_every=25, seed=0, packing="shared_prompt",
    )  # fmt: skip
    assert stats["final_loss"] < stats["first_loss"] / 10
    # each completion's distinct first letters learned from the prompt: greedy reproduces "x" runs
    out = HFEngine(model, tokenizer).generate(
        ["cat:"], SamplingParams(temperature=0, max_new_tokens=8)
    )
    assert out[0].text in (" tacx!", " tacy!")
    with pytest.raises(ValueError, match="packing must be one of"):
        P.pretrain(pairs, tokenizer, model, steps=1, packing="tree")


def test_schedule_warms_up_then_decays_to_the_floor():
    from reasonlab.optim import lr_factor

    def at(step):
        return lr_factor(step, total_steps=100, warmup_steps=10, min_lr_ratio=0.1)

    assert at(0) == pytest.approx(0.1)
    assert at(9) == pytest.approx(1.0)
    assert at(10) == pytest.approx(1.0)
    assert at(55) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway: cos = 0
    assert at(100) == pytest.approx(0.1)


@pytest.mark.parametrize("packing", ["samples", "shared_prompt"])
def test_pretraining_is_bit_identical_to_before_the_shared_sft_step(packing):
    """Golden: the losses and weights of a short `pretrain_base` run captured before pretraining
    became SFT's `supervised_step` (tests/data/pretrain_golden.json, one torch thread), for each
    packing mode. The demo's base model must not change with the refactor; other torch versions
    may round differently."""
    import hashlib
    import pathlib

    from safetensors.torch import load_file

    from reasonlab.models.base_model import PretrainSettings, pretrain_base

    goldens = json.loads(
        (pathlib.Path(__file__).parent / "data" / "pretrain_golden.json").read_text()
    )
    golden = goldens[packing]
    if torch.__version__ != golden["torch"]:
        pytest.skip(f"golden captured with torch {golden['torch']}, this is {torch.__version__}")
    settings = PretrainSettings(**golden["settings"])
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        record = pretrain_base(
            settings, pathlib.Path(out), eval_examples=0, num_threads=1, log=lambda _: None
        )
        weights = load_file(str(pathlib.Path(out) / "model.safetensors"))
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(weights[name].contiguous().view(torch.uint8).numpy().tobytes())
    assert [float(x).hex() for x in record["train"]["losses"]] == golden["losses"]
    assert record["train"]["tokens"] == golden["tokens"]
    assert digest.hexdigest() == golden["weights_sha256"]


def test_a_tiny_model_learns_its_corpus(tokenizer):
    """Learning, not a smoke test: after training, greedy completions reproduce the corpus."""
    pairs = [(f"{w}:", f" {w[::-1]}!") for w in ("cat", "dog", "sun", "ink", "map", "owl")]
    model = tiny.build_model(tokenizer, hidden_size=48, num_hidden_layers=2, num_attention_heads=4)
    model.train()
    logs = []
    stats = P.pretrain(
        pairs, tokenizer, model, steps=150, batch_size=4, lr=1e-2, seq_len=32, warmup=10,
        log_every=25, seed=0, callback=logs.append,
    )  # fmt: skip
    assert [r["step"] for r in logs] == [25, 50, 75, 100, 125, 150]
    assert stats["final_loss"] < 0.05 < stats["first_loss"] / 20
    assert stats["losses"][-1] < stats["losses"][0]
    out = HFEngine(model, tokenizer).generate(
        [p for p, _ in pairs], SamplingParams(temperature=0, max_new_tokens=8)
    )
    assert [r.text for r in out] == [c for _, c in pairs]
    assert all(r.finish_reason == "stop" for r in out)  # it learned to end with EOS
    assert model.training  # left in the mode it was in


def test_cli_writes_a_loadable_folder_and_reuses_it(tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonlab.cli import main

    out = tmp_path / "base"
    argv = ["pretrain", "--out", str(out), "--size", "tiny", "--steps", "4", "--problems", "12"]
    argv += ["--attempts", "2", "--seq-len", "128", "--batch-size", "2", "--eval", "3"]
    assert main(argv + ["--style", "give_up_rate=0.0"]) == 0
    record = json.loads((out / "pretrain.json").read_text())
    assert record["settings"]["style"] == {"give_up_rate": 0.0}
    assert record["corpus"]["texts"] == 24 and record["train"]["steps"] == 4
    assert set(record["eval"]) >= {"sampled", "greedy"} and record["eval"]["examples"] == 3
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size == len(tokenizer)

    weights = (out / "model.safetensors").stat().st_mtime_ns
    assert main(argv + ["--style", "give_up_rate=0.0"]) == 0  # same settings: reused
    assert "reusing" in capsys.readouterr().out
    assert (out / "model.safetensors").stat().st_mtime_ns == weights
    assert main(argv + ["--style", "give_up_rate=0.5"]) == 0  # other settings: retrained
    assert (
        json.loads((out / "pretrain.json").read_text())["settings_hash"] != record["settings_hash"]
    )

    assert main(argv + ["--style", "patience=3"]) == 2  # a clear user error
    assert "valid keys" in capsys.readouterr().err


# --- the countdown corpus ------------------------------------------------------------------------


def countdown_example(numbers, target):
    from reasonlab.records import Example

    return Example("cd-0", "", target, {"numbers": numbers, "target": target})


def test_apply_keeps_whole_non_negative_results():
    assert corpus.apply(7, "-", 9) is None and corpus.apply(9, "-", 7) == 2
    assert corpus.apply(8, "/", 3) is None and corpus.apply(8, "/", 2) == 4
    assert corpus.apply(3, "/", 0) is None and corpus.apply(6, "*", 7) == 42


def test_partials_and_finishes_cover_every_whole_first_and_last_step():
    pool = corpus.partials([2, 3, 4], max_value=30)
    steps = {(p.left, p.op, p.right) for p in pool}
    assert (2, "+", 3) in steps and (3, "+", 2) not in steps  # a + b once per pair
    assert (4, "-", 2) in steps and (2, "-", 4) not in steps  # no negative partials
    assert (4, "/", 2) in steps and (3, "/", 2) not in steps  # no fractions
    assert all(sorted((p.left, p.right, *p.rest)) == [2, 3, 4] for p in pool)
    assert all(p.value <= 6 for p in corpus.partials([2, 3, 4], max_value=6))
    # the partial on the left when that is whole, else on the right, else left out
    assert corpus.finishes(15, 2) == [("+", True), ("-", True), ("*", True)]
    assert corpus.finishes(2, 8) == [("+", True), ("-", False), ("*", True), ("/", False)]


def test_careful_attempts_compute_right_and_answer_their_last_finish():
    import re

    from reasonlab import tasks
    from reasonlab.verify.arith import evaluate

    task = tasks.get("countdown")
    style = corpus.AttemptStyle(mistake_rate=0, give_up_rate=0.5, max_tries=6)
    rng = random.Random(3)
    for numbers, target in [([2, 3, 4], 20), ([9, 7, 1], 17), ([5, 3, 2], 12), ([6, 4, 7], 18)]:
        example = countdown_example(numbers, target)
        for _ in range(20):
            text = corpus.countdown_attempt(example, rng, style)
            for a, op, b, c in re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", text):
                assert corpus.apply(int(a), op, int(b)) == int(c), text
            answer = text.split("<answer>")[1].split("</answer>")[0]
            last = re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+) vs", text.split("</think>")[0])[-1]
            assert evaluate(answer).value == int(last[3]), text
            assert task.verify(text, example).correct == ("yes." in text), text


def test_a_persistent_careful_solver_always_solves():
    from reasonlab import tasks

    task = tasks.get("countdown")
    style = corpus.AttemptStyle(mistake_rate=0, give_up_rate=0, insight_rate=0.3, max_tries=40)
    rng = random.Random(0)
    for numbers, target in [([2, 3, 4], 20), ([9, 7, 1], 17), ([8, 8, 8], 24)]:
        text = corpus.countdown_attempt(countdown_example(numbers, target), rng, style)
        assert task.verify(text, countdown_example(numbers, target)).correct, text
        assert text.rstrip().endswith("</answer>") and f"{target} vs {target}: yes." in text


def test_style_rates_show_in_the_text():
    rng = random.Random(1)
    example = countdown_example([2, 3, 4], 23)  # unreachable with whole values: every try fails
    quitter = corpus.AttemptStyle(
        give_up_rate=1.0, persistent_rate=0.0, insight_rate=0.0, mistake_rate=0.0
    )
    text = corpus.countdown_attempt(example, rng, quitter)
    assert text.count("Wrong.") == 1 and "Try again" not in text
    stubborn = corpus.AttemptStyle(
        give_up_rate=0.0, insight_rate=0.0, mistake_rate=0.0, max_tries=5
    )
    assert corpus.countdown_attempt(example, rng, stubborn).count("Try again.") == 4
    persistent = corpus.AttemptStyle(give_up_rate=1.0, persistent_rate=1.0, max_tries=5)
    assert corpus.countdown_attempt(example, rng, persistent).count("Try again.") == 4
    sloppy = corpus.AttemptStyle(
        mistake_rate=1.0, verify_rate=1.0, give_up_rate=1.0, persistent_rate=0.0
    )
    assert "Wait, " in corpus.countdown_attempt(countdown_example([2, 3, 4], 20), rng, sloppy)
    with pytest.raises(ValueError, match="give_up_rate"):
        corpus.AttemptStyle(give_up_rate=1.5)


_SAME_SEED_SCRIPT = """
import hashlib, sys
from reasonlab.models import base_model, pretrain, tiny

s = base_model.PretrainSettings(problems=40, attempts=2, steps=12, batch_size=4, seq_len=128)
pairs, _, _ = base_model.build_corpus(s)
tok = tiny.build_tokenizer([p + c for p, c in pairs], vocab_size=400, pre_tokenizer="numbers")
model = tiny.build_model(tok, arch=s.arch, seed=s.seed, **tiny.size_kwargs("tiny"))
pretrain.pretrain(pairs, tok, model, steps=s.steps, batch_size=s.batch_size, seq_len=s.seq_len,
                  seed=s.seed, log_every=100, num_threads=int(sys.argv[1]))
blob = tok.backend_tokenizer.to_str().encode()
blob += b"".join(p.detach().numpy().tobytes() for p in model.parameters())
print(hashlib.sha256(blob).hexdigest())
"""


def test_pretraining_the_same_settings_twice_gives_the_same_weights():
    """Corpus, tokenizer, initial weights and every update are deterministic across processes,
    Python hash seeds and intra-op thread counts (bit for bit on one machine)."""
    import os
    import subprocess
    import sys

    digests = []
    for hash_seed, threads in (("1", "1"), ("2", "2")):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        env.pop("OMP_NUM_THREADS", None)  # the xdist workers' cap would make both runs 1 thread
        out = subprocess.run(
            [sys.executable, "-c", _SAME_SEED_SCRIPT, threads],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        digests.append(out.stdout.strip().splitlines()[-1])
    assert digests[0] == digests[1]
