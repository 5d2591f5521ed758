"""Paper Fig. 8: ECA on the last m conv blocks (m = 1..6) × kernel k ∈ {3, 5, 7, 9}, v8
(24 runs).

    python launch.py --config configs/fig8.py --config.data.root=/path/to/IEMOCAP_full_release \
        --workdir runs/fig8
    python launch.py --config configs/fig8.py:small --workdir results/fig8-small

Paper (IEMOCAP): best with ECA on blocks 5-6 (79.37 / 79.68 / 79.53 at k = 7). Its reference
lines (no ECA, the original ECA) are fig7's cnn_v8 and original_eca_v8 runs. Width held at
n = 4 (assumed). Narrow with --config.sweep.grid.kernels='(7,)' or .depths='(2,3)'.
Small variant (`:small`, synthetic corpus): 225 s on 2 CPU cores, corpus and features
included (results/fig8-small/); the paper grid on IEMOCAP is a GPU job.
"""

from serjax.configlib import sweep_config


def get_config(arg: str = ""):
    return sweep_config("fig8", arg)
