"""Paper Fig. 9: ECA after blocks 5-6 × kernel k ∈ {3, 5, 7, 9} × versions v1..v8 (32 runs).

    python launch.py --config configs/fig9.py --config.data.root=/path/to/IEMOCAP_full_release \
        --workdir runs/fig9
    python launch.py --config configs/fig9.py:small --workdir results/fig9-small

Paper (IEMOCAP): v8 best in most cases; the CNN alone it compares with is fig7's cnn_v* runs.
Width held at n = 4 (assumed). Narrow with --config.sweep.grid.kernels / .versions.
Small variant (`:small`, synthetic corpus): 141 s on 2 CPU cores, corpus and features
included (results/fig9-small/); the paper grid on IEMOCAP is a GPU job.
"""

from serjax.configlib import sweep_config


def get_config(arg: str = ""):
    return sweep_config("fig9", arg)
