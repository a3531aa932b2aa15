"""The model report (cpv report) in a real headless browser, and cpv model plot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpv_core import DataCheckpointsManage, ModelsCheckpointsManage
from cpv_core.report import render_html, sparkline

from .helpers import write_data_dir, write_model
from .test_history import cpv

TEAM, MODEL = "AI-Convo", "whisper"
T = ["-t", TEAM, "--model-name", MODEL]
ROOT = Path(__file__).resolve().parents[1]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed here (CI installs it)")
    return found


BROWSER_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


def render(browser: str, page: Path) -> tuple[str, list[str]]:
    """The DOM Chromium built for ``page``, and every message the page wrote to its console."""
    done = subprocess.run([browser, *BROWSER_FLAGS, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture
def m(cpv_home, tmp_path) -> ModelsCheckpointsManage:
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    src = tmp_path / "data"
    write_data_dir(src)
    DataCheckpointsManage(TEAM, MODEL).upload_data_checkpoint(data_path=src)
    for seed, (loss, wer) in enumerate([(0.9, 0.12), (0.5, 0.09), (0.42, 0.1), (0.3, 0.07)], start=1):
        write_model(m.repo_path / "model.bin", 1000, seed=seed)
        m.upload_model_checkpoint(metrics={"loss": loss, "wer": wer, "acc": {"top1": 1 - wer}}, message=f"run {seed} <b>")
        if seed == 2:
            from cpv_core import CombinedCheckpointsManage

            CombinedCheckpointsManage(TEAM, MODEL).tag_model_and_data()
        else:
            m.tag_model_checkpoint()
    m.promote("v0.2", "prod")
    m.promote("v0.4", "staging")
    return m


def test_the_report_renders_in_a_headless_browser_with_a_plot_per_metric(m, tmp_path):
    report = tmp_path / "report.html"
    assert cpv("report", "-o", str(report), *T).stdout.strip() == str(report)
    page = report.read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page  # nothing fetched at view time
    assert "run 1 &lt;b&gt;" in page  # messages are shown, never interpreted
    browser = chromium()
    shot = ROOT / "docs" / "images" / "report.png" if os.environ.get("CPV_UPDATE_SCREENSHOT") else tmp_path / "report.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [browser, *BROWSER_FLAGS, "--window-size=1200,1400", f"--screenshot={shot}", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    dom, console = render(browser, report)
    assert console == [], console
    # the console check itself: a page with a script error is caught
    broken = tmp_path / "broken.html"
    broken.write_text("<!doctype html><p>x</p><script>console.error('boom'); missingFunction();</script>")
    assert len(render(browser, broken)[1]) == 2
    plots = re.findall(r'<svg class="metric-plot" data-metric="([^"]+)"', dom)
    assert plots == ["acc.top1", "loss", "wer"]
    assert dom.count("<polyline") == 3 and dom.count('class="stage-marker"') == 6  # 2 stages x 3 plots
    assert ">prod<" in dom and ">staging<" in dom and "v0.1" in dom  # data lineage column


def test_model_plot_prints_a_sparkline(m):
    out = cpv("model", "plot", "loss", *T).stdout.splitlines()
    assert out[0] == "loss  v0.1 █▃▂▁ v0.4"
    assert out[1] == "min 0.3 (v0.4)  max 0.9 (v0.1)  latest 0.3 (v0.4)"
    assert "choose one of: acc.top1, loss, wer" in cpv("model", "plot", "bleu", *T, expect=2).output
    assert sparkline([1.0, None, 3.0]) == "▁ █"


def test_an_empty_history_still_renders(tmp_path):
    page = render_html("T", "M", [], "now")
    assert "No numeric metrics recorded." in page and "0 model version(s)" in page


@settings(max_examples=80, deadline=None)
@given(message=st.text(max_size=40), metric=st.text(min_size=1, max_size=20), value=st.floats(allow_nan=False, allow_infinity=False))
def test_repository_text_is_shown_never_interpreted(message, metric, value):
    from cpv_core.report import VersionRow

    rows = [VersionRow("v0.1", "2026-01-01", "<img src=x onerror=alert(1)>", message, {metric: value}, ("prod",), "v0.1")]
    page = render_html("T", "M", rows, "now")
    assert "<img" not in page and "<script" not in page
    if "<" in message or "<" in metric:
        assert "&lt;" in page


def test_a_version_with_15000_metrics_is_flattened_once_and_plots_a_bounded_number_of_charts(monkeypatch):
    """`cpv report` was quadratic in the number of metrics (every metric re-flattened every
    version's metrics: 15 000 metrics took 97 s). Counted, not timed: each version's metrics
    are flattened a bounded number of times, whatever their number."""
    import cpv_core.metrics as metrics_module
    import cpv_core.report as report_module
    from cpv_core.report import MAX_PLOTTED_SERIES, VersionRow

    calls = {"n": 0}
    real = metrics_module.flatten_metrics

    def counted(metrics, prefix=""):
        calls["n"] += 1
        return real(metrics, prefix)

    monkeypatch.setattr(metrics_module, "flatten_metrics", counted)
    monkeypatch.setattr(report_module, "flatten_metrics", counted)
    rows = [VersionRow(f"v0.{i}", "2026-01-01", "a", "", {f"m{j}": float(i + j) for j in range(15_000)}) for i in (1, 2, 3)]
    page = render_html("T", "M", rows, "now")
    assert calls["n"] <= 3 * len(rows)
    assert page.count('class="metric-plot"') == MAX_PLOTTED_SERIES
    assert f"{15_000 - MAX_PLOTTED_SERIES} more numeric metric(s) not plotted" in page


def test_y_axis_labels_fit_left_of_the_axis_and_every_column_has_a_header():
    import re

    from cpv_core.report import LEFT, VersionRow

    rows = [VersionRow(f"v0.{i}", "2026-01-01", "a", "", {"lr": v}) for i, v in enumerate((-1.234e-05, 3.5e-06), start=1)]
    page = render_html("T", "M", rows, "now")
    label_x = [float(x) for x in re.findall(r'<text x="([0-9.]+)" y="[0-9.]+" class="tick" text-anchor="end">', page)]
    assert label_x and all(x >= 10 * 6.5 for x in label_x)  # room for 10 characters at 11 px
    assert LEFT - 4 in label_x
    header = page.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert "<th></th>" not in header and header.count("<th>") == len(page.split("<tbody>", 1)[1].split("</tr>", 1)[0].split("<td")) - 1
