"""Blocks are the modules that own the merges found, by qualified name, on real models."""

import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch_geometric")

import zoo

from skiplab.diagnostics import find_blocks

NAMES = {
    "gpt2": [f"transformer.h.{i}" for i in range(3)],
    "llama": [f"model.layers.{i}" for i in range(2)],
    "bert": [f"bert.encoder.layer.{i}" for i in range(2)],  # both adds of a layer: one block
    "t5": [f"encoder.block.{i}.layer.{j}" for i in range(2) for j in range(2)]
    + [f"decoder.block.{i}.layer.{j}" for i in range(2) for j in range(3)],
    "vit_hf": [f"vit.layers.{i}" for i in range(2)],
    "deepgcn": [f"layers.{i}" for i in (1, 2, 3)],  # layer 0 is only run for its conv
    "gcnii": [f"convs.{i}" for i in range(3)],  # P x runs back through convs: the owner
    "gcn_jk": [f"convs.{i}" for i in range(3)],  # jk's cat has no parameters: repeated units
    "resnet": ["layer1.0", "layer1.1", "layer2.0"],
    "densenet": [f"block.{i}" for i in range(3)],
    "convnext": ["stages.0", "stages.1"],
    "vit": ["blocks.0", "blocks.1"],
}


@pytest.mark.parametrize("name", list(NAMES))
def test_blocks_are_the_modules_owning_the_merges(name):
    model, inputs, _ = zoo.build(name)
    blocks = find_blocks(model, inputs)
    assert [n for n, _ in blocks] == NAMES[name]
    assert len(blocks) == zoo.BLOCKS.get(name, len(NAMES[name]))
    assert all(model.get_submodule(n) is m for n, m in blocks)


def test_without_inputs_the_repeated_units_stand_in():
    model, _, _ = zoo.build("gpt2")
    assert [n for n, _ in find_blocks(model)] == [f"transformer.h.{i}" for i in range(3)]
