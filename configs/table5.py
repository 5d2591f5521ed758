"""Paper Table V, the ablation: CNN (v6) → + original ECA (v8) → + our ECA (v8) →
+ STFT augmentation (CNN, train v8..v1, test v8) → + both (5 runs).

    python launch.py --config configs/table5.py --config.data.root=/path/to/IEMOCAP_full_release \
        --workdir runs/table5
    python launch.py --config configs/table5.py:small --workdir results/table5-small
    python launch.py --config configs/table5.py:loso --config.data.root=... \
        --workdir runs/table5-loso
        (speaker-independent: leave-one-session-out; ":small,loso" on the synthetic corpus)

Paper (IEMOCAP, UA/WA/ACC): 79.16/79.27/79.22; 78.71/78.80/78.76; 79.37/79.68/79.53;
79.66/80.50/80.08; 80.28/80.46/80.37. The paper does not say which versions its
augmentation rows or its original-ECA row used: --config.sweep.grid.augmentation='(8,7,6)'
sets the first (default all eight, descending), the original ECA runs at v8 (assumed), and
--config.sweep.grid.cnn_version the CNN's (default v6, its Fig. 6 best). Width n = 4 (assumed).
Small variant (`:small`, synthetic corpus): 65 s on 2 CPU cores, corpus and features
included (results/table5-small/); the paper grid on IEMOCAP is a GPU job.
"""

from serjax.configlib import sweep_config


def get_config(arg: str = ""):
    return sweep_config("table5", arg)
