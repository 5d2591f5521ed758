"""A trained workdir → an ONNX model (by jax2onnx) that onnxruntime runs without JAX.

The model takes log-Mel features [batch, n_mels, frames] as serjax extracts them (the test
version's STFT, float32) and returns class probabilities [batch, classes]: each fold's
normalisation, every chosen model's softmax, averaged over folds and seeds (as
`--mode=predict` does). Beside it, <name>.json holds what a caller needs to compute the
features (version, STFT and Mel settings, clip length), the class names and the
normalisation statistics (already applied inside the model).
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from serjax import features
from serjax.checkpoints import restore_final_states
from serjax.errors import SerjaxError
from serjax.fileio import read_json, write_json
from serjax.model import build_model
from serjax.seeds import seeds_of
from serjax.train import trainer_for


def _members(config, workdir: Path, fold: str | None, seed_index: int | None):
    """[(fold name, mean, std, [variables of each chosen seed])] of the finished folds."""
    names = read_json(workdir / "folds.json")["names"]
    if fold and fold not in names:
        raise SerjaxError(f"--predict_fold {fold!r}: the run's folds are {names}")
    seeds = seeds_of(config)
    if seed_index is not None and not 0 <= seed_index < len(seeds):
        raise SerjaxError(f"--predict_seed {seed_index}: the run has seeds 0..{len(seeds) - 1}")
    settings = features.FeatureSettings.from_config(config.features)
    shape = (settings.n_mels, features.num_frames(settings, [config.experiment.test_version]))
    trainer = trainer_for(build_model(config.model, len(config.data.classes)), config.train)
    members = []
    for k, name in enumerate(names):
        if fold and name != fold:
            continue
        norm = read_json(workdir / "folds" / f"{name}.json")["normalisation"]
        states = restore_final_states(trainer, config, workdir, name, k, seeds, shape)
        chosen = range(len(seeds)) if seed_index is None else [seed_index]
        variables = [
            jax.tree_util.tree_map(lambda a, s=s: np.asarray(a[s]), _variables(states))
            for s in chosen
        ]
        members.append((name, np.float32(norm["mean"]), np.float32(norm["std"]), variables))
    return members, shape, settings, [seeds[s] for s in chosen]


def _variables(states) -> dict:
    return {"params": states.params, "batch_stats": states.batch_stats}


def ensemble_function(model, members):
    """features [B, mels, frames] → mean class probabilities over the members' models."""

    def probabilities(x):
        out = []
        for _, mean, std, variables in members:
            normalised = (x - mean[:, None]) / std[:, None]
            for v in variables:
                out.append(jax.nn.softmax(model.apply(v, normalised), axis=-1))
        return jnp.mean(jnp.stack(out), axis=0)

    return probabilities


def export_onnx(config, workdir: Path, fold=None, seed_index=None, name="model") -> list[Path]:
    """Write <workdir>/export/<name>.onnx and <name>.json; return their paths."""
    try:
        from jax2onnx import to_onnx
    except ImportError:
        raise SerjaxError(
            "--mode=export needs jax2onnx, which is not installed: pip install -e '.[export]'"
        ) from None
    workdir = Path(workdir)
    members, shape, settings, seeds = _members(config, workdir, fold, seed_index)
    # the plain linen layers of SPEC §3: the same parameters, standard ONNX operators only
    model = build_model(config.model, len(config.data.classes)).clone(conv_impl="flax")
    fn = ensemble_function(model, members)
    out = workdir / "export"
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / f"{name}.onnx"
    noisy = [logging.getLogger(n) for n in ("onnx_ir", "jax2onnx")]
    levels = [lg.level for lg in noisy]
    for lg in noisy:
        lg.setLevel(logging.ERROR)  # type notes on shape constants, harmless
    try:
        proto = to_onnx(
            fn,
            [("B", *shape)],
            model_name="serjax_ser",
            input_names=["log_mel"],
            output_names=["probabilities"],
        )
    finally:
        for lg, level in zip(noisy, levels):
            lg.setLevel(level)
    tmp = onnx_path.with_name(f".{onnx_path.name}.tmp")
    tmp.write_bytes(proto.SerializeToString())
    tmp.replace(onnx_path)
    version = int(config.experiment.test_version)
    info = {
        "input": {"name": "log_mel", "shape": ["batch", *shape], "dtype": "float32"},
        "output": {"name": "probabilities", "classes": list(config.data.classes)},
        "features": {
            "version": version,
            **dict(
                zip(("win_length", "hop_length", "n_fft"), features.stft_params(version, settings))
            ),
            "settings": settings.to_dict(),
            "how": "serjax.features.extract (or the README's librosa example), as float16",
        },
        "normalisation": {
            "applied": "inside the model, each fold's own, per Mel band",
            "per_fold": {n: {"mean": m.tolist(), "std": s.tolist()} for n, m, s, _ in members},
        },
        "models": {"folds": [m[0] for m in members], "seeds": seeds},
        "corpus": _corpus_of(workdir),
    }
    return [onnx_path, write_json(out / f"{name}.json", info)]


def _corpus_of(workdir: Path) -> str | None:
    path = workdir / "summary.json"
    return read_json(path).get("corpus") if path.exists() else None
