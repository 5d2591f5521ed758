"""What each `launch.py --mode` does, given a locked config and a workdir."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from serjax import locks
from serjax.errors import SerjaxError
from serjax.fileio import read_json, write_json


def inspect(config, workdir: Path) -> None:
    from serjax.corpora import load_corpus
    from serjax.feature_cache import check_cache_dir
    from serjax.inspect_corpus import format_summary, summarize

    check_cache_dir(config.cache_dir)
    listing = load_corpus(config.data, config.cache_dir)
    summary = summarize(listing, config.data.classes)
    print(format_summary(summary))
    print(f"wrote {write_json(workdir / 'corpus.json', summary)}")


def extract_features(config, workdir: Path) -> None:
    from serjax import experiment

    prepared = experiment.prepare(config, workdir)
    for v in prepared.versions:
        array = prepared.arrays[v]
        print(f"features v{v}: {' x '.join(map(str, array.shape))} ({array.dtype})")


def describe(config, workdir: Path) -> None:
    """The model's layer table and parameter count, without data or training."""
    import jax
    import jax.numpy as jnp

    from serjax import features
    from serjax.model import build_model, count_params
    from serjax.resolve import check_versions

    settings = features.FeatureSettings.from_config(config.features)
    model = build_model(config.model, len(config.data.classes))
    train_versions, test_version = check_versions(config)
    frames = features.num_frames(settings, [*train_versions, test_version])
    x = jnp.zeros((1, settings.n_mels, frames), jnp.float32)
    # wide and plain: shapes stay whole in a narrow terminal and in a file (no colour codes)
    print(
        model.tabulate(
            jax.random.PRNGKey(0),
            x,
            compute_flops=False,
            depth=2,
            console_kwargs={"width": 160, "force_terminal": False, "no_color": True},
        )
    )
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    n = count_params(variables["params"])
    info = {
        "params": n,
        "widths": list(model.widths),
        "eca_layers": list(model.eca_layers),
        "eca_kernels": list(model.eca_kernels),
        "input": list(x.shape[1:]),
    }
    print(f"trainable parameters: {n}")
    print(f"wrote {write_json(workdir / 'model.json', info)}")


def write_run_report(workdir: Path, config, summary: dict) -> Path:
    """One run's report.md and figures from its summary; the model is described as built
    from the run's config (serjax.report draws, this layer gathers)."""
    from serjax.model import build_model
    from serjax.report import model_note
    from serjax.report import write_run_report as draw_run

    model = build_model(config.model, len(summary["classes"]))
    return draw_run(workdir, summary, model_note(config.model, model))


def write_sweep_report(config, workdir: Path) -> Path:
    """A sweep's report.md, results.csv and score figure over its finished runs, with the
    paper's numbers for the same cells (gathered by serjax.sweeps)."""
    from serjax.report import write_sweep_report as draw_sweep
    from serjax.sweeps import report_inputs

    return draw_sweep(workdir, **report_inputs(config, workdir))


def _report_finished(job, summary: dict) -> None:
    write_run_report(job.workdir, job.config, summary)


def train(config, workdir: Path) -> None:
    """Train a run, or every unfinished run of a sweep, and write the reports: each run's
    report.md as it finishes, then the sweep's."""
    from serjax.executor import execute
    from serjax.report import pct
    from serjax.tasks import Job

    if "sweep" in config:
        from serjax.sweeps import run_sweep

        run_sweep(config, workdir, on_trained=write_run_report)
        print(f"wrote {write_sweep_report(config, workdir)}")
        return

    job = Job(config, workdir)
    (summary,) = execute([job], config.executor, on_finished=_report_finished)
    print(
        f"{summary['corpus']} / {summary['protocol']}: UA {pct(summary['ua']['mean'])} ± "
        f"{pct(summary['ua']['std'])}, WA {pct(summary['wa']['mean'])}, "
        f"ACC {pct(summary['acc']['mean'])}, macro-F1 {pct(summary['f1']['mean'])} "
        f"({summary['selection']}; {summary['wall_time_s']:.0f} s)"
    )
    print(f"wrote {workdir / 'summary.json'} and {workdir / 'report.md'}")


def require_trained_models(workdir: Path) -> None:
    """eval and predict need the run's checkpoints and fold files, which git does not keep:
    a committed results folder (summary and report only) says how to get them."""
    missing = [name for name in ("folds.json", "checkpoints") if not (workdir / name).exists()]
    if (workdir / "summary.json").exists() and missing:
        raise SerjaxError(
            f"{workdir} holds a finished run's results but not its trained models "
            f"(no {' or '.join(missing)}: checkpoints and fold files are not kept in git); "
            f"{training_advice(workdir)}"
        )


def training_advice(workdir: Path) -> str:
    """The command that trains the run in `workdir`: for a sweep's run, the sweep's own
    command in the sweep's folder (the same --config in the run's folder would start a
    whole new sweep inside it)."""
    from serjax.workdir import sweep_of_member

    parent = Path(workdir).resolve().parent
    sweep = sweep_of_member(workdir)
    if sweep is not None:
        arg = "" if sweep["variant"] == "paper" else ":" + sweep["variant"].replace("+", ",")
        return (
            f"it is a run of the sweep in {parent}: train it with python launch.py "
            f"--config configs/{sweep['sweep']}.py{arg} --workdir {parent} "
            "(finished runs are skipped)"
        )
    if (parent / "results.csv").is_file():
        return (
            f"it is a run of the sweep in {parent}: train that sweep with its own --config "
            f"and --workdir {parent} (finished runs are skipped)"
        )
    return (
        f"run the same --config with --workdir {workdir} in train mode first "
        "(for results/quickstart: python launch.py)"
    )


def evaluate(config, workdir: Path) -> None:
    """Restore every fold's final checkpoint, re-evaluate its test fold, write eval.json."""
    from serjax import experiment
    from serjax.checkpoints import restore_final_states
    from serjax.metrics import METRICS, summarize_results

    summary_path = workdir / "summary.json"
    if not summary_path.exists():
        raise SerjaxError(f"{workdir} holds no finished run (no summary.json); train it first")
    saved = read_json(summary_path)  # a damaged one stops before any work
    prepared = experiment.prepare(config, workdir, progress=False)
    results = []
    for k, name in enumerate(prepared.fold_names):
        states = restore_final_states(
            prepared.trainer, config, workdir, name, k, prepared.seeds, prepared.table.shape[1:]
        )
        results.append(experiment.evaluate_fold(prepared, k, states))
    evaluation = summarize_results(results)
    evaluation["selection"] = "last epoch, restored from the checkpoints"
    evaluation["matches_summary"] = all(
        abs(evaluation[m]["mean"] - saved[m]["mean"]) < 1e-9 for m in METRICS
    )
    write_json(workdir / "eval.json", evaluation)
    print(
        f"restored {len(results)} folds: UA {100 * evaluation['ua']['mean']:.2f}, "
        f"WA {100 * evaluation['wa']['mean']:.2f}; "
        f"{'equal to' if evaluation['matches_summary'] else 'DIFFERENT FROM'} summary.json"
    )
    print(f"wrote {workdir / 'eval.json'}")


def report(config, workdir: Path) -> None:
    """--mode=report: rebuild every report under a run's or a sweep's workdir from its saved
    results (each finished run's report.md, then the sweep's), without retraining."""
    from serjax.fingerprint import check_saved_runs

    if "sweep" in config:
        from serjax.sweeps import finished_runs

        runs = finished_runs(config, workdir)
        check_saved_runs([(run_config, run_dir) for _, run_config, run_dir, _ in runs])
        for _, run_config, run_dir, summary in runs:
            print(f"wrote {write_run_report(run_dir, run_config, summary)}")
        print(f"wrote {write_sweep_report(config, workdir)}")
        return
    summary_path = workdir / "summary.json"
    if not summary_path.exists():
        subruns = sorted(p.parent.name for p in workdir.glob("*/summary.json"))
        more = ", …" if len(subruns) > 3 else ""
        hint = (
            f"; it holds a sweep's runs ({', '.join(subruns[:3])}{more}): "
            "pass the sweep's --config (e.g. configs/fig6.py:small)"
            if subruns
            else ""
        )
        raise SerjaxError(f"{workdir} holds no finished run (no summary.json){hint}")
    check_saved_runs([(config, workdir)])
    print(f"wrote {write_run_report(workdir, config, read_json(summary_path))}")


def predict(config, workdir: Path, options: dict) -> None:
    """Each file's label and probabilities, under a line naming the corpus the models were
    trained on (a synthetic-corpus model is marked on every line), a clip shorter than
    --predict_min_s with a warning; predictions.json keeps the same."""
    from serjax.predict import DEFAULT_MIN_S, predict_files

    # earlier calls' predictions are kept: one entry per file (its absolute path), the latest
    # wins; read first, so a damaged file stops the call before any work
    saved_path = workdir / "predictions.json"
    saved = read_json(saved_path) if saved_path.exists() else {}
    results = predict_files(
        config,
        workdir,
        options["wavs"],
        fold=options["fold"],
        seed_index=options["seed_index"],
        hop_s=options["hop_s"],
        min_s=options.get("min_s", DEFAULT_MIN_S),
    )
    source = next(iter(results.values()))["trained_on"]
    if source["synthetic"]:
        print(f"*** WARNING: {source['warning']} ***")
    else:
        where = f" at {source['root']}" if source.get("root") else ""
        count = f", {source['utterances']} utterances" if source.get("utterances") else ""
        print(f"model trained on corpus {source['corpus']}{where}{count}")
    mark = "  [SYNTHETIC-corpus model]" if source["synthetic"] else ""
    for path, r in results.items():
        probs = ", ".join(f"{c} {100 * p:.1f}%" for c, p in r["probabilities"].items())
        windows = f"{r['windows']} window{'s' * (r['windows'] > 1)}"
        print(f"{path}: {r['top']}  ({probs}; {windows}){mark}")
        if "warning" in r:
            print(f"  warning: {r['warning']}")
    saved.update({str(Path(p).resolve()): r for p, r in results.items()})
    print(f"wrote {write_json(saved_path, saved)}")


def export(config, workdir: Path, options: dict) -> None:
    """--mode=export: the trained models as one ONNX model plus the JSON to feed it."""
    from serjax.export import export_onnx

    for path in export_onnx(
        config, workdir, fold=options.get("fold"), seed_index=options.get("seed_index")
    ):
        print(f"wrote {path}")


MODES = {
    "export": export,
    "predict": predict,
    "report": report,
    "train": train,
    "inspect": inspect,
    "features": extract_features,
    "describe": describe,
    "eval": evaluate,
}


def workdir_config(workdir: Path, current):
    """The config a workdir was trained with (machine-local fields from the current one)."""
    from serjax.workdir import machine_fields, saved_config

    return saved_config(workdir, machine_fields(current))


def run(
    mode: str, config, workdir: Path, options: dict | None = None, overrides: tuple = ()
) -> None:
    """One mode on one workdir; `overrides`: the config fields the command line set (a mode
    that reads a run back refuses those its saved config would silently replace)."""
    workdir = Path(workdir)
    if mode in ("eval", "report", "predict", "export") and not workdir.is_dir():
        raise SerjaxError(f"--workdir {workdir} does not exist")
    if mode in ("eval", "predict", "export"):
        if not (workdir / "config.json").exists():
            raise SerjaxError(f"{workdir} holds no run (no config.json); check --workdir")
        require_trained_models(workdir)
    if mode in ("eval", "report", "predict", "export") and (workdir / "config.json").exists():
        if "sweep" in config and not _member_of(workdir, config.sweep.name):
            raise SerjaxError(
                f"--workdir {workdir} holds a single run, not the sweep "
                f"{config.sweep.name}; drop --config, or give the sweep's workdir"
            )
        saved = workdir_config(workdir, config)  # a run is read back with its own config
        check_overrides_kept(mode, workdir, config, saved, overrides)
        config = saved
    created = not workdir.exists()
    check_workdir_path(workdir)
    try:
        with locks.exclusive(workdir, "workdir"):  # one process at a time on a workdir
            if mode in ("predict", "export"):
                return MODES[mode](config, workdir, options or {})
            MODES[mode](config, workdir)
    except SerjaxError:
        if created and workdir.is_dir() and all(map(locks.is_lock_file, workdir.iterdir())):
            shutil.rmtree(workdir)  # a mode that failed before writing anything leaves nothing
        raise


def _member_of(workdir: Path, sweep: str) -> bool:
    from serjax.workdir import sweep_of_member

    return (sweep_of_member(workdir) or {}).get("sweep") == sweep


def check_overrides_kept(mode: str, workdir: Path, given, saved, overrides) -> None:
    """A mode that reads a run back uses the config it was trained with: an override that
    would change a field of it stops here, instead of being dropped without a word."""
    from serjax.workdir import machine_fields

    def value(config, field):
        for part in field.split("."):
            if not hasattr(config, "keys") or part not in config:
                return None
            config = config[part]
        return json.dumps(config.to_dict() if hasattr(config, "to_dict") else config)

    dropped = [  # fields a saved config lacks (executor, log) do not shape the results
        f
        for f in dict.fromkeys(overrides)
        if f not in machine_fields(given)
        and value(saved, f) is not None
        and value(given, f) != value(saved, f)
    ]
    if dropped:
        listed = ", ".join(f"--config.{f}" for f in dropped)
        raise SerjaxError(
            f"--mode={mode} uses the config the run in {workdir} was trained with "
            f"(config.json); {listed} would change it: drop it, or train a new --workdir"
        )


def check_workdir_path(workdir: Path) -> None:
    """--workdir must be a folder this process can write (or one it can create)."""
    if workdir.exists() and not workdir.is_dir():
        raise SerjaxError(f"--workdir {workdir} is a file, not a folder")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SerjaxError(f"--workdir {workdir}: cannot create it ({err.strerror})") from None
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise SerjaxError(f"--workdir {workdir}: cannot write there (permission denied)")
