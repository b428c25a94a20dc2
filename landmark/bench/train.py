"""Training-speed and input-pipeline benchmarks (``landmark bench --train`` and ``--data``).

Training speed is measured twice per model: on tensors already in memory (the compute alone) and fed by
the real input pipeline (decode, crop, augment), whose extra time is the share of each step spent waiting
for data. The pipeline must outrun the model step, or training is input-bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from landmark.config import CONFIG_DIR
from landmark.data.augment import load_augment_config
from landmark.data.dataset import LandmarkDataset, prepare_workers, worker_init_fn
from landmark.data.readers import FaceRecord
from landmark.data.schemes import scheme_for
from landmark.data.throughput import measure_pipeline
from landmark.models.pfld import build_auxiliary, build_pfld, load_model_config
from landmark.train.losses import build_loss
from landmark.train.trainer import TrainingNet, training_loss

TRAIN_MODELS = (
    ("pfld.yaml", 0.25),
    ("pfld.yaml", 1.0),
    ("pfld_refine.yaml", 0.25),
    ("pfld_refine.yaml", 1.0),
    ("pfld_local.yaml", 1.0),
    ("pfld_v2.yaml", 0.25),
    ("pfld_v2.yaml", 1.0),
)


def _step_function(config: str, width: float, num_points: int) -> tuple[Callable, torch.optim.Optimizer]:
    cfg = load_model_config(CONFIG_DIR / "models" / config, num_points=num_points, width=width)
    model = build_pfld(cfg)
    net = TrainingNet(model, build_auxiliary(cfg, model)).train()
    criterion = build_loss({"name": "wing", "pfld": {"enabled": True}})
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step(batch: dict) -> None:
        loss = training_loss(criterion, net(batch["image"]), batch["landmarks"], batch, "cpu")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step, optimizer


def _fake_batch(batch_size: int, num_points: int, size: int = 112) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(batch_size, 3, size, size, generator=generator),
        "landmarks": torch.rand(batch_size, num_points, 2, generator=generator),
        "angles": (torch.rand(batch_size, 3, generator=generator) - 0.5),
        "attributes": torch.zeros(batch_size, 6),
    }


def benchmark_training(
    records: list[FaceRecord] | None,
    num_points: int,
    batch_size: int = 64,
    steps: int = 6,
    workers: int = 2,
    models=TRAIN_MODELS,
) -> list[dict]:
    """Images per second (forward + backward + AdamW step) per model, compute alone and with the real pipeline."""
    results = []
    dataset = None
    if records:
        dataset = LandmarkDataset(
            records, scheme_for(num_points), augment=load_augment_config("strong"), box_jitter=0.1
        )
    for config, width in models:
        step, _ = _step_function(config, width, num_points)
        fake = _fake_batch(batch_size, num_points)
        step(fake)  # warm-up
        started = time.perf_counter()
        for _ in range(steps):
            step(fake)
        compute = (time.perf_counter() - started) / steps
        row = {
            "model": f"{Path(config).stem} {width}",
            "batch_size": batch_size,
            "compute_images_per_s": round(batch_size / compute, 1),
        }
        if dataset is not None:
            prepare_workers(workers)
            loader = DataLoader(
                dataset,
                batch_size=batch_size,
                shuffle=True,
                num_workers=workers,
                worker_init_fn=worker_init_fn,
                drop_last=True,
                persistent_workers=workers > 0,
            )
            iterator = iter(loader)
            step(next(iterator))  # starts the workers
            wait = total = 0.0
            for _ in range(min(steps, len(loader) - 1)):
                tick = time.perf_counter()
                batch = next(iterator)
                got = time.perf_counter()
                step(batch)
                wait += got - tick
                total += time.perf_counter() - tick
            row["images_per_s"] = round(batch_size * min(steps, len(loader) - 1) / total, 1)
            row["data_wait_share"] = round(wait / total, 3)
            row["workers"] = workers
        results.append(row)
    return results


def benchmark_data(datasets: dict[str, LandmarkDataset], workers=(0, 1, 2), seconds: float = 4.0) -> list[dict]:
    """Samples per second of the training input pipeline per dataset and worker count."""
    return [
        {"data": name, **measure_pipeline(dataset, w, seconds=seconds)}
        for name, dataset in datasets.items()
        for w in workers
    ]
