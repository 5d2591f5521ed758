"""Paper Fig. 9: ECA after blocks 5-6 × kernel k ∈ {3, 5, 7, 9} × versions v1..v8 (32 runs).

    python launch.py --config configs/fig9.py --config.data.root=/path/to/IEMOCAP_full_release \
        --workdir runs/fig9
    python launch.py --config configs/fig9.py:small --workdir results/fig9-small

Paper (IEMOCAP): v8 best in most cases.
"""

from serjax.configlib import sweep_config


def get_config(arg: str = ""):
    return sweep_config("fig9", arg)
