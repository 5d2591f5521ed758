"""Any corpus listed in a CSV manifest, with the default ECA-CNN and speaker k-fold.

The CSV (data.root) has a header `path,label[,speaker][,session]` and one row per
utterance; relative paths are relative to the CSV's folder (see serjax/corpora/manifest.py).
Protocol: speaker_kfold, 5 folds (speakers dealt to folds, so each fold tests on unheard
speakers). A manifest without a speaker column gives every utterance the speaker "": add
--config.protocol.name=stratified_kfold (speaker-dependent), or speaker folds cannot be
made. A label that is not in the label set is an error (on_bad_file=error), with its line:
the manifest's author chose the labels, so a mismatch is taken for a typo, not an exclusion.

Commands (bring your own audio and CSV):
    python launch.py --config configs/manifest.py --config.data.root=/path/to/manifest.csv \
        --workdir runs/manifest
    python launch.py --config configs/manifest.py:angry=ang,sad,happy=hap,neutral=neu \
        --config.data.root=/path/to/manifest.csv --workdir runs/manifest
    python launch.py --mode=inspect --config configs/manifest.py \
        --config.data.root=/path/to/manifest.csv --workdir runs/manifest-inspect
Arguments: "" or "4class": the labels ang sad hap neu, as in IEMOCAP. Otherwise a
comma-separated label set: each item `label` (its own class) or `label=class` (e.g.
`exc=hap` merges exc into hap); the classes are the distinct targets, in order.
Expected runtime: depends on the corpus; a GPU is recommended for full runs (5 folds ×
150 epochs).
Expected result: none: results on your corpus are yours to produce with this config.
"""

import ml_collections

from serjax.configlib import base_config

FOUR_CLASSES = ("ang", "sad", "hap", "neu")


def label_set(arg: str) -> dict[str, str]:
    """The label map an argument names: "" / "4class", or `a,b=c,...`."""
    if arg in ("", "4class"):
        return {label: label for label in FOUR_CLASSES}
    label_map = {}
    for item in arg.split(","):
        label, _, target = (part.strip() for part in item.partition("="))
        target = target or label
        if not label or label in label_map:
            raise ValueError(
                f"configs/manifest.py: bad label set {arg!r} (empty or repeated label "
                f"in {item!r}); write label or label=class, comma-separated"
            )
        label_map[label] = target
    return label_map


def get_config(arg: str = ""):
    label_map = label_set(arg)
    config = base_config()
    config.data.corpus = "manifest"
    config.data.classes = tuple(dict.fromkeys(label_map.values()))
    config.data.label_map = ml_collections.ConfigDict(label_map)
    config.protocol.name = "speaker_kfold"
    config.protocol.num_folds = 5
    return config
