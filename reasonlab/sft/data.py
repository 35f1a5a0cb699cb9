"""SFT data: rows in TRL's dataset formats, read from JSONL or parquet, tokenised with loss masks.

Formats (TRL's names; `data.format: auto` picks one per row by its fields):

- `prompt_completion`: `prompt` and `completion`, both strings (standard), or both lists of chat
  messages (conversational: the prompt rendered with the chat template and its generation prompt,
  the completion the rest of the rendered conversation). `reasonlab sample` writes these rows.
- `messages`: a list of `{"role", "content"}` rendered with the tokenizer's chat template.
- `text`: plain text, language modelling (every token is a target).

Loss masks (`tokenize_row`): a sample is `(token ids, target mask)`, the form `models.pretrain.pack`
and `pad` take. With `completion_only_loss` (default) only the completion and its EOS are targets;
with `assistant_only_loss` (default) only the assistant turns of `messages` are (each turn's span
found by rendering the conversation up to it: the text of `messages[:i]` with the generation
prompt is a prefix of the text of `messages[:i+1]`, and the rest is turn i; each span is tokenised
on its own, so the boundaries are exact). A tokenizer without a chat template is refused with a
clear error unless `chat_template` gives one (`"plain"`: `PLAIN_CHAT_TEMPLATE`).

Rows may carry the problem they solve, for the held-out audit: `key` (a `Task.key`) or `example`
(an `Example` as a dict, as `reasonlab sample` and the evaluation store write it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonlab.io import DataError, enumerate_jsonl
from reasonlab.models.pretrain import tokenize_samples

FORMATS = ("auto", "prompt_completion", "messages", "text")

PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if not loop.first %} {% endif %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{% if messages %} {% endif %}Assistant: {% endif %}"
)
"""`Role: content` turns separated by spaces (tiny tokenizers have no newline), an EOS after each
assistant turn: for tiny tokenizers, which have no chat template of their own."""


@dataclass
class Row:
    """One training row as read, before tokenisation."""

    where: str
    """`file:line` (JSONL) or `file:row N` (parquet), for errors."""
    format: str
    """prompt_completion, messages or text."""
    fields: dict[str, Any]
    """The row's own fields (prompt, completion, messages, text, key, example, ...)."""

    def key(self, task: Any) -> str | None:
        """The problem key for the held-out audit: the `key` field, or `task.key` of the
        `example` field; None when the row names neither."""
        from reasonlab.records import Example

        if isinstance(self.fields.get("key"), str):
            return self.fields["key"]
        example = self.fields.get("example")
        if isinstance(example, dict):
            try:
                return task.key(Example.from_dict(example))
            except (KeyError, TypeError, ValueError) as err:
                raise DataError(
                    f"{self.where}: field 'example' is not a {task.name} example: {err!r}"
                ) from None
        return None


def read_rows(
    paths: Sequence[str | os.PathLike], format: str = "auto", limit: int | None = None
) -> list[Row]:
    """Rows of JSONL (`.jsonl`, `.json` lines) or parquet (`.parquet`) files, checked: each has the
    fields of its format with the right types (`DataError` naming file:line and field)."""
    if format not in FORMATS:
        raise ValueError(f"data format must be one of {', '.join(FORMATS)}; got {format!r}")
    rows: list[Row] = []
    for path in paths:
        for where, fields in _records(Path(path)):
            rows.append(Row(where, _format_of(fields, where, format), fields))
            _check(rows[-1])
            if limit is not None and len(rows) >= limit:
                return rows
    return rows


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(
                f"{path}: reading parquet needs pyarrow (pip install pyarrow), or convert the "
                "file to JSONL"
            ) from None
        for i, record in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield f"{path}:row {i}", record
        return
    for lineno, record in enumerate_jsonl(path):
        yield f"{path}:{lineno}", record


def _format_of(fields: dict[str, Any], where: str, wanted: str) -> str:
    if wanted != "auto":
        return wanted
    if "messages" in fields:
        return "messages"
    if "prompt" in fields or "completion" in fields:
        return "prompt_completion"
    if "text" in fields:
        return "text"
    raise DataError(
        f"{where}: no training fields: expected 'prompt' and 'completion', 'messages', or 'text' "
        f"(got {', '.join(sorted(fields)) or 'none'})"
    )


def _check_messages(value: Any, where: str, field: str) -> None:
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: field {field!r} must be a non-empty list of messages")
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise DataError(
                f"{where}: field '{field}[{i}]' must be an object with a string 'content'"
            )
        if message.get("role") not in ("system", "user", "assistant", "tool"):
            raise DataError(
                f"{where}: field '{field}[{i}].role' must be system, user, assistant or tool; "
                f"got {message.get('role')!r}"
            )


def _check(row: Row) -> None:
    f, where = row.fields, row.where
    if row.format == "text":
        if not isinstance(f.get("text"), str):
            raise DataError(f"{where}: field 'text' must be a string, got {_kind(f.get('text'))}")
    elif row.format == "messages":
        _check_messages(f.get("messages"), where, "messages")
        if not any(m["role"] == "assistant" for m in f["messages"]):
            raise DataError(f"{where}: field 'messages' has no assistant turn to train on")
    else:
        for name in ("prompt", "completion"):
            if name not in f:
                raise DataError(f"{where}: missing field {name!r}")
        prompt, completion = f["prompt"], f["completion"]
        if isinstance(prompt, str) and isinstance(completion, str):
            return
        if isinstance(prompt, list) and isinstance(completion, list):
            _check_messages(prompt, where, "prompt")
            _check_messages(completion, where, "completion")
            return
        raise DataError(
            f"{where}: fields 'prompt' and 'completion' must both be strings or both lists of "
            f"messages; got {_kind(prompt)} and {_kind(completion)}"
        )


def _kind(value: Any) -> str:
    return "missing" if value is None else type(value).__name__


# ----------------------------------------------------------------------------- tokenising


def chat_template_of(tokenizer: Any, chat_template: str | None) -> str:
    """The jinja chat template to render messages with: `chat_template` ("plain", a file, or the
    template text) or else the tokenizer's own; a clear error when there is none."""
    if chat_template == "plain":
        return PLAIN_CHAT_TEMPLATE
    if chat_template:
        path = Path(chat_template)
        return path.read_text(encoding="utf-8") if path.suffix == ".jinja" else chat_template
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    raise ValueError(
        "the tokenizer has no chat template, so chat rows cannot be rendered: set "
        "data.chat_template=plain (Role: content lines) or to a .jinja file"
    )


def _render(tokenizer: Any, messages: list[dict[str, Any]], template: str, generation: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=generation
    )


def _chat_spans(
    tokenizer: Any, messages: list[dict[str, Any]], template: str, where: str
) -> list[tuple[str, bool]]:
    """The rendered conversation cut into (text, is an assistant turn) pieces."""
    full = _render(tokenizer, messages, template, False)
    pieces: list[tuple[str, bool]] = []
    done = 0  # characters of `full` already in pieces
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], template, True) if i else ""
        upto = _render(tokenizer, messages[: i + 1], template, False)
        if not (full.startswith(upto) and upto.startswith(before) and len(before) >= done):
            raise DataError(
                f"{where}: the chat template does not render conversations prefix by prefix, so "
                f"the assistant turn messages[{i}] cannot be located; use data.chat_template"
            )
        pieces += [(full[done : len(before)], False), (upto[len(before) :], True)]
        done = len(upto)
    pieces.append((full[done:], False))
    return [(text, target) for text, target in pieces if text]


def tokenize_row(
    row: Row,
    tokenizer: Any,
    *,
    completion_only_loss: bool = True,
    assistant_only_loss: bool = True,
    chat_template: str | None = None,
) -> tuple[list[int], list[bool]]:
    """`(token ids, target mask)` of one row (see the module doc for the masks)."""
    f = row.fields
    if row.format == "text":
        return tokenize_samples([f["text"]], tokenizer, loss_on="all")[0]
    if row.format == "prompt_completion" and isinstance(f["prompt"], str):
        loss_on = "completion" if completion_only_loss else "all"
        return tokenize_samples([(f["prompt"], f["completion"])], tokenizer, loss_on=loss_on)[0]
    template = chat_template_of(tokenizer, chat_template)
    if row.format == "messages":
        pieces = _chat_spans(tokenizer, f["messages"], template, row.where)
        only = assistant_only_loss
    else:  # conversational prompt/completion: the completion's messages are the targets
        messages = f["prompt"] + f["completion"]
        prompt = _render(tokenizer, f["prompt"], template, True)
        full = _render(tokenizer, messages, template, False)
        if not full.startswith(prompt):
            raise DataError(
                f"{row.where}: the rendered prompt is not a prefix of the rendered conversation; "
                "use data.chat_template"
            )
        pieces = [(prompt, False), (full[len(prompt) :], True)]
        only = completion_only_loss
    ids: list[int] = []
    target: list[bool] = []
    for text, is_target in pieces:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        target += [is_target or not only] * len(piece)
    if not ids:
        raise DataError(f"{row.where}: the row renders to no tokens")
    target[0] = False  # nothing predicts a sample's first token
    return ids, target


def tokenize_rows(
    rows: Sequence[Row], tokenizer: Any, **masks: Any
) -> list[tuple[list[int], list[bool]]]:
    """`tokenize_row` of each row (keyword arguments as there)."""
    return [tokenize_row(row, tokenizer, **masks) for row in rows]


__all__ = [
    "FORMATS",
    "PLAIN_CHAT_TEMPLATE",
    "Row",
    "chat_template_of",
    "read_rows",
    "tokenize_row",
    "tokenize_rows",
]
