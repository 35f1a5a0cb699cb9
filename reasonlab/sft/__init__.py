"""The supervised room: SFT on prompt/completion, chat or text rows, distillation, and SFT sets
built by rejection sampling (`sample.py`).

    from reasonlab.sft import SFTConfig, SFTTrainer
    summary = SFTTrainer(config).train()

`data.py` reads and tokenises rows in TRL's formats; `losses.py` holds the losses (nll, kd, gkd);
`trainer.py` is the loop around `reasonlab.models.pretrain.supervised_step`, the one step that
pretraining uses too; `config.py` is the recipe's dataclasses (`reasonlab sft RECIPE.yaml`).
"""

from reasonlab.sft.config import SFTConfig
from reasonlab.sft.trainer import SFTError, SFTTrainer

__all__ = ["SFTConfig", "SFTError", "SFTTrainer"]
