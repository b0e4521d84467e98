"""The shared figure style: colours are a fixed mapping, the same in every process."""

import os
import stat
import subprocess
import sys

import matplotlib.pyplot as plt
import pytest

from skiplab import _plot
from skiplab._files import FileTargetError


def _colour_in_a_fresh_process(label: str, hash_seed: str) -> str:
    code = f"from skiplab import _plot; print(_plot.color_for({label!r}))"
    env = {"PYTHONHASHSEED": hash_seed, "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)  # fmt: skip
    return out.stdout.strip()


def test_a_label_has_the_same_colour_in_every_process():
    # str hashes are salted per process: a colour from hash() changes from run to run
    colours = {_colour_in_a_fresh_process("gated variant", seed) for seed in ("1", "2", "3")}
    assert len(colours) == 1
    assert colours == {_plot.color_for("gated variant")}


def test_residual_and_plain_labels_keep_their_colours():
    assert _plot.color_for("ResNet-56") == _plot.RESIDUAL
    assert _plot.color_for("plain-56") == _plot.PLAIN
    assert _plot.color_for("gated variant") in _plot.PALETTE


def _tiny_figure():
    fig, axes = _plot.subplots()
    axes[0, 0].plot([0, 1, 2], [1, 0, 1])
    return fig


def _temps(directory, name):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(f".{name}."))


def test_two_overlapping_saves_of_one_path_use_distinct_temp_files(tmp_path):
    # The inner save runs while the outer one is drawing: both are in flight at once, as in two
    # `skiplab report` processes writing one folder. A shared ".x.png.tmp" let one rename the
    # other's file away ("figures failed: FileNotFoundError ... .paths.png.tmp").
    target = tmp_path / "x.png"
    outer, inner = _tiny_figure(), _tiny_figure()
    seen: list[list[str]] = []

    def on_inner_draw(_event):
        if not seen:
            seen.append(_temps(tmp_path, "x.png"))

    def on_outer_draw(_event):
        if not seen:
            _plot.save(inner, target)

    inner.canvas.mpl_connect("draw_event", on_inner_draw)
    outer.canvas.mpl_connect("draw_event", on_outer_draw)
    _plot.save(outer, target)
    assert len(seen) == 1 and len(seen[0]) == 2, f"temp files while both saved: {seen}"
    assert _temps(tmp_path, "x.png") == []
    assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_ctrl_c_during_savefig_keeps_the_old_figure_removes_the_temp_and_closes(tmp_path):
    target = tmp_path / "x.png"
    target.write_bytes(b"old figure")
    fig = _tiny_figure()

    def interrupt(_event):
        raise KeyboardInterrupt

    fig.canvas.mpl_connect("draw_event", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _plot.save(fig, target)
    assert target.read_bytes() == b"old figure"
    assert _temps(tmp_path, "x.png") == []
    assert not plt.fignum_exists(fig.number), "the figure stays open in pyplot"


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_non_regular_figure_target_is_refused_and_kept(tmp_path, kind):
    target = tmp_path / "x.png"
    if kind == "directory":
        target.mkdir()
    else:
        os.mkfifo(target)
    fig = _tiny_figure()
    with pytest.raises(FileTargetError, match="not a regular file"):
        _plot.save(fig, target)
    assert target.is_dir() if kind == "directory" else stat.S_ISFIFO(target.stat().st_mode)
    assert _temps(tmp_path, "x.png") == []
    assert not plt.fignum_exists(fig.number)
