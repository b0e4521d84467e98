import torch

import skiplab
from skiplab.diagnostics.identity import IdentityProbe, identity_blocks
from skiplab.nn import ZeroGamma


def test_identity_blocks_counts_exact_identities_only():
    x = torch.randn(4, 1, 40)
    torch.manual_seed(0)
    zg = skiplab.create_model("resmlp", depth=10, branch_init=ZeroGamma())
    assert identity_blocks(zg, x) == (5, 5)
    torch.manual_seed(0)
    std = skiplab.create_model("resmlp", depth=10)
    assert identity_blocks(std, x) == (0, 5)
    # the whole zero-gamma stack is its stem: head(stem(x)) exactly
    with torch.no_grad():
        head, stem = zg.get_submodule("head"), zg.get_submodule("stem")
        assert torch.equal(zg.eval()(x), head(stem(x.flatten(1))))


def test_identity_probe_names_blocks_and_removes_its_hooks():
    torch.manual_seed(0)
    model = skiplab.create_model("resnet20", dim=1, in_channels=1, branch_init=ZeroGamma())
    probe = IdentityProbe()
    with torch.no_grad(), probe.attached(model):
        assert probe.num_hooks == 9
        model.eval()(torch.randn(2, 1, 40))
    assert probe.num_hooks == 0
    rec = probe.collect()
    assert len(rec["blocks"]) == 9 and all(rec["exact"])
    assert all(isinstance(name, str) and name for name in rec["blocks"])
    # a plain twin has no shortcut to compare with: nothing is recorded
    plain = skiplab.create_model("resnet20", dim=1, in_channels=1, skip=False)
    assert identity_blocks(plain, torch.randn(2, 1, 40)) == (0, 0)
