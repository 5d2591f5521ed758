"""Paper Fig. 7: no ECA vs original ECA (all six blocks, ECA-Net's adaptive kernel, with
BatchNorm) vs ours (blocks 5-6, k = 7, no BatchNorm) × STFT versions v1..v8 (24 runs).

    python launch.py --config configs/fig7.py --config.data.root=/path/to/IEMOCAP_full_release \
        --workdir runs/fig7
    python launch.py --config configs/fig7.py:small --workdir results/fig7-small

Paper (IEMOCAP, UA/WA/ACC): ours best at v8, 79.37 / 79.68 / 79.53; the original ECA's best
78.71 / 78.80 / 78.76 (the paper does not say at which version). The width is held at the
config's n (4, assumed: the paper used its Fig. 6 best, whose n our copy does not show).
Narrow the grid with e.g. --config.sweep.grid.versions='(6,8)'.
Small variant (`:small`, synthetic corpus): 104 s on 2 CPU cores, corpus and features
included (results/fig7-small/); the paper grid on IEMOCAP is a GPU job.
"""

from serjax.configlib import sweep_config


def get_config(arg: str = ""):
    return sweep_config("fig7", arg)
