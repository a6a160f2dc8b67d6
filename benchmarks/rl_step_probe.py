"""Why a too-large GRPO step breaks a confident tiny model: a probe (docs/learning.md, "Tuning").

From one checkpoint it measures held-out validation avg@n (64 problems x 4 samples) after

* ``--updates`` GRPO updates at ``--lr`` with the advantages as computed (``sign +1``),
* the same with every advantage's sign flipped (``sign -1``),
* adding ``+-scale`` (a random sign per weight) to every weight, for each ``--scales``,

so the damage of a step along the policy gradient is set against a random step of the same
or larger size per weight. Usage::

    OMP_NUM_THREADS=1 python benchmarks/rl_step_probe.py --model runs/tiny/sft300 --lr 3e-4 --updates 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="runs/tiny/sft")
    p.add_argument("--config", default=str(ROOT / "configs" / "tiny" / "grpo.yaml"))
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--updates", type=int, default=3)
    p.add_argument("--scales", default="1e-4,3e-4,1e-3")
    p.add_argument("--eval-limit", type=int, default=64)
    args = p.parse_args(argv)
    import torch
    from transformers import AutoModelForCausalLM

    from reasonenv.agents.config import load_config
    from reasonenv.agents.testbed import heldout_eval
    from reasonenv.agents.trainer import Trainer

    torch.set_num_threads(1)
    rows = []
    for sign in (1.0, -1.0):
        cfg = load_config(args.config, [f"model.name={args.model}", f"optim.lr={args.lr}",
                                        "run.out_dir=runs/probe", "run.progress=false"])
        tr = Trainer(cfg)
        torch.manual_seed(0)
        before = heldout_eval(tr.model, tr.tok, cfg, split="validation", limit=args.eval_limit, n=4, seed=0)["avg"]
        for _ in range(args.updates):
            groups, _ = tr.rollout()
            batch = tr.make_batch(groups)
            for s in batch:
                s.advantages = sign * s.advantages
            tr.update(batch)
        after = heldout_eval(tr.model, tr.tok, cfg, split="validation", limit=args.eval_limit, n=4, seed=0)["avg"]
        rows.append({"probe": f"{args.updates} GRPO updates, lr {args.lr:g}, advantage sign {sign:+.0f}",
                     "before": before, "after": after})
        print(json.dumps(rows[-1]), flush=True)
    for scale in (float(x) for x in args.scales.split(",")):
        model = AutoModelForCausalLM.from_pretrained(args.model)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for w in model.parameters():
                w.add_(scale * (torch.randint(0, 2, w.shape, generator=g) * 2 - 1).to(w.dtype))
        after = heldout_eval(model, tr.tok, cfg, split="validation", limit=args.eval_limit, n=4, seed=0)["avg"]
        rows.append({"probe": f"random +-{scale:g} on every weight", "before": rows[0]["before"], "after": after})
        print(json.dumps(rows[-1]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
