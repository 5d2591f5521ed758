import csv
import json

import pytest

from serjax import cli
from serjax.configlib import sweep_config
from serjax.errors import SerjaxError
from serjax.sweeps import expand, run_config, run_sweep

CLASSES = ["ang", "sad", "hap", "neu"]


def fields(overrides):
    return {k: v for k, v in overrides.items()}


@pytest.mark.parametrize(
    "name,arg,count",
    [
        ("fig6", "", 64),
        ("fig6", "small", 32),
        ("fig7", "", 24),
        ("fig8", "", 24),
        ("fig9", "", 32),
        ("fig10", "", 16),
        ("fig11", "", 16),
        ("table5", "", 5),
        ("table5", "small", 5),
        ("fig7", "small", 24),
        ("fig8", "small", 24),
        ("fig9", "small", 32),
        ("fig10", "small", 16),
        ("fig11", "small", 16),
    ],
)
def test_grid_sizes(name, arg, count):
    runs = expand(sweep_config(name, arg).sweep)
    assert len(runs) == count
    assert len({r[0] for r in runs}) == count  # every run has its own workdir


def test_grid_fields():
    runs = {name: o for name, o, _ in expand(sweep_config("fig6", "").sweep)}
    assert runs["n3_v6"]["model.width_scale"] == 3 and runs["n3_v6"]["model.eca_layers"] == ()
    assert (
        runs["n3_v6"]["experiment.train_versions"] == (6,)
        and runs["n3_v6"]["experiment.test_version"] == 6
    )
    fig7 = {name: o for name, o, _ in expand(sweep_config("fig7", "").sweep)}
    assert fig7["original_eca_v2"]["model.eca_layers"] == (1, 2, 3, 4, 5, 6)
    assert (
        fig7["original_eca_v2"]["model.eca_kernel"] == 0
        and fig7["original_eca_v2"]["model.eca_batch_norm"]
    )
    assert (
        fig7["ours_v8"]["model.eca_layers"] == (5, 6) and fig7["ours_v8"]["model.eca_kernel"] == 7
    )
    fig8 = {name: o for name, o, _ in expand(sweep_config("fig8", "").sweep)}
    assert (
        fig8["last2_k9"]["model.eca_layers"] == (5, 6) and fig8["last2_k9"]["model.eca_kernel"] == 9
    )
    assert fig8["last6_k3"]["model.eca_layers"] == (1, 2, 3, 4, 5, 6)
    fig10 = {name: o for name, o, _ in expand(sweep_config("fig10", "").sweep)}
    assert fig10["cnn_3versions"]["experiment.train_versions"] == (1, 2, 3)
    assert fig10["cnn_3versions"]["experiment.test_version"] == 1
    fig11 = {name: o for name, o, _ in expand(sweep_config("fig11", "").sweep)}
    assert fig11["ours_3versions"]["experiment.train_versions"] == (8, 7, 6)
    assert fig11["ours_3versions"]["experiment.test_version"] == 8
    table5 = {name: o for name, o, _ in expand(sweep_config("table5", "").sweep)}
    assert table5["cnn"]["experiment.test_version"] == 6
    assert table5["ours_augmentation"]["experiment.train_versions"] == (8, 7, 6, 5, 4, 3, 2, 1)


def test_paper_numbers_name_real_runs_and_grids_narrow_from_the_command_line():
    from serjax.sweeps import PAPER, SWEEPS

    for sweep, run in PAPER:  # a mistyped key would silently drop the paper's column
        assert run in {name for name, _, _ in expand(sweep_config(sweep, "").sweep)}, (sweep, run)
    for name in SWEEPS:  # every grid argument is a config field
        assert expand(sweep_config(name, "").sweep) == SWEEPS[name]()
    config = sweep_config("table5", "")
    config.sweep.grid.augmentation = (8, 7)
    runs = dict((n, o) for n, o, _ in expand(config.sweep))
    assert runs["ours_augmentation"]["experiment.train_versions"] == (8, 7)
    fig9 = {n: o for n, o, _ in expand(sweep_config("fig9", "").sweep)}
    assert fig9["k5_v3"]["model.eca_layers"] == (5, 6) and fig9["k5_v3"]["model.eca_kernel"] == 5
    fig7 = {n: (o, c) for n, o, c in expand(sweep_config("fig7", "").sweep)}
    assert fig7["cnn_v4"][0]["model.eca_layers"] == () and fig7["cnn_v4"][1] == ("cnn", 4)


def test_run_config_applies_and_locks():
    config = sweep_config("fig6", "small")
    run = run_config(config, dict(expand(config.sweep)[5][1]))
    assert "sweep" not in run and run.model.width_scale == 1 and run.experiment.test_version == 6
    assert run.data.corpus == "synthetic" and run.is_locked
    with pytest.raises(SerjaxError, match="model.widht_scale"):
        run_config(config, {"model.widht_scale": 2})
    with pytest.raises(ValueError, match="config argument"):
        sweep_config("fig6", "tiny")
    loso = sweep_config("table5", "small,loso")
    assert loso.protocol.name == "leave_one_session_out" and loso.data.corpus == "synthetic"
    assert sweep_config("table5", "loso").data.corpus == "iemocap"
    assert sweep_config("table5", "").protocol.name == "stratified_kfold"


def fake_summary(ua, wa, corpus="synthetic", eca=False):
    block = lambda v: {"mean": v, "std": 0.02}
    summary = {
        "corpus": corpus,
        "protocol": "stratified_kfold",
        "classes": CLASSES,
        "num_utterances": 400,
        "train_versions": [8],
        "test_version": 8,
        "seeds": [0],
        "epochs": 6,
        "selection": "last epoch",
        "ua": block(ua),
        "wa": block(wa),
        "acc": block((ua + wa) / 2),
        "f1": block(ua - 0.05),
        "per_fold": [
            {
                "fold": "fold0",
                "n_test": 10,
                "ua": ua,
                "wa": wa,
                "acc": (ua + wa) / 2,
                "f1": ua - 0.05,
            }
        ],
        "per_seed": [{"seed": 0, "ua": ua, "wa": wa, "acc": (ua + wa) / 2, "f1": ua - 0.05}],
        "confusion": [[5, 1, 0, 0], [0, 4, 1, 1], [2, 0, 6, 2], [0, 1, 1, 8]],
    }
    if eca:
        summary["eca_weights"] = {
            "eca5": [[0.5 + 0.01 * c] * 8 for c in range(4)],
            "eca6": [[0.4 + 0.02 * c] * 8 for c in range(4)],
        }
    return summary


def test_finished_runs_are_skipped(tmp_path):
    config = sweep_config("fig6", "small")
    config.sweep.grid = {"widths": (1,), "versions": (4,)}
    run_dir = tmp_path / "n1_v4"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps(fake_summary(0.5, 0.6)))
    summaries = run_sweep(config, tmp_path, progress=False)
    assert summaries[0]["ua"]["mean"] == 0.5
    assert not (run_dir / "metrics.jsonl").exists()  # nothing was trained
    assert (run_dir / "config.json").exists()
    # the workdir's config is checked: a different config is refused, not overwritten
    other = sweep_config("fig6", "small")
    other.sweep.grid = {"widths": (1,), "versions": (4,)}
    other.train.epochs = 7
    with pytest.raises(SerjaxError, match=r"fields that differ: train\.epochs"):
        run_sweep(other, tmp_path, progress=False)


def test_sweep_report_from_stored_results(tmp_path):
    config = sweep_config("table5", "small")
    values = {
        "cnn": (0.50, 0.60),
        "original_eca": (0.52, 0.58),
        "ours": (0.61, 0.63),
        "cnn_augmentation": (0.55, 0.57),
    }  # ours_augmentation unfinished
    for name, (ua, wa) in values.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(
            json.dumps(fake_summary(ua, wa, eca=name == "ours"))
        )
    cli.report(config, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "Finished runs: 4 of 5" in report
    assert (
        "| [ours](ours/report.md) | + our ECA block |  | 61.00 ± 2.00 | 63.00 ± 2.00 "
        "| 62.00 ± 2.00 | 56.00 ± 2.00 |  |  | 79.37 / 79.68 / 79.53 |" in report
    )
    assert "synthetic data" in report
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [r["run"] for r in rows] == ["cnn", "original_eca", "ours", "cnn_augmentation"]
    assert (
        float(rows[0]["ua_mean"]) == pytest.approx(50.0) and rows[0]["paper_iemocap_ua"] == "79.16"
    )
    assert (rows[0]["corpus"], rows[0]["protocol"], rows[0]["num_folds"]) == (
        "synthetic",
        "stratified_kfold",
        "1",
    )
    assert "(not comparable: another corpus; 1 folds, the paper's 5)" in report
    # a speaker-independent sweep on IEMOCAP: the paper's random-fold numbers are not comparable
    for name in values:
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        summary.update(
            corpus="iemocap", protocol="leave_one_session_out", per_fold=summary["per_fold"] * 5
        )
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    cli.report(config, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "leave-one-session-out (speaker-independent), 5 folds" in report
    assert (
        "(not comparable: the paper's random 5-fold split is speaker-dependent, "
        "this protocol is not)" in report
    )
    for name in values:
        assert (tmp_path / name / "report.md").exists()
        assert (tmp_path / name / "figures" / "confusion.png").stat().st_size > 5000
    assert (tmp_path / "ours" / "figures" / "eca_weights.png").stat().st_size > 5000
    assert not (tmp_path / "cnn" / "figures" / "eca_weights.png").exists()


def test_sweep_figure_and_pivot(tmp_path):
    config = sweep_config("fig9", "small")
    config.sweep.grid = {"kernels": (3, 7), "versions": (1, 8)}
    for i, (name, _, _) in enumerate(expand(config.sweep)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(fake_summary(0.4 + 0.05 * i, 0.5)))
    cli.write_sweep_report(config, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "| k = 3 | 45.00 | 47.50 |" in report and "| k = 7 | 50.00 | 52.50 |" in report
    assert (tmp_path / "figures" / "scores.png").stat().st_size > 10000


def test_run_report_figures(tmp_path):
    config = sweep_config("fig6", "small")
    (tmp_path / "metrics.jsonl").write_text(
        "".join(
            json.dumps(
                {"fold": f, "seed": 0, "epoch": e, "train_loss": 1.0 / e, "test_ua": 0.3 + 0.05 * e}
            )
            + "\n"
            for f in ("fold0", "fold1")
            for e in (1, 2, 3)
        )
    )
    cli.write_run_report(tmp_path, run_config(config, {}), fake_summary(0.5, 0.6, eca=True))
    report = (tmp_path / "report.md").read_text()
    assert "![training curves](figures/curves.png)" in report
    for name in ("confusion", "curves", "eca_weights"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 5000


def test_train_writes_each_runs_report_as_it_finishes_then_the_sweeps(tmp_path, monkeypatch):
    # the command layer writes every report: experiment.run only leaves the run's summary.json
    from serjax import experiment

    def fake_run(config, workdir, progress=True):
        if workdir.name == "k3_v8" and stop:
            raise KeyboardInterrupt  # a sweep stopped during its second run
        workdir.mkdir(parents=True, exist_ok=True)
        summary = {**fake_summary(0.5, 0.6, eca=True), "wall_time_s": 3.0, "invocations": 1}
        (workdir / "summary.json").write_text(json.dumps(summary))
        return summary

    monkeypatch.setattr(experiment, "run", fake_run)
    config = sweep_config("fig9", "small")
    config.sweep.grid = {"kernels": (3,), "versions": (1, 8)}
    sweep = tmp_path / "sweep"
    stop = True
    with pytest.raises(KeyboardInterrupt):
        cli.train(config, sweep)
    first = (sweep / "k3_v1" / "report.md").read_text()
    assert "ECA after blocks (5, 6) with kernel sizes (3, 3), no BatchNorm" in first
    assert not (sweep / "k3_v8").exists() and not (sweep / "report.md").exists()
    stop = False
    cli.train(config, sweep)
    assert (sweep / "k3_v1" / "report.md").read_text() == first
    assert (sweep / "k3_v8" / "figures" / "eca_weights.png").stat().st_size > 5000
    assert "Finished runs: 2 of 2" in (sweep / "report.md").read_text()
    # a single run: its report.md after training is the one --mode=report rebuilds
    single = tmp_path / "single"
    cli.train(run_config(config, {}), single)
    trained = (single / "report.md").read_text()
    assert "Wall time: 3 s." in trained
    (single / "report.md").unlink()
    cli.report(run_config(config, {}), single)
    assert (single / "report.md").read_text() == trained
    with pytest.raises(SerjaxError, match="holds a sweep's runs \\(k3_v1, k3_v8\\)"):
        cli.report(run_config(config, {}), sweep)


def test_quickstart_loso_variant():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "configs" / "quickstart.py"
    spec = importlib.util.spec_from_file_location("quickstart_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    loso, plain = module.get_config("loso"), module.get_config("")
    assert loso.protocol.name == "leave_one_session_out" and loso.train.validation_fraction == 0.15
    assert plain.protocol.name == "stratified_kfold" and plain.train.validation_fraction == 0.0
    with pytest.raises(ValueError, match="config argument"):
        module.get_config("small")


# --- issue #20 item 12: ACC defined where shown; sweep figures on one scale, with chance ---


def sweep_rows(corpus="synthetic"):
    """Rows as serjax.sweeps.report_inputs gathers them: two series over three x values,
    UA far below WA (separate y ranges would hide that)."""
    return [
        {
            "name": f"{series}_v{x}",
            "series": series,
            "x": x,
            "summary": fake_summary(0.30 + 0.02 * x + 0.05 * k, 0.70 + 0.01 * x, corpus=corpus),
            "paper": None,
        }
        for k, series in enumerate(("cnn", "ours"))
        for x in (1, 4, 8)
    ]


def texts_of(fig):
    return " ".join(
        [t.get_text() for t in fig.texts]
        + ([fig._suptitle.get_text()] if fig._suptitle is not None else [])
    )


def test_reports_define_acc_and_chance(tmp_path):
    config = sweep_config("fig9", "small")
    config.sweep.grid = {"kernels": (3,), "versions": (1, 8)}
    for name, _, _ in expand(config.sweep):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(fake_summary(0.5, 0.6)))
    cli.report(config, tmp_path)
    for report in (tmp_path / "report.md", tmp_path / "k3_v1" / "report.md"):
        text = report.read_text()
        assert "**ACC = (UA + WA) / 2**, the paper's ACC" in text and "*not* plain accuracy" in text
        assert "1 / 4 classes = 25.00% UA" in text  # chance, said in words
        # the definition comes before the first table that shows ACC
        assert text.index("ACC = (UA + WA) / 2") < text.index("| ACC |")
    sweep = (tmp_path / "report.md").read_text()
    assert "## ACC (%) by series and STFT version (ACC = (UA + WA) / 2)" in sweep
    assert "the dashed line is chance (1 / 4 classes)" in sweep


def test_sweep_figure_panels_share_one_y_range_with_chance_and_the_corpus():
    import matplotlib.pyplot as plt

    from serjax import figures

    fig = figures.draw_sweep_curves(sweep_rows(), "STFT version", "fig9 (small)")
    try:
        panels = fig.axes
        assert [ax.get_title() for ax in panels] == [
            "UA (mean per-class recall)",
            "WA (plain accuracy)",
            "ACC = (UA + WA) / 2",
        ]
        limits = {ax.get_ylim() for ax in panels}
        assert len(limits) == 1  # one y range for every panel
        (low, high) = limits.pop()
        assert low < 25 and high > 100 * (0.70 + 0.08 + 0.02)  # chance and every error bar
        for ax in panels:  # chance is drawn in each panel, and named once in the legend
            chance = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
            assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(25.0)
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert "chance: 1 / 4 classes = 25%" in legend and {"cnn", "ours"} <= set(legend)
        assert "SYNTHETIC corpus" in texts_of(fig)
    finally:
        plt.close(fig)
    real = figures.draw_sweep_curves(sweep_rows("iemocap"), "STFT version", "fig9")
    try:
        assert "SYNTHETIC" not in texts_of(real) and "corpus: iemocap" in texts_of(real)
    finally:
        plt.close(real)
    # the limits come from every metric's mean ± std, and chance
    assert figures.sweep_y_range(sweep_rows(), floor=25.0)[0] < 25.0


def test_eca_weights_are_an_emotion_by_channel_heatmap():
    import matplotlib.pyplot as plt
    import numpy as np

    from serjax import figures

    weights = fake_summary(0.5, 0.6, eca=True)["eca_weights"]
    weights["eca6"][2] = None  # no test utterance of `hap` in the model's fold
    fig = figures.draw_eca_weights(weights, CLASSES, corpus="synthetic")
    try:
        images = [ax.images[0] for ax in fig.axes if ax.images]
        assert len(images) == 4  # two blocks × (weights, minus the mean over emotions)
        for image in images:
            assert image.get_array().shape == (4, 8)  # emotion × channel
        weights5 = images[0].get_array()
        np.testing.assert_allclose(weights5[:, 0], [0.50, 0.51, 0.52, 0.53])
        assert images[2].get_array().mask[2].all()  # eca6's missing class: a blank row
        tick_labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert tick_labels == CLASSES  # the rows are named by their emotion
        assert not any(ax.get_lines() for ax in fig.axes)  # no overlaid lines
        assert "SYNTHETIC corpus" in texts_of(fig)
    finally:
        plt.close(fig)
