"""serjax command line.

    python launch.py                                    # the main job: configs/quickstart.py
    python launch.py --config configs/default.py \
        --config.data.root=/data/IEMOCAP_full_release --workdir runs/default
    python launch.py --mode=inspect --config.data.corpus=iemocap --config.data.root=...

Modes: train (default: the fold loop; resumes an unfinished workdir), inspect (corpus.json),
features (fill the feature cache), describe (layer table, model.json), eval (restore the
checkpoints, re-evaluate, eval.json), report (rebuild tables and figures from saved results),
predict (a trained workdir + audio files -> emotion probabilities, predictions.json),
export (a trained workdir -> export/model.onnx and model.json, for onnxruntime).
A config with a `sweep` section (configs/fig*.py, table5.py) runs its whole grid.
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

from absl import app, flags, logging

HERE = Path(__file__).resolve().parent
MODES = ("train", "inspect", "features", "describe", "eval", "report", "predict", "export")

_WORKDIR = flags.DEFINE_string(
    "workdir", "", "Where the run's files go (default: results/<config name>[-<arg>])."
)
_MODE = flags.DEFINE_enum("mode", "train", MODES, "What to do.")
_WAV = flags.DEFINE_multi_string(
    "wav", [], "predict: an audio file (repeatable; files after the flags count too)."
)
_PREDICT_FOLD = flags.DEFINE_string(
    "predict_fold", "", "predict, export: one fold's model (default: all)."
)
_PREDICT_SEED = flags.DEFINE_integer(
    "predict_seed", -1, "predict, export: one seed index (default: all)."
)
_PREDICT_HOP = flags.DEFINE_float(
    "predict_hop_s", 0.0, "predict: hop between the windows of long audio (default: half a window)."
)
_PREDICT_MIN_S = flags.DEFINE_float(
    "predict_min_s",
    0.5,
    "predict: clips shorter than this many seconds get a warning (too short for a reliable label; "
    "0: never).",
)


def define_config_flag():
    """--config, loaded and overridden from sys.argv as it is defined; a bad override stops
    here with one line naming it (ml_collections would show a long traceback)."""
    from ml_collections import config_flags

    try:
        return config_flags.DEFINE_config_file(
            "config",
            str(HERE / "configs" / "quickstart.py"),
            "Config file, optionally with an argument: configs/NAME.py[:ARG].",
            lock_config=True,
        )
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        bad_override(err)


def override_fields(argv=None) -> tuple[str, ...]:
    """The config fields set on the command line (`--config.a.b=v` or `--config.a.b v`)."""
    args = sys.argv[1:] if argv is None else argv
    return tuple(a[len("--config.") :].split("=")[0] for a in args if a.startswith("--config."))


def bad_override(err: Exception):
    """One line naming the override ml_collections refused (the default config's overrides
    are applied when the flag is defined, an explicit --config file's when flags are parsed):
    the one with a field or value equal to the name the message quotes, else one containing
    it, else all of them."""
    reason = str(err).strip("'\"").replace("\\n", " ").replace("\n", " ").replace("\\'", "'")
    culprits = [a for a in sys.argv[1:] if a.startswith("--config.")]
    quoted = re.findall(r"'([^']+)'", reason)[:1]

    def words(arg):
        field, _, value = arg[len("--config.") :].partition("=")
        return [*field.split("."), value]

    where = next(
        (a for a in culprits if any(q in words(a) for q in quoted)),
        next(
            (a for a in culprits if any(q in a for q in quoted)),
            " ".join(culprits) or "the config file",
        ),
    )
    print(f"serjax: error: bad config override {where}: {reason}", file=sys.stderr)
    sys.exit(2)


def default_workdir() -> Path:
    from ml_collections import config_flags

    path, _, arg = config_flags.get_config_filename(flags.FLAGS["config"]).partition(":")
    return HERE / "results" / (Path(path).stem + (f"-{arg}" if arg else ""))


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def load_config():
    """The --config ConfigDict; a file that cannot be loaded (a typo in its path, an error
    inside it) stops here with one line, where ml_collections would raise at first use."""
    from ml_collections import config_flags

    config = flags.FLAGS.config
    try:
        config.keys()  # a config that failed to load raises on first use
        return config
    except OSError as err:
        spec = config_flags.get_config_filename(flags.FLAGS["config"])
        path = Path(spec.partition(":")[0])
        if not path.is_file():
            reason = "no such file" if not path.exists() else "not a file"
        else:
            cause = err
            while cause.__cause__ is not None:
                cause = cause.__cause__
            reason = (
                f"cannot load it ({type(cause).__name__}: {str(cause).strip().splitlines()[-1]})"
            )
        print(f"serjax: error: --config {spec}: {reason}", file=sys.stderr)
        sys.exit(2)


def main(argv):
    extra = argv[1:]
    if extra and _MODE.value != "predict":
        print(
            f"serjax: error: unexpected arguments {extra} (only --mode=predict takes file names)",
            file=sys.stderr,
        )
        sys.exit(2)
    config = load_config()
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    from serjax import cli  # heavy imports after flag parsing, so --help stays quick
    from serjax.errors import SerjaxError
    from serjax.xla_options import use_compilation_cache

    # before anything compiles: steps compiled by earlier processes are loaded from disk
    use_compilation_cache(config.cache_dir, config.executor.get("compilation_cache", True))
    workdir = Path(_WORKDIR.value) if _WORKDIR.value else default_workdir()
    # SIGTERM (a scheduler's stop) is handled like Ctrl-C (during training: save, then exit).
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        options = {
            "wavs": list(_WAV.value) + list(extra),
            "fold": _PREDICT_FOLD.value or None,
            "seed_index": None if _PREDICT_SEED.value == -1 else _PREDICT_SEED.value,
            "hop_s": _PREDICT_HOP.value,
            "min_s": _PREDICT_MIN_S.value,
        }
        cli.run(_MODE.value, config, workdir, options, overrides=override_fields())
    except SerjaxError as err:
        print(f"serjax: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as err:
        detail = f" ({err})" if str(err) else ""
        print(f"\nserjax: stopped{detail}; run the same command to resume", file=sys.stderr)
        sys.exit(130)


def parse_flags(argv):
    """absl's parser, with its errors as one line (a config file's own error, e.g. a bad
    `:ARG`, would otherwise come wrapped in a traceback)."""
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError, TypeError) as err:  # an override of an explicit --config file
        bad_override(err)
    except (SyntaxError, ImportError, NameError) as err:  # raised by the config file's own code
        where = (
            f" ({Path(err.filename).name}, line {err.lineno})"
            if isinstance(err, SyntaxError)
            else ""
        )
        print(
            f"serjax: error: the config file does not load: {type(err).__name__}: "
            f"{getattr(err, 'msg', err)}{where}",
            file=sys.stderr,
        )
        sys.exit(2)
    except flags.Error as err:
        text = str(err)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        first = lines[0].removesuffix(": Error whilst parsing config file:") if lines else text
        reason = lines[-1].split(": ", 1)[-1] if len(lines) > 1 and "Traceback" in text else ""
        print(f"serjax: error: {first}{': ' + reason if reason else ''}", file=sys.stderr)
        sys.exit(2)


def start_with_huge_pages():
    """Start again, once, with glibc's huge pages for malloc (serjax/host.py; off with
    SERJAX_MALLOC=default): before anything else runs."""
    from serjax.errors import SerjaxError
    from serjax.host import reexec_with_huge_pages

    try:
        reexec_with_huge_pages()
    except SerjaxError as err:
        print(f"serjax: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    start_with_huge_pages()
    define_config_flag()
    app.run(main, flags_parser=parse_flags)
