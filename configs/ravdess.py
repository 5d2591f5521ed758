"""RAVDESS (speech) with the default ECA-CNN, speaker-independent: 6-fold speaker k-fold.

The 24 actors are dealt to 6 folds (4 actors each, balanced by utterance count), so every
fold tests on actors the model never heard. Song files are left out. Same model and
training as configs/default.py (ECA after blocks 5-6, k = 7, STFT version 8, focal loss,
150 epochs); the 48 kHz audio is resampled to 16 kHz when features are computed.

Commands (RAVDESS is not shipped with serjax: bring your own copy, the folder holding
Actor_01 … Actor_24, or the one holding Audio_Speech_Actors_01-24/):
    python launch.py --config configs/ravdess.py --config.data.root=/path/to/ravdess \
        --workdir runs/ravdess
    python launch.py --config configs/ravdess.py:4class --config.data.root=/path/to/ravdess \
        --workdir runs/ravdess-4class
    python launch.py --mode=inspect --config configs/ravdess.py \
        --config.data.root=/path/to/ravdess \
        --workdir runs/ravdess-inspect        # what the reader finds; checks 1440 utterances
Arguments: "" or "all": RAVDESS's eight classes (neu cal hap sad ang fea dis sur, all 1440
speech files); "4class": ang sad hap neu as in IEMOCAP (672 files), the other four left
out; calm is not merged into neutral.
Expected runtime: 6 folds × 150 epochs; a GPU is recommended for full runs (hours on a
2-core CPU; not measured yet).
Expected result: none yet. No RAVDESS number in this repository has been produced by us;
ours (last epoch, speaker-independent) is to be produced by running this config.
"""

from serjax.configlib import corpus_config
from serjax.corpora.ravdess import EMOTIONS


def get_config(arg: str = ""):
    return corpus_config("ravdess", tuple(EMOTIONS.values()), arg, "speaker_kfold", 6)
