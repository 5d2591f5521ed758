"""Corpus readers. Every one returns a `CorpusListing` of `Utterance` records.

This module is the package's face and only re-exports: `load_corpus` (the dispatch on
`data.corpus`) lives in `serjax.corpora.loading`; the helpers shared by the readers of the
file-name-coded corpora (EmoDB, RAVDESS, CREMA-D) and the CSV manifest, so they all check
roots, report problems and finish a listing the same way as the IEMOCAP reader, live in
`serjax.corpora.common`, which the readers import directly.
"""

from __future__ import annotations

from serjax.corpora.common import (
    ROOT_HINTS,
    NamedFile,
    audio_file_problem,
    check_audio,
    check_label_map,
    check_on_bad_file,
    compare_with_release,
    corpus_dir,
    decode_text,
    finish_listing,
    raise_problems,
    read_named_files,
    read_text_file,
    wav_files,
)
from serjax.corpora.loading import CORPORA, load_corpus
from serjax.corpora.records import CorpusListing, Skipped, Utterance

__all__ = [
    "CORPORA",
    "ROOT_HINTS",
    "CorpusListing",
    "NamedFile",
    "Skipped",
    "Utterance",
    "audio_file_problem",
    "check_audio",
    "check_label_map",
    "check_on_bad_file",
    "compare_with_release",
    "corpus_dir",
    "decode_text",
    "finish_listing",
    "load_corpus",
    "raise_problems",
    "read_named_files",
    "read_text_file",
    "wav_files",
]
