"""The shared figure style: colours are a fixed mapping, the same in every process."""

import subprocess
import sys

from skiplab import _plot


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
