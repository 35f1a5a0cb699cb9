"""Tiny tokenizer and model: round trips through text and through a saved folder."""

from __future__ import annotations

import json

import pytest
import torch

from reasonlab import models
from reasonlab.models import tiny

CORPUS = [
    "A conversation between User and Assistant. User: add 12 and 7. Assistant: <think> 12 + 7 = 19."
    f" </think> <answer> {i} + 7 </answer>"
    for i in range(40)
]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer(CORPUS, vocab_size=400)


def test_round_trip_keeps_tags_digits_and_any_unicode(tokenizer):
    text = "<think> 12 + 7 = 19, wait: 19. </think> <answer> 12 + 7 </answer> héllo 世界 🙂\n\t"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    tokens = tokenizer.convert_ids_to_tokens(ids)
    for tag in tiny.TAGS:  # each tag is one token, and survives skip_special_tokens
        assert tag in tokens
    assert "1" in tokens and "9" in tokens and not any(t.isdigit() and len(t) > 1 for t in tokens)


def test_eos_is_special_and_dropped_from_text(tokenizer):
    ids = tokenizer("3 + 4" + tiny.EOS)["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id == tokenizer.pad_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "3 + 4"


def test_a_repeated_template_compresses_to_few_tokens(tokenizer):
    template = "A conversation between User and Assistant. User: add "
    assert len(tokenizer(template)["input_ids"]) <= 2
    assert len(template) > 40


def test_char_tokenizer_is_one_token_per_byte():
    tok = tiny.build_char_tokenizer()
    assert len(tok) == 256 + 1 + len(tiny.TAGS)
    text = "ab 1é"
    assert len(tok(text)["input_ids"]) == len(text.encode())
    assert tok.decode(tok(text)["input_ids"]) == text


def test_build_save_load_round_trip(tokenizer, tmp_path):
    model = tiny.build_model(tokenizer, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    assert model.config.vocab_size == len(tokenizer)
    assert (
        model.config.eos_token_id == model.generation_config.eos_token_id == tokenizer.eos_token_id
    )
    assert next(model.parameters()).dtype == torch.float32
    out = models.save(model, tokenizer, tmp_path / "m")
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left behind

    loaded, tok2 = models.load(out, dtype="float32")
    assert tok2.padding_side == "left" and tok2.pad_token_id == tokenizer.pad_token_id
    text = "<think> 3 + 4 = 7 </think> <answer> 3 + 4 </answer>"
    assert tok2(text)["input_ids"] == tokenizer(text)["input_ids"]
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)

    # plain transformers reads it too
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "llama"
    # save over an existing folder replaces it
    models.save(model, tokenizer, out)
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"


def test_build_is_seeded_and_leaves_global_rng_alone(tokenizer):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = tiny.build_model(tokenizer, hidden_size=32, seed=5)
    after = torch.rand(1)
    b = tiny.build_model(tokenizer, hidden_size=32, seed=5)
    c = tiny.build_model(tokenizer, hidden_size=32, seed=6)
    assert torch.equal(before, after)
    wa, wb, wc = (m.model.embed_tokens.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_qwen2_arch_and_bad_arguments(tokenizer):
    model = tiny.build_model(tokenizer, arch="qwen2", hidden_size=32, num_key_value_heads=2)
    assert model.config.model_type == "qwen2" and model.config.num_key_value_heads == 2
    assert tiny.build_model(tokenizer, hidden_size=32).config.model_type == "llama"  # the default
    with pytest.raises(ValueError, match="qwen2"):
        tiny.build_model(tokenizer, arch="gpt9")
    with pytest.raises(ValueError, match="multiple"):
        tiny.build_model(tokenizer, hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="tiny"):
        tiny.size_kwargs("huge")


def test_load_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        models.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a model folder"):
        models.load(tmp_path / "empty")
    with pytest.raises(ValueError, match="bfloat16"):
        models.load(tmp_path / "empty", dtype="fp8")


def test_qwen2_folders_need_a_qwen2_style_tokenizer(tmp_path):
    """transformers >= 5 loads every qwen2 folder's tokenizer as Qwen2Tokenizer (its own regex
    split): a compact tokenizer would come back different, so save refuses (on 4.x it round-trips
    and is saved); a qwen2-style one round-trips on both."""
    import transformers

    compact = tiny.build_tokenizer(CORPUS, vocab_size=400)
    qwen_model = tiny.build_model(compact, arch="qwen2", hidden_size=32)
    if int(transformers.__version__.split(".")[0]) >= 5:
        with pytest.raises(ValueError, match="arch='llama'"):
            models.save(qwen_model, compact, tmp_path / "bad")
        assert not (tmp_path / "bad").exists() and not list(tmp_path.iterdir())

    qwen_tok = tiny.build_tokenizer(CORPUS, vocab_size=400, pre_tokenizer="qwen2")
    model = tiny.build_model(qwen_tok, arch="qwen2", hidden_size=32)
    _, loaded = models.load(models.save(model, qwen_tok, tmp_path / "good"))
    text = "<think> 12 + 7 = 19 </think> <answer> 12 + 7 </answer> déjà"
    assert loaded(text)["input_ids"] == qwen_tok(text)["input_ids"]
    assert loaded.decode(loaded(text)["input_ids"]) == text
