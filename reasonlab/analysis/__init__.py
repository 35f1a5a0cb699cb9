"""Analysis of run records: reasoning behaviours in text, their dynamics over training, plots and
the HTML report.

Works on the files a run writes (config.yaml, metrics.jsonl, eval.jsonl, rollouts.jsonl, summary
and results files), never on live objects, so it can read a run made on another machine.

- `behaviours`: reflection vocabularies (R1's words, oat-zero's keywords) counted word by word,
  and rule-based detectors of the four cognitive behaviours (verification, backtracking, subgoal
  setting, backward chaining); imports nothing of ours but `io`, so the trainer can call it.
- `dynamics`: `step_metrics` (what the trainer logs per step), change points ("aha").
- `judge`: an LLM judge of the four behaviours (Cognitive Behaviors' four questions).
- `runs`: reading a run folder (RL, SFT, demo, eval, search, pipeline, experiment); `analyze`: the tables of `reasonlab analyze`;
  `plots`: training.png; `report`: the HTML report of `reasonlab report`.
"""

from reasonlab.analysis.dynamics import step_metrics

__all__ = ["step_metrics"]
