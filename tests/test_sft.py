"""SFT: data formats and their errors, loss masks, packing == padding, accumulation invariance,
config, the CLI end to end with the held-out audit, and distillation moving a student."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from reasonlab import models
from reasonlab.config import ConfigError, load_config, undocumented_fields
from reasonlab.io import DataError
from reasonlab.models import pretrain as P
from reasonlab.models import tiny
from reasonlab.optim import adamw, scheduler
from reasonlab.sft import data as D
from reasonlab.sft.config import SFTConfig

PAIRS = [
    (f"{w}:", f" {w[::-1]}!") for w in ("cat", "dog", "sun", "ink", "map", "owl", "elk", "fig")
]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_char_tokenizer()


_MODELS: dict = {}


def small_model(tokenizer, seed=0, hidden=32):
    """A fresh tiny model (built once per shape and seed, then copied: building is slow)."""
    key = (seed, hidden)
    if key not in _MODELS:
        _MODELS[key] = tiny.build_model(
            tokenizer, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4, seed=seed
        )
    return copy.deepcopy(_MODELS[key])


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ----------------------------------------------------------------------------- data


def test_formats_are_read_and_masked(tmp_path, tokenizer):
    rows = [
        {"prompt": "ab", "completion": "cd", "source": "x"},
        {"text": "xyz"},
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "yo"},
                {"role": "user", "content": "bye"},
                {"role": "assistant", "content": "ok"},
            ]
        },
        {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}]},
    ]  # fmt: skip
    read = D.read_rows([write_rows(tmp_path / "d.jsonl", rows)])
    assert [r.format for r in read] == [
        "prompt_completion",
        "text",
        "messages",
        "prompt_completion",
    ]
    ids, target = D.tokenize_row(read[0], tokenizer)
    assert ids == tokenizer("abcd")["input_ids"] + [tokenizer.eos_token_id]
    assert target == [False, False, True, True, True]
    assert D.tokenize_row(read[1], tokenizer)[1] == [False, True, True, True]
    # the tiny tokenizer has no chat template: a clear refusal, or the plain one
    with pytest.raises(ValueError, match="data.chat_template=plain"):
        D.tokenize_row(read[2], tokenizer)
    ids, target = D.tokenize_row(read[2], tokenizer, chat_template="plain")
    text = tokenizer.decode(ids)
    trained = tokenizer.decode([i for i, t in zip(ids, target) if t])
    eos = tokenizer.eos_token
    assert text == f"User: hi Assistant: yo{eos} User: bye Assistant: ok{eos}"
    assert trained == f"yo{eos}ok{eos}"  # both assistant turns (and what closes them), no more
    ids, target = D.tokenize_row(read[3], tokenizer, chat_template="plain")
    assert tokenizer.decode([i for i, t in zip(ids, target) if t]) == f"a{eos}"
    everything = D.tokenize_row(
        read[2], tokenizer, chat_template="plain", assistant_only_loss=False
    )
    assert all(everything[1][1:])


def test_parquet_rows_read_like_jsonl(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(
        pa.Table.from_pylist([{"prompt": "a", "completion": "b"}]), tmp_path / "d.parquet"
    )
    (row,) = D.read_rows([tmp_path / "d.parquet"])
    assert row.where.endswith("d.parquet:row 1") and row.fields["completion"] == "b"


@pytest.mark.parametrize(
    "row, message",
    [
        ({"prompt": "a"}, ":2: missing field 'completion'"),
        ({"prompt": "a", "completion": 3}, ":2: fields 'prompt' and 'completion' must both be"),
        ({"text": ["a"]}, ":2: field 'text' must be a string, got list"),
        ({"messages": [{"role": "bot", "content": "x"}]}, ":2: field 'messages[0].role' must be"),
        ({"messages": [{"role": "user", "content": "x"}]}, ":2: field 'messages' has no assistant"),
        ({"question": "a"}, ":2: no training fields: expected 'prompt' and 'completion'"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, row, message):
    path = write_rows(tmp_path / "d.jsonl", [{"text": "fine"}, row])
    with pytest.raises(DataError) as err:
        D.read_rows([path])
    assert str(err.value).startswith(str(path)) and message in str(err.value)


# ----------------------------------------------------------------------------- collation, step


def test_packed_loss_equals_padded_loss(tokenizer):
    """The same samples packed into shared rows (position ids restarting per sample, no attention
    mask) and padded one per row (attention mask): the same per-token mean loss."""
    samples = P.tokenize_samples(PAIRS, tokenizer)
    model = small_model(tokenizer).eval()
    packed = P.RowStream(samples, 40, tokenizer.pad_token_id, packing="samples")
    padded = P.RowStream(samples, 40, tokenizer.pad_token_id, packing="none")
    assert len(packed) < len(padded) == len(samples)
    with torch.no_grad():
        loss_packed, n_packed = P.nll_loss(model, packed.take(len(packed)))
        loss_padded, n_padded = P.nll_loss(model, padded.take(len(padded)))
    assert n_packed == n_padded == sum(sum(t[1:]) for _, t in samples)
    torch.testing.assert_close(loss_packed, loss_padded, rtol=1e-5, atol=1e-6)


def test_accumulation_of_8_rows_of_1_equals_one_batch_of_8(tokenizer):
    """TRL's invariant: the loss is the mean over all loss tokens of the step, so 8 micro-batches
    of 1 row give the weights of 1 batch of 8 (rows of different lengths)."""
    samples = P.tokenize_samples(PAIRS, tokenizer)
    rows = P.RowStream(samples, 40, tokenizer.pad_token_id, packing="none").take(8)
    results = []
    for micro in ([rows], [{k: v[i : i + 1] for k, v in rows.items()} for i in range(8)]):
        model = small_model(tokenizer)
        optimizer = adamw(model, lr=1e-2, weight_decay=0.0)
        out = P.supervised_step(model, optimizer, scheduler(optimizer, total_steps=1), micro)
        results.append((out, torch.cat([p.detach().flatten() for p in model.parameters()])))
    (one, w1), (many, w8) = results
    assert one["tokens"] == many["tokens"]
    assert one["loss"] == pytest.approx(many["loss"], rel=1e-5)
    torch.testing.assert_close(w1, w8, rtol=0, atol=1e-5)  # float round-off, through Adam


def test_row_stream_state_restores_the_order(tokenizer):
    samples = P.tokenize_samples(PAIRS, tokenizer)
    stream = P.RowStream(samples, 12, 0, seed=3, packing="samples")
    for _ in range(5):
        stream.take(2)
    copy = P.RowStream(samples, 12, 0, seed=99, packing="samples")
    copy.load_state_dict(json.loads(json.dumps(stream.state_dict())))
    for _ in range(6):
        a, b = stream.take(2), copy.take(2)
        assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- config


def test_config_fields_are_documented_and_errors_say_where(tmp_path):
    assert undocumented_fields(SFTConfig) == []
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {path: m}\ndata: {train_files: [a.jsonl]}\ntraining:\n  lr: 1\n")
    with pytest.raises(ConfigError, match=r"r.yaml:4: field 'training.lr': unknown key"):
        load_config(SFTConfig, recipe)
    recipe.write_text("model: {path: m}\ndata: {train_files: [a.jsonl]}\ntraining: {loss: kd}\n")
    with pytest.raises(ConfigError, match="needs distill.teacher"):
        load_config(SFTConfig, recipe)
    with pytest.raises(ConfigError, match="model.path is required"):
        load_config(SFTConfig, None, ["data.train_files=[a.jsonl]"])  # no model section at all
    with pytest.raises(ConfigError, match="lr_scheduler_type must be one of constant, cosine"):
        load_config(SFTConfig, recipe, ["distill.teacher=t", "training.lr_scheduler_type=cos"])


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("base") / "model"
    models.save(small_model(tokenizer), tokenizer, folder)
    return folder


def test_cli_trains_audits_and_saves_a_model(tmp_path, model_dir, tokenizer, capsys):
    """`reasonlab sft`: a countdown row whose problem is held out is skipped (by its key), the
    loss falls, and model/ is a standard folder that loads."""
    from reasonlab import tasks
    from reasonlab.cli import main
    from reasonlab.tasks import split

    task = tasks.get("countdown")
    params = {
        "num_numbers": 3,
        "min_number": 1,
        "max_number": 9,
        "min_target": 10,
        "max_target": 30,
    }
    held = split.problems(task, 2, seed=7, held_out=True, **params)
    rows = [{"prompt": p, "completion": c} for p, c in PAIRS]
    rows += [{"prompt": "q", "completion": " a!", "example": ex.to_dict()} for ex in held]
    write_rows(tmp_path / "train.jsonl", rows)
    write_rows(tmp_path / "eval.jsonl", [{"prompt": p, "completion": c} for p, c in PAIRS[:2]])
    argv = [
        "sft", f"model.path={model_dir}", f"data.train_files=[{tmp_path / 'train.jsonl'}]",
        f"data.eval_files=[{tmp_path / 'eval.jsonl'}]", "data.max_length=32",
        "training.max_steps=30", "training.per_device_train_batch_size=2",
        "training.learning_rate=1e-2", "training.warmup_steps=3", "task.name=countdown",
        f"task.params={json.dumps(params)}", "task.eval_examples=2", "task.max_new_tokens=4",
        "run.logging_steps=10", "run.eval_steps=15", "run.progress=false", "run.num_threads=1",
        "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "rows 8 trained, 2 held-out skipped" in out
    run = tmp_path / "run"
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [json.loads(x) for x in (run / "eval.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [10, 20, 30]
    assert [e["step"] for e in evals] == [0, 15, 30]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"] / 2
    assert "eval/accuracy" in evals[-1]
    assert json.loads((run / "data.json").read_text())["held_out"] == 2
    reloaded, reloaded_tokenizer = models.load(run / "model")
    assert reloaded.config.vocab_size == len(reloaded_tokenizer)
    assert main(argv) == 2  # the run folder is taken: a clear error, no traceback
    assert "already holds a run" in capsys.readouterr().err


def test_cli_bad_data_is_a_clear_error(tmp_path, model_dir, capsys):
    from reasonlab.cli import main

    write_rows(tmp_path / "train.jsonl", [{"prompt": "a", "completion": "b"}, {"prompt": 1}])
    argv = ["sft", f"model.path={model_dir}", f"data.train_files=[{tmp_path / 'train.jsonl'}]"]
    assert main(argv + ["--out", str(tmp_path / "run")]) == 2
    assert "train.jsonl:2: missing field 'completion'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- distillation


def kl_to_teacher(student, teacher, batch) -> float:
    from reasonlab.sft.losses import distill_loss

    with torch.no_grad():
        return float(distill_loss(student, batch, teacher=teacher, beta=0.0, temperature=1.0)[0])


@pytest.mark.parametrize("loss", ["kd", "gkd"])
def test_a_distilled_student_moves_toward_its_teacher(tmp_path, tokenizer, loss):
    """Teacher: a model trained on the pairs. Student: a fresh model, distilled on half the
    prompts; its KL to the teacher on the *other* prompts' completions drops by more than a
    quarter in 40 steps (measured: 5.45 -> 3.37 kd, 3.23 gkd)."""
    from reasonlab.sft.config import SFTConfig
    from reasonlab.sft.trainer import SFTTrainer

    teacher = small_model(tokenizer, seed=1, hidden=48)
    P.pretrain(PAIRS, tokenizer, teacher, steps=60, batch_size=4, lr=1e-2, seq_len=32, warmup=5)
    train, held = PAIRS[:4], PAIRS[4:]
    write_rows(tmp_path / "train.jsonl", [{"prompt": p, "completion": c} for p, c in train])
    student = small_model(tokenizer, seed=2)
    held_batch = P.RowStream(P.tokenize_samples(held, tokenizer), 32, 0, packing="none").take(4)
    before = kl_to_teacher(student, teacher, held_batch)
    cfg = load_config(
        SFTConfig,
        None,
        [
            "model.path=unused", f"data.train_files=[{tmp_path / 'train.jsonl'}]",
            "data.max_length=32", "data.packing=false", f"training.loss={loss}",
            "distill.teacher=unused", "distill.max_new_tokens=6", "distill.lmbda=0.5",
            "training.max_steps=40", "training.per_device_train_batch_size=4",
            "training.learning_rate=1e-2", "run.progress=false", f"run.out_dir={tmp_path / 'run'}",
        ],
    )  # fmt: skip
    SFTTrainer(cfg, model=student, tokenizer=tokenizer, teacher=teacher, log=lambda _: None).train()
    after = kl_to_teacher(student, teacher, held_batch)
    assert after < 0.75 * before, (before, after)


def test_distillation_refuses_a_teacher_with_another_tokenizer(tokenizer):
    from reasonlab.sft.losses import check_same_tokenizer

    other = copy.deepcopy(tokenizer)
    other.add_tokens(["<other>"])
    with pytest.raises(ValueError, match="share a tokenizer"):
        check_same_tokenizer(tokenizer, other)
    check_same_tokenizer(tokenizer, copy.deepcopy(tokenizer))


def test_generalized_jsd_limits():
    from reasonlab.sft.losses import generalized_jsd

    torch.manual_seed(0)
    s, t = torch.randn(5, 7), torch.randn(5, 7)
    forward = generalized_jsd(s, t, 0.0, 1.0)
    reverse = generalized_jsd(s, t, 1.0, 1.0)
    ps, pt = s.softmax(-1), t.softmax(-1)
    torch.testing.assert_close(forward, (pt * (pt.log() - ps.log())).sum(-1))
    torch.testing.assert_close(reverse, (ps * (ps.log() - pt.log())).sum(-1))
    mid = generalized_jsd(s, t, 0.5, 1.0)
    m = 0.5 * (ps + pt)
    expected = 0.5 * (pt * (pt.log() - m.log())).sum(-1) + 0.5 * (ps * (ps.log() - m.log())).sum(-1)
    torch.testing.assert_close(mid, expected)
    assert torch.all(generalized_jsd(s, s, 0.5, 2.0).abs() < 1e-6)


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).resolve().parents[1] / "configs").glob("sft_*.yaml")),
    ids=lambda p: p.stem,
)
def test_every_sft_recipe_loads_and_validates(path):
    from reasonlab.config import load_config
    from reasonlab.sft.config import SFTConfig

    cfg = load_config(SFTConfig, str(path), [])
    cfg.validate()  # field checks only: the recipe's model and data folders are the user's
    assert cfg.data.train_files and cfg.model.path
