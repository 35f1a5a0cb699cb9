"""Stage settings that run in seconds, shared by the tests that build pipelines (mechanics, not
learning)."""

TINY_PRETRAIN = {
    "size": "tiny",
    "problems": 16,
    "attempts": 2,
    "steps": 6,
    "batch_size": 4,
    "vocab_size": 512,
}
"""A pretrain stage's settings: a tiny base from 6 steps on 32 corpus attempts."""
