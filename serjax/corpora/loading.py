"""Reading the corpus `data.corpus` names: the dispatch over the readers.

The readers are imported when their corpus is asked for (a run reads one corpus, and the
built-in generator pulls in SciPy); they import the shared helpers from
`serjax.corpora.common`, never this module, so the import graph has no cycle.
"""

from __future__ import annotations

from pathlib import Path

from serjax.corpora.common import ROOT_HINTS, check_label_map, check_on_bad_file
from serjax.corpora.records import CorpusListing
from serjax.errors import SerjaxError

CORPORA = ("synthetic", "iemocap", "emodb", "ravdess", "cremad", "manifest")


def _reader(corpus: str):
    """The `load_<corpus>(root, label_map, on_bad_file, audio_check)` of a file-tree or
    manifest corpus."""
    if corpus == "emodb":
        from serjax.corpora.emodb import load_emodb

        return load_emodb
    if corpus == "ravdess":
        from serjax.corpora.ravdess import load_ravdess

        return load_ravdess
    if corpus == "cremad":
        from serjax.corpora.cremad import load_cremad

        return load_cremad
    from serjax.corpora.manifest import load_manifest

    return load_manifest


def load_corpus(data_cfg, cache_dir, progress: bool = True) -> CorpusListing:
    """Read the corpus `data_cfg.corpus` names (generating the built-in one if needed).

    `data.selection` and `data.sessions` apply to IEMOCAP-layout trees (iemocap, synthetic)
    only; the other corpora are read whole, then filtered by `data.label_map`.

    Every audio file that would be used is looked into by the reader itself (`audio_check`),
    before any work is done: bad audio is one more problem of the reader's, so
    `data.on_bad_file=error` lists label-file, name and audio problems in one error, and with
    `skip` the listing's `skipped` and its notes' counts are final (nothing is dropped later).
    """
    from serjax.corpora.iemocap import load_iemocap

    label_map = check_label_map(data_cfg)
    corpus = data_cfg.corpus
    if corpus not in CORPORA:
        raise SerjaxError(
            f"config field data.corpus: unknown corpus {corpus!r}; choose one of {CORPORA}"
        )
    check_on_bad_file(data_cfg.on_bad_file)
    if corpus == "synthetic":
        import serjax.corpora.synthetic as synthetic

        root = synthetic.ensure(
            Path(cache_dir).expanduser() / "corpora", data_cfg.synthetic, progress=progress
        )
    elif not data_cfg.root:
        raise SerjaxError(
            f"config field data.root is empty: point it at {ROOT_HINTS[corpus]} "
            "(--config.data.root=/path/to/it)"
        )
    else:
        root = data_cfg.root
    if corpus in ("synthetic", "iemocap"):
        # the real release's counts say nothing about a generated corpus
        listing = load_iemocap(
            root,
            selection=data_cfg.selection,
            label_map=label_map,
            sessions=data_cfg.sessions,
            on_bad_file=data_cfg.on_bad_file,
            check_counts=corpus == "iemocap",
            audio_check=True,
        )
    else:
        listing = _reader(corpus)(
            root, label_map, on_bad_file=data_cfg.on_bad_file, audio_check=True
        )
    listing.name = corpus
    return listing
