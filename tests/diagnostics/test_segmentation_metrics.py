import numpy as np
import pytest

from skiplab.diagnostics.segmentation import boundary_f1, dice, iou, segmentation_scores


def test_overlap_metrics_closed_form():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:, :5] = True
    b[:, :4] = True
    assert dice(a, b)[0] == pytest.approx(2 * 40 / 90)
    assert iou(a, b)[0] == pytest.approx(40 / 50)
    assert dice(np.zeros((4, 4)), np.zeros((4, 4)))[0] == 1.0


def test_boundary_f1_tolerance_and_missing_membrane():
    truth = np.zeros((20, 20), bool)
    truth[2:18, 2:9] = True
    truth[2:18, 11:18] = True  # two cells split by a 2-pixel membrane
    shifted = np.roll(truth, 1, axis=1)
    assert boundary_f1(truth, truth)[0] == 1.0
    assert boundary_f1(shifted, truth, tolerance=1)[0] == 1.0
    assert boundary_f1(shifted, truth, tolerance=0)[0] < 0.7
    merged = np.zeros_like(truth)
    merged[2:18, 2:18] = True  # membrane missed
    s = segmentation_scores(merged, truth)
    assert s["dice"] > 0.9  # region overlap barely notices
    assert s["boundary_f1"] < s["dice"] - 0.05  # the boundary score does
    with pytest.raises(ValueError, match="differ in shape"):
        dice(truth, truth[:5])
