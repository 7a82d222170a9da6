"""Benchmark: image tower training and encoding throughput (images/s) on this machine's CPU threads.

    python scripts/bench_image_tower.py --config experiments/ch7/myntra_image_tower.yaml --threads 2

Times full training steps (augmentation + forward + ClipLoss + backward + AdamW) and inference-only
encoding on random uint8 images at the configured resolution; prints a JSON line and writes
checkpoints/ch7/bench_image_tower/report.json. No data needed.
"""

from __future__ import annotations

import argparse
import json
import time

from mmq.cli import setup

import torch
from open_clip.loss import ClipLoss

from mmq import artifacts
from mmq.config import load_config, to_dict
from mmq.image_tower.data import augment
from mmq.image_tower.evaluate import encode_pixels
from mmq.image_tower.experiment import ImageTowerExperimentConfig
from mmq.image_tower.model import ImageTextModel
from mmq.runs import checkpoints_root, environment_info


def _best_of(function, repeats: int) -> float:
    """Fastest wall time of ``repeats`` calls (after one warm-up call)."""
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    """Measure and report training and encoding images/s."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="experiments/ch7/myntra_image_tower.yaml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args(argv)
    setup()
    torch.set_num_threads(arguments.threads)
    config = load_config(ImageTowerExperimentConfig, arguments.config)
    tower, batch_size = config.tower, config.myntra.batch_size
    torch.manual_seed(0)
    model = ImageTextModel(config=tower)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = ClipLoss()
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (batch_size, 3, tower.image_size, tower.image_size), dtype=torch.uint8)
    texts = torch.randn(batch_size, tower.text_dim)

    def train_step():
        output = model(augment(pixels, pad=config.myntra.augment_pad, flip=True, generator=generator), texts)
        loss_fn(output.image_features, output.text_features, output.logit_scale).backward()
        optimizer.step()
        optimizer.zero_grad()

    model.train()
    train_seconds = _best_of(train_step, arguments.repeats)
    encode_batch = pixels.repeat(2, 1, 1, 1).numpy()
    encode_seconds = _best_of(lambda: encode_pixels(model, encode_batch, batch_size=len(encode_batch)),
                              arguments.repeats)
    result = {
        "threads": arguments.threads, "image_size": tower.image_size, "batch_size": batch_size,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "train_images_per_second": round(batch_size / train_seconds, 1),
        "encode_images_per_second": round(len(encode_batch) / encode_seconds, 1),
        "myntra_epoch_minutes_estimate": round(37_441 / (batch_size / train_seconds) / 60, 2),
        "tower": to_dict(tower), "environment": environment_info(),
    }
    artifacts.write_json(checkpoints_root() / "ch7" / "bench_image_tower" / "report.json", result)
    print(json.dumps({key: value for key, value in result.items() if key not in ("tower", "environment")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
