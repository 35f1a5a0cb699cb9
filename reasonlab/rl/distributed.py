"""Data-parallel RL with `torch.distributed` (torchrun; gloo on CPU, NCCL on GPUs).

How the work is split, and why the result equals one process with the combined batch:

1. Prompts: every rank reads the same deterministic data stream and takes its own contiguous slice
   of each block of prompts, so groups (all `n` responses of one prompt) never straddle ranks.
   Each prompt is sampled with its own seed (its index in the step), not the rank's.
2. Generation and scoring run locally on each rank's prompts; the scored responses are then
   all-gathered, so every rank holds the step's whole batch in stream order and makes the same
   dynamic-sampling decisions (groups kept, prompts to draw next round: the block size is global,
   its split over ranks may be uneven) and ends at the same stream position, which is what a
   checkpoint saves. The kept groups are shared out again in equal contiguous blocks (their
   count cut to a multiple of the world size) for the update.
3. Advantages: the small per-response tensors (rewards, response masks, values, KL) are all-gathered
   so every rank computes advantages on the *global* batch and keeps its rows. Group estimators
   would be right with local groups alone; batch-whitened ones (REINFORCE++, GAE) need the gather.
4. Loss: each minibatch's normaliser (token count for token-mean, response count for the
   sequence modes) is all-reduced (sum) before the loss is formed, so every rank's loss is its share
   of the global minibatch loss.
5. Gradients: summed over ranks by the engine `model.parallel` names (`reasonlab.parallel`: DDP
   with a summing communication hook, or FSDP2 with a divide factor of 1), once per minibatch
   after its accumulated backward passes: the sum of the ranks' shares is exactly the gradient of
   the global minibatch loss, no 1/W rescaling to undo. The PPO value head, outside the wrapped
   policy, is summed by `Dist.all_reduce_grads`. Clipping and the AdamW step then run on identical
   (or, under FSDP, consistently sharded) gradients, so parameters stay identical on every rank.

`Dist` wraps these collectives; `Dist.single()` is the no-op version for one process, so the trainer
has one code path. It lives in `reasonlab.parallel` (SFT and pretraining use it too) and is
imported here under its old name.
"""

from __future__ import annotations

from reasonlab.parallel import Dist

__all__ = ["Dist"]
