"""CREMA-D with the default ECA-CNN, speaker-independent: 5-fold speaker k-fold.

The 91 speakers are dealt to 5 folds (balanced by clip count), so every fold tests on
speakers the model never heard. Same model and training as configs/default.py (ECA after
blocks 5-6, k = 7, STFT version 8, focal loss, 150 epochs); the clips are 16 kHz.

Commands (CREMA-D is not shipped with serjax: bring your own copy, the folder holding
AudioWAV/ — with its git-lfs files fetched — or the wavs themselves):
    python launch.py --config configs/cremad.py --config.data.root=/path/to/CREMA-D \
        --workdir runs/cremad
    python launch.py --config configs/cremad.py:4class --config.data.root=/path/to/CREMA-D \
        --workdir runs/cremad-4class
    python launch.py --mode=inspect --config configs/cremad.py --config.data.root=/path/to/CREMA-D \
        --workdir runs/cremad-inspect         # what the reader finds; checks 7442 clips
Arguments: "" or "all": CREMA-D's six classes (ang dis fea hap neu sad, all 7442 clips);
"4class": ang sad hap neu as in IEMOCAP (4900 clips), disgust and fear left out.
Expected runtime: 5 folds × 150 epochs over 7442 clips; a GPU is recommended for full
runs (days on a 2-core CPU; not measured yet).
Expected result: none yet. No CREMA-D number in this repository has been produced by us;
ours (last epoch, speaker-independent) is to be produced by running this config.
"""

from serjax.configlib import corpus_config
from serjax.corpora.cremad import EMOTIONS


def get_config(arg: str = ""):
    return corpus_config("cremad", tuple(EMOTIONS.values()), arg, "speaker_kfold", 5)
