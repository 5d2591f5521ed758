"""The paper's best single-version model on IEMOCAP (SPEC §3-4).

ECA after conv blocks 5-6 with k = 7, trained and tested on STFT version 8 (50 ms window,
40 ms overlap), weighted focal loss, Adam 1e-3 × 0.97 per epoch, 150 epochs, batch 32,
stratified random 5-fold CV over the paper's improvised 4-class subset (2943 utterances).

Command (IEMOCAP is licensed: bring your own copy):
    python launch.py --config configs/default.py \
        --config.data.root=/path/to/IEMOCAP_full_release --workdir runs/default
Add --config.num_seeds=4 to train four seeds together. `configs/default.py:loso` is the
speaker-independent variant (leave-one-session-out: 5 folds, each session's two speakers
only in its test fold); its numbers are not comparable with the paper's random folds.
Expected runtime: days on a 2-core CPU; on one NVIDIA H200 with 4 seeds, 9.5 minutes projected
from 2 measured folds of 5 (results/bench/gpu.md; a finished run is still to be timed).
Expected result: the paper reports 79.37 UA / 79.68 WA / 79.53 ACC for this model (its
numbers, with an unstated model-selection rule); ours is the last epoch's, to be filled in
from a real run.
"""

from serjax.configlib import base_config, config_arg, leave_one_session_out


def get_config(arg: str = ""):
    config = base_config()
    config.data.corpus = "iemocap"
    if "loso" in config_arg(arg, allowed=("loso",)):
        leave_one_session_out(config)
    return config
