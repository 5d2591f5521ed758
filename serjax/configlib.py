"""The full set of config fields, with the defaults of SPEC.md. Files in configs/ start here."""

from __future__ import annotations

import os

import ml_collections

from serjax import features
from serjax.corpora import synthetic
from serjax.corpora.iemocap import PAPER_LABEL_MAP


def default_cache_dir() -> str:
    """Generated corpora and feature caches: $SERJAX_CACHE, else ~/.cache/serjax."""
    return os.environ.get("SERJAX_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "serjax"
    )


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0  # training seeds are seed, seed + 1, ..., seed + num_seeds - 1
    config.num_seeds = 1  # seeds train together (one jitted step: train.seed_strategy)
    config.cache_dir = default_cache_dir()

    config.data = ml_collections.ConfigDict()
    # `synthetic` (built in, generated on first use), or one you bring (set data.root):
    # iemocap | emodb | ravdess | cremad | manifest (a CSV: path,label[,speaker][,session])
    config.data.corpus = "synthetic"
    config.data.root = ""
    config.data.selection = "improvised"  # improvised | scripted | all
    config.data.sessions = (1, 2, 3, 4, 5)
    config.data.classes = ("ang", "sad", "hap", "neu")
    config.data.label_map = ml_collections.ConfigDict(PAPER_LABEL_MAP)
    config.data.on_bad_file = "error"  # error | skip
    config.data.load_workers = 4  # threads reading audio
    config.data.synthetic = synthetic.default_config()

    config.data.cache_dtype = "float16"  # dtype of the on-disk feature cache
    # feature normalisation, fitted on the training fold only (assumed): per_band (each Mel
    # band's mean/std) | global (one mean/std over all bands) | none
    config.data.normalisation = "per_band"

    config.features = features.default_config()

    config.experiment = ml_collections.ConfigDict()
    config.experiment.train_versions = (8,)  # STFT versions 1..8 the model trains on
    config.experiment.test_version = 8

    config.protocol = ml_collections.ConfigDict()
    # stratified_kfold (the paper's) | leave_one_session_out | leave_one_speaker_out | speaker_kfold
    config.protocol.name = "stratified_kfold"
    config.protocol.num_folds = 5
    config.protocol.fold_seed = 0  # fold assignment, independent of the training seeds

    config.model = ml_collections.ConfigDict()
    config.model.width_scale = 4  # n (assumed; the paper sweeps 1..8)
    config.model.base_widths = (8, 16, 32, 32, 64, 64)  # widths are n × base (assumed)
    config.model.eca_layers = (5, 6)  # conv blocks followed by an ECA block
    config.model.eca_kernel = 7  # one size for all; 0 = ECA-Net's rule
    config.model.eca_kernels = ()  # or one size per ECA block
    config.model.eca_batch_norm = False  # True: BN on the pooled vector (original ECA)
    config.model.eca_gamma = 2.0  # ECA-Net's adaptive-kernel rule
    config.model.eca_b = 1.0
    # "auto": serjax.layers' fast CPU layers (block 1's shifted sum on the CPU only); "flax":
    # plain linen; "fused": the fast layers on any backend. Same parameters, same model.
    config.model.conv_impl = "auto"
    # what the layers compute in: float32 | bfloat16 (parameters, BatchNorm statistics and the
    # loss stay float32; accuracy effect: results/bench/bf16.md)
    config.model.compute_dtype = "float32"

    config.train = ml_collections.ConfigDict()
    config.train.epochs = 150
    config.train.batch_size = 32
    config.train.learning_rate = 1e-3
    config.train.lr_decay_per_epoch = 0.97  # exponential decay per epoch (assumed)
    config.train.adam_b1 = 0.9
    config.train.adam_b2 = 0.999
    config.train.adam_eps = 1e-8
    config.train.focal_gamma = 2.0  # (assumed; the paper's value was lost)
    config.train.class_weighting = "inverse_frequency"  # w_c ∝ 1/n_c, mean 1 (assumed) | none
    config.train.validation_fraction = 0.0  # > 0: also report the best epoch on it
    config.train.eval_every = 1  # test-fold curves (never used to select)
    config.train.eval_batch_size = 64
    config.train.checkpoint_every = 5  # epochs
    config.train.seed_strategy = "auto"  # auto | vmap | unroll | map | chunks
    # True: deterministic GPU ops (XLA's xla_gpu_deterministic_ops; slower); the CPU is
    # deterministic either way (serjax.xla_options.compiler_options)
    config.train.deterministic = False
    # True: an epoch's steps as one jitted lax.scan (one dispatch per epoch, for GPUs; Ctrl-C
    # then stops between epochs); False: one dispatch per step
    config.train.scan_epoch = False

    # What a run logs besides metrics.jsonl; never part of a run's identity.
    config.log = ml_collections.ConfigDict()
    config.log.tensorboard = True  # event files in <workdir>/tensorboard/<fold>/seed<seed>/

    # Where the (run, fold) units execute; never part of a run's identity (see README).
    config.executor = ml_collections.ConfigDict()
    config.executor.name = "inline"  # inline (this process) | ray (tasks over GPUs / nodes)
    config.executor.address = ""  # ray: "" starts Ray here; "auto" or ray://host:port joins
    config.executor.gpus_per_task = 1.0  # fractions share a GPU (0.25: four tasks per GPU)
    config.executor.cpus_per_task = 1.0
    config.executor.max_retries = 2  # a task whose worker died is retried, resuming
    # compiled steps kept on disk (<cache_dir>/jax-compilation-cache) for other processes
    config.executor.compilation_cache = True
    return config


def small_variant(config) -> ml_collections.ConfigDict:
    """The same pipeline shrunk to seconds per run on 2 CPU cores, on the synthetic corpus.

    For sweeps: every grid point keeps its meaning (versions, widths, ECA placement), but
    the data (300 utterances, 1.5-s clips), folds (3), width (n = 1, where a sweep does not
    set it) and epochs (5, the learning rate decaying × 0.85 per epoch instead of 0.97) are
    small. Its numbers show that the machinery works; they are not a reproduction of the
    paper's.
    """
    config.data.corpus = "synthetic"
    config.data.root = ""
    config.data.synthetic.num_utterances = 300
    config.features.duration_s = 1.5
    config.protocol.num_folds = 3
    config.model.width_scale = 1
    config.train.epochs = 5
    config.train.lr_decay_per_epoch = 0.85
    config.train.checkpoint_every = 5
    return config


def config_arg(arg: str, allowed=("small", "loso")) -> set[str]:
    """`configs/NAME.py:a,b` → {"a", "b"}; an unknown word is an error naming it."""
    words = {w for w in arg.split(",") if w}
    unknown = sorted(words - set(allowed))
    if unknown:
        raise ValueError(
            f"config argument {arg!r}: unknown {unknown}; use a comma-separated "
            f"subset of {list(allowed)} (or nothing)"
        )
    return words


def leave_one_session_out(config) -> ml_collections.ConfigDict:
    """The speaker-independent protocol: train on four IEMOCAP sessions, test on the fifth
    (each session's two speakers appear nowhere else)."""
    config.protocol.name = "leave_one_session_out"
    return config


def sweep_defaults(name: str) -> dict:
    """A sweep function's keyword arguments and defaults (ranges as tuples)."""
    import inspect

    from serjax.sweeps import SWEEPS

    return {
        k: tuple(p.default) if isinstance(p.default, (range, tuple, list)) else p.default
        for k, p in inspect.signature(SWEEPS[name]).parameters.items()
    }


def sweep_config(name: str, arg: str) -> ml_collections.ConfigDict:
    """A sweep config. `arg` "" runs the paper's grid on IEMOCAP (set data.root); "small"
    runs the small variant on the synthetic corpus (grid narrowed by SMALL_GRIDS); "loso"
    uses leave-one-session-out instead of random folds; "small,loso" both."""
    from serjax.sweeps import SMALL_GRIDS

    words = config_arg(arg)
    config = base_config()
    config.data.corpus = "iemocap"
    config.sweep = ml_collections.ConfigDict()
    config.sweep.name = name
    config.sweep.variant = "+".join(sorted(words)) or "paper"
    # the grid's own arguments with their defaults, so `--config.sweep.grid.versions='(6,8)'`
    # and the like narrow it from the command line (typed and checked like any field)
    config.sweep.grid = ml_collections.ConfigDict(sweep_defaults(name))
    if "small" in words:
        small_variant(config)
        config.sweep.grid.update(SMALL_GRIDS.get(name, {}))
    if "loso" in words:
        leave_one_session_out(config)
    return config


FOUR_CLASSES = ("ang", "sad", "hap", "neu")


def corpus_config(corpus: str, classes: tuple, arg: str, protocol: str, num_folds: int):
    """The default model on another corpus. `arg` "" or "all": the corpus's own `classes`
    (identity label map); "4class": ang sad hap neu as in IEMOCAP, the rest left out."""
    label_sets = {"all": tuple(classes), "4class": FOUR_CLASSES}
    name = arg or "all"
    if name not in label_sets:
        raise ValueError(f"configs/{corpus}.py takes '', 'all' or '4class', not {arg!r}")
    config = base_config()
    config.data.corpus = corpus
    config.data.classes = label_sets[name]
    config.data.label_map = ml_collections.ConfigDict({c: c for c in label_sets[name]})
    config.protocol.name = protocol
    config.protocol.num_folds = num_folds
    return config
