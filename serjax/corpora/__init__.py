"""Corpus readers. Every one returns a `CorpusListing` of `Utterance` records."""

from __future__ import annotations

from pathlib import Path

from serjax.corpora.records import CorpusListing, Skipped, Utterance
from serjax.errors import SerjaxError

CORPORA = ("synthetic", "iemocap")


def check_label_map(data_cfg) -> dict[str, str]:
    """The label map as a dict, after checking it against `data.classes`."""
    label_map = dict(data_cfg.label_map)
    classes = tuple(data_cfg.classes)
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise SerjaxError(f"config field data.classes: need two or more distinct classes, got {classes}")
    unknown = sorted(set(label_map.values()) - set(classes))
    if unknown:
        raise SerjaxError(f"config field data.label_map maps to {unknown}, which are not in "
                          f"data.classes {classes}")
    unmapped = sorted(set(classes) - set(label_map.values()))
    if unmapped:
        raise SerjaxError(f"config field data.classes: no label of data.label_map maps to {unmapped}")
    return label_map


def load_corpus(data_cfg, cache_dir, progress: bool = True) -> CorpusListing:
    """Read the corpus `data_cfg.corpus` names (generating the built-in one if needed)."""
    from serjax.corpora.iemocap import load_iemocap

    label_map = check_label_map(data_cfg)
    corpus = data_cfg.corpus
    if corpus == "synthetic":
        from serjax.corpora import synthetic

        root = synthetic.ensure(Path(cache_dir).expanduser() / "corpora", data_cfg.synthetic,
                                progress=progress)
    elif corpus == "iemocap":
        if not data_cfg.root:
            raise SerjaxError("config field data.root is empty: point it at your "
                              "IEMOCAP_full_release folder (--config.data.root=/path/to/it)")
        root = data_cfg.root
    else:
        raise SerjaxError(f"config field data.corpus: unknown corpus {corpus!r}; choose one of {CORPORA}")
    listing = load_iemocap(root, selection=data_cfg.selection, label_map=label_map,
                           sessions=data_cfg.sessions, on_bad_file=data_cfg.on_bad_file)
    listing.name = corpus
    return listing


__all__ = ["CORPORA", "CorpusListing", "Skipped", "Utterance", "check_label_map", "load_corpus"]
