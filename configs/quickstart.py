"""The default pipeline scaled down to run in a few minutes on 2 CPU cores.

Same code path as configs/default.py (corpus reader, log-Mel v8, ECA-CNN, focal loss,
stratified 5-fold CV, Orbax checkpoints, report), on serjax's built-in synthetic corpus
(generated on first use under the cache directory), with a smaller corpus, 3-s clips,
width scale n = 1 and few epochs. This is what `python launch.py` runs with no flags.

Command:           python launch.py            (writes results/quickstart/)
Expected runtime:  about 1-1.5 minutes on 2 CPU cores (measured: 63 s with the corpus generated,
                   plus about 15 s to generate it on the first run; slower on a busy machine).
`configs/quickstart.py:loso` runs the same with leave-one-session-out folds and a best epoch
chosen on held-out speakers (python launch.py --config configs/quickstart.py:loso writes
results/quickstart-loso/).
Expected result:   UA 56.7 ± 5.0 % (chance: 25 %) on the
                   synthetic corpus (see results/quickstart/report.md). Synthetic data:
                   these numbers say nothing about emotion in real speech.
"""

from serjax.configlib import base_config, config_arg, leave_one_session_out


def get_config(arg: str = ""):
    config = base_config()
    config.data.corpus = "synthetic"
    config.data.synthetic.num_utterances = 800
    config.features.duration_s = 3.0
    config.model.width_scale = 1
    config.train.epochs = 12
    config.train.lr_decay_per_epoch = 0.9
    config.train.checkpoint_every = 3
    if "loso" in config_arg(arg, allowed=("loso",)):
        # speaker-independent: leave one session (two speakers) out, and choose a best epoch
        # on speakers held out of each training fold, reported beside the last epoch's
        leave_one_session_out(config)
        config.train.validation_fraction = 0.15
    return config
