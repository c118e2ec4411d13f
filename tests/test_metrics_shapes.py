"""genlab eval's `shapes` metric: the nearest real image decides which shape a sample draws.

The search runs over every 997th shapes image here (740 of 737,280, all three shapes, every scale,
many rotations and positions), with chunks smaller than the candidates, to test the chunked search
in seconds; `genlab eval` searches all of them."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import REPO
from omegaconf import OmegaConf

import genlab.metrics.shapes as shapes_metric
from genlab.config.compose import compose_jobs
from genlab.data.shapes import NUM_IMAGES, factor_classes, render
from genlab.metrics.evaluation import evaluate
from genlab.metrics.shapes import nearest_real, shape_shares

CANDIDATES = torch.arange(0, NUM_IMAGES, 997)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(shapes_metric, "CHUNK_IMAGES", 128)


def real(index):
    return render(index, 16).float() / 255


def test_a_real_image_is_its_own_nearest_at_distance_zero():
    index = CANDIDATES[[0, 250, 500, 739]]
    found, dist_sq = nearest_real(real(index), 16, CANDIDATES)
    assert found.tolist() == index.tolist() and dist_sq.abs().max() < 1e-6


def test_rows_that_draw_their_class_score_one_and_a_wrong_row_scores_zero():
    shape = factor_classes(CANDIDATES)[:, 0]
    rows = torch.cat([CANDIDATES[shape == k][:4] for k in range(3)])
    labels = torch.arange(3).repeat_interleave(4)
    result = shape_shares(real(rows), labels, CANDIDATES)
    assert result["own_shape"] == {"square": 1.0, "ellipse": 1.0, "heart": 1.0} and result["min_own_shape"] == 1.0
    swapped = shape_shares(real(rows), labels.roll(4), CANDIDATES)  # every row draws another class's shape
    assert swapped["min_own_shape"] == 0.0


def test_an_unconditional_model_drawing_only_squares_has_no_other_shape():
    squares = CANDIDATES[factor_classes(CANDIDATES)[:, 0] == 0][:6]
    result = shape_shares(real(squares), None, CANDIDATES)
    assert result["share"] == {"square": 1.0, "ellipse": 0.0, "heart": 0.0, "blob": 0.0} and result["min_share"] == 0.0
    blank = shape_shares(torch.zeros(2, 1, 16, 16), None, CANDIDATES)
    assert blank["mean_dist_sq"] > 0 and sum(blank["share"].values()) == pytest.approx(1.0)


@pytest.mark.foreign_fixtures
@pytest.mark.parametrize("family", ["gan", "cgan"])
def test_genlab_eval_writes_the_metric_and_its_summary(tmp_path, monkeypatch, family):
    monkeypatch.setattr(shapes_metric, "NUM_IMAGES", 2000)  # the first 2,000 images: the plumbing, not the search
    ckpt = tmp_path / "last.pt"
    shutil.copy(REPO / "tests" / "fixtures" / "legacy" / f"{family}.pt", ckpt)
    settings = OmegaConf.to_container(compose_jobs("eval", ["ckpt=x", "n=12"])[0], resolve=True)
    result = evaluate(ckpt, settings, ["shapes"], torch.device("cpu"))
    saved = json.loads((tmp_path / "eval.json").read_text())
    key = "shapes_min_own" if family == "cgan" else "shapes_min_share"
    assert saved["summary"] == result["summary"] and set(saved["summary"]) == {key}
    assert saved["metrics"]["shapes"]["n"] == 12
