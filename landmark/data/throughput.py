"""How many samples per second the input pipeline (decode, crop, augment, pose) delivers.

Useful to pick ``num_workers``: training is input-bound when this is below the model's training speed.
"""

from __future__ import annotations

import time

from torch.utils.data import DataLoader, Dataset

from landmark.data.dataset import prepare_workers, worker_init_fn


def measure_pipeline(dataset: Dataset, workers: int, batch_size: int = 64, seconds: float = 5.0) -> dict:
    """Iterate a shuffled DataLoader for about ``seconds`` (after one warm-up batch) and time it."""
    prepare_workers(workers)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        worker_init_fn=worker_init_fn,
        persistent_workers=workers > 0,
        drop_last=False,
    )
    samples, start = 0, None
    while start is None or time.perf_counter() - start < seconds:
        for batch in loader:
            if start is None:  # the first batch pays for starting the workers
                start = time.perf_counter()
                continue
            samples += len(batch["index"])
            if time.perf_counter() - start >= seconds:
                break
    elapsed = time.perf_counter() - start
    return {
        "samples_per_s": samples / elapsed,
        "workers": workers,
        "batch_size": batch_size,
        "samples": samples,
        "seconds": elapsed,
    }
