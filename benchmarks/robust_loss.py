"""The robust loss (``--policy robust``, generalized cross-entropy, q = 0.7) against cross-entropy.

    python benchmarks/robust_loss.py [--jobs 2]

B2's settings under symmetric noise (``repair.noisy_setting``: the same seeded splits, noise and
model options): the MLP trained on the noisy labels with the repair rounds' mixup, once with
cross-entropy and once with the generalized cross-entropy; no row changed. Test accuracy on the true
test labels. Settings: make_classification 50,000 rows at 40 % (seeds 0-2), Fashion-MNIST 20,000 at
20 % and digits at 20 / 40 % (seed 0). Writes ``results/robust_loss.json``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_result  # noqa: E402

SETTINGS = [("synthetic", 0.4, 0), ("synthetic", 0.4, 1), ("synthetic", 0.4, 2), ("fashion", 0.2, 0),
            ("digits", 0.2, 0), ("digits", 0.4, 0)]


def one(name: str, rate: float, seed: int, workdir: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from repair import mixup_fit, noisy_setting  # benchmarks/repair.py
    from trainyard.repair.loop import MIXUP_ALPHA
    from trainyard.repair.robust import GCE_Q, GeneralizedCrossEntropy

    ds, splits, opts, noisy_y, _ = noisy_setting(name, "symmetric", rate, seed, False)
    row = {"data": name, "noise": "symmetric", "rate": rate, "seed": seed, "q": GCE_Q, "mixup": MIXUP_ALPHA}
    for tag, extra in (("cross_entropy", []), ("generalized_cross_entropy", [GeneralizedCrossEntropy(GCE_Q)])):
        row[tag] = mixup_fit(ds, noisy_y, splits, Path(workdir) / f"{name}-{rate}-{seed}-{tag}", opts, extra, quiet=True)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args(argv)
    from repair import code_version

    t0, rows = time.time(), []
    with tempfile.TemporaryDirectory() as work, ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        for f in [pool.submit(one, *s, work) for s in SETTINGS]:
            r = f.result()
            rows.append(r)
            print(f"{r['data']:<10} symmetric {r['rate']:.0%} seed {r['seed']}: cross-entropy {r['cross_entropy']:.4f}"
                  f"  generalized cross-entropy {r['generalized_cross_entropy']:.4f}", flush=True)
    write_result("robust_loss", {"benchmark": "robust loss vs cross-entropy (B2 settings, symmetric noise)",
                                 "machine": machine(), "code": code_version(), "protocol": __doc__,
                                 "seconds": time.time() - t0, "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
