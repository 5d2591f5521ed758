"""Paper Fig. 11: descending STFT augmentation — test on v8, train on v8, v7, .., v(9-k)
(k = 1..8), with and without ECA (16 runs).

    python launch.py --config configs/fig11.py --config.data.root=/path/to/IEMOCAP_full_release \
        --workdir runs/fig11
    python launch.py --config configs/fig11.py:small --workdir results/fig11-small

Paper (IEMOCAP): CNN 79.66 / 80.50 / 80.08; ECA 80.28 / 80.46 / 80.37 (UA/WA/ACC), the
paper's best overall (it does not say with how many versions). Width held at n = 4 (assumed);
--config.sweep.grid.counts narrows the numbers of versions.
Small variant (`:small`, synthetic corpus): 190 s on 2 CPU cores, corpus and features
included (results/fig11-small/); the paper grid on IEMOCAP is a GPU job.
"""

from serjax.configlib import sweep_config


def get_config(arg: str = ""):
    return sweep_config("fig11", arg)
