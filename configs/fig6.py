"""Paper Fig. 6: width scale n = 1..8 × STFT versions v1..v8, no ECA (64 runs).

    python launch.py --config configs/fig6.py --config.data.root=/path/to/IEMOCAP_full_release \
        --workdir runs/fig6
    python launch.py --config configs/fig6.py:small --workdir results/fig6-small
    python launch.py --mode=report --config configs/fig6.py:small --workdir results/fig6-small

Paper (IEMOCAP): best 79.16 UA / 79.27 WA / 79.22 ACC, at v6.
The small variant (synthetic corpus, n ∈ {1, 2, 3, 4} × v1..v8) took 447 s on 2 CPU cores
(corpus and features included); see results/fig6-small/. Full grid: 64 × 5-fold × 150
epochs — a GPU job.
"""

from serjax.configlib import sweep_config


def get_config(arg: str = ""):
    return sweep_config("fig6", arg)
