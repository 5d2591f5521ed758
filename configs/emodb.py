"""EmoDB (Berlin) with the default ECA-CNN, speaker-independent: leave one speaker out.

Ten folds, one per speaker (03 08 09 10 11 12 13 14 15 16): every fold tests on a speaker
the model never heard. Same model and training as configs/default.py (ECA after blocks
5-6, k = 7, STFT version 8, focal loss, 150 epochs); EmoDB is 16 kHz already.

Commands (EmoDB is not shipped with serjax: bring your own copy, the folder holding wav/):
    python launch.py --config configs/emodb.py --config.data.root=/path/to/emodb \
        --workdir runs/emodb
    python launch.py --config configs/emodb.py:4class --config.data.root=/path/to/emodb \
        --workdir runs/emodb-4class
    python launch.py --mode=inspect --config configs/emodb.py --config.data.root=/path/to/emodb \
        --workdir runs/emodb-inspect          # what the reader finds; checks 535 utterances
Arguments: "" or "all": EmoDB's seven classes (ang bor dis fea hap sad neu, all 535
utterances); "4class": ang sad hap neu as in IEMOCAP, boredom, disgust and fear left out
(339 utterances).
Expected runtime: 10 folds × 150 epochs; a GPU is recommended for full runs (hours on a
2-core CPU; not measured yet).
Expected result: none yet. No EmoDB number in this repository has been produced by us;
any EmoDB figure in the paper's journal version is the paper's, and ours (last epoch,
speaker-independent) is to be produced by running this config.
"""

from serjax.configlib import corpus_config
from serjax.corpora.emodb import EMOTIONS, SPEAKERS


def get_config(arg: str = ""):
    return corpus_config(
        "emodb", tuple(EMOTIONS.values()), arg, "leave_one_speaker_out", len(SPEAKERS)
    )
