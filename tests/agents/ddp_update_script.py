"""Run by tests/agents/test_trainer.py under torch.distributed.run (2 CPU processes, gloo).

Each rank updates a tiny model on its half of a saved batch; rank 0 saves the parameters.
Usage: python -m torch.distributed.run --nproc_per_node 2 ddp_update_script.py BATCH OUT DIR
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from reasonenv.agents.config import load_config
from reasonenv.agents.trainer import Trainer
from reasonenv.testing import tiny_model, tiny_tokenizer


def main(batch_path: str, out_path: str, run_dir: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    cfg = load_config(None, [f"run.out_dir={run_dir}", "run.tensorboard=false", "run.progress=false",
                             "rollout.num_problems=2", "rollout.group_size=3", "algo.micro_batch=1",
                             "env.chat=false", "optim.lr=1e-2"])
    tok = tiny_tokenizer()
    tr = Trainer(cfg, tiny_model(tok, seed=0), tok)
    batch = torch.load(batch_path, weights_only=False)
    half = len(batch) // world
    tr.update(batch[rank * half:(rank + 1) * half])
    if rank == 0:
        torch.save([p.detach().clone() for p in tr.model.parameters()], out_path)
    # Leave together, and drop DDP (its reducer holds the process group) before tearing down.
    dist.barrier()
    del tr
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
