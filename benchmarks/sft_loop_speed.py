"""transformers' Trainer (what ``reasonenv sft`` uses) against a hand-written loop, same steps.

Both run the same model, data, order-free batches, AdamW, clipping and constant rate; the
rounds alternate (loop, Trainer, loop, Trainer, ...) so that a busy machine slows both alike.
Reports the median wall and CPU seconds per step of each.

    .venv/bin/python benchmarks/sft_loop_speed.py --steps 50 --rounds 2
    .venv/bin/python benchmarks/sft_loop_speed.py --tiny --steps 200 --rounds 3   # overhead only
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/tiny/sft.yaml")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tiny", action="store_true", help="a 2-layer d=32 model: the per-step overhead")
    args = ap.parse_args()

    import torch
    from transformers import PrinterCallback, ProgressCallback, Trainer, TrainingArguments

    from reasonenv.agents.sft import build_model, load_sft_config
    from reasonenv.agents.sft_data import build_examples, collate
    from reasonenv.tokenizers import char_tokenizer

    torch.set_num_threads(args.threads)
    over = ["data.num_examples=1024"]
    if args.tiny:
        over += ["model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
                 "model.num_kv_heads=2", "model.intermediate_size=64"]
    cfg = load_sft_config(args.config, over)
    tok = char_tokenizer()
    train, _ = build_examples(cfg.data, tok, cfg.data.train_seed, cfg.data.num_examples)
    bs, lr = cfg.train.batch_size, cfg.train.lr

    def loop() -> None:
        model = build_model(cfg.model, tok, 0).train()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        g = torch.Generator().manual_seed(0)
        order = torch.randperm(len(train), generator=g).tolist()
        for step in range(args.steps):
            idx = order[(step * bs) % len(train):][:bs] or order[:bs]
            loss = model(**collate([train[i] for i in idx], tok.pad_token_id)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

    def trainer() -> None:
        model = build_model(cfg.model, tok, 0)
        with tempfile.TemporaryDirectory() as scratch:
            targs = TrainingArguments(
                output_dir=scratch, max_steps=args.steps, per_device_train_batch_size=bs,
                learning_rate=lr, lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0,
                logging_steps=10, save_strategy="no", report_to="none", disable_tqdm=True,
                dataloader_pin_memory=False, remove_unused_columns=False, seed=0)
            t = Trainer(model=model, args=targs, train_dataset=train,
                        data_collator=lambda b: collate(b, tok.pad_token_id))
            t.remove_callback(PrinterCallback)
            t.remove_callback(ProgressCallback)
            t.train()

    times: dict[str, list[tuple[float, float]]] = {"loop": [], "trainer": []}
    for r in range(args.rounds):
        for name, fn in (("loop", loop), ("trainer", trainer)):
            w, c = time.perf_counter(), time.process_time()
            fn()
            times[name].append(((time.perf_counter() - w) / args.steps, (time.process_time() - c) / args.steps))
            print(f"round {r} {name:8s} {times[name][-1][0]:.4f} s/step wall, "
                  f"{times[name][-1][1]:.4f} s/step CPU", flush=True)
    for name, rows in times.items():
        print(f"{name:8s} median {statistics.median(w for w, _ in rows):.4f} s/step wall, "
              f"{statistics.median(c for _, c in rows):.4f} s/step CPU over {len(rows)} rounds of "
              f"{args.steps} steps (batch {bs}, {args.threads} thread(s))")


if __name__ == "__main__":
    main()
