"""Paper Fig. 10: ascending STFT augmentation — test on v1, train on v1..vk (k = 1..8),
with and without ECA (16 runs).

    python launch.py --config configs/fig10.py --config.data.root=/path/to/IEMOCAP_full_release \
        --workdir runs/fig10
    python launch.py --config configs/fig10.py:small --workdir results/fig10-small

Paper (IEMOCAP): CNN best with all versions, 80.10 UA / 80.02 WA / 80.06 ACC; ECA best with
v1 + v2, 79.69 / 79.51 / 79.60. Width held at n = 4 (assumed); --config.sweep.grid.counts
narrows the numbers of versions.
Small variant (`:small`, synthetic corpus): 205 s on 2 CPU cores, corpus and features
included (results/fig10-small/); the paper grid on IEMOCAP is a GPU job.
"""

from serjax.configlib import sweep_config


def get_config(arg: str = ""):
    return sweep_config("fig10", arg)
