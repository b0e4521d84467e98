import itertools
import math
import random

import pytest

from skiplab.claims import reproduce, select_claims
from skiplab.claims.c17_disulfide_staple import LatticeChain, lattice_distance, staged_stapling
from skiplab.store import Store


def _valid(chain):
    pos = chain.pos
    bonds = all(lattice_distance(a, b) == 1 for a, b in itertools.pairwise(pos))
    return bonds and len(set(pos)) == len(pos) and set(pos) == chain.occupied


def test_moves_keep_the_chain_self_avoiding_and_stapled():
    rng = random.Random(0)
    free = LatticeChain(20, None, rng)
    for _ in range(20_000):
        free.step()
    assert _valid(free) and free.accepted > 1000
    start = staged_stapling(20, (3, 14), [5, 3, 1], 200, 20, 0)["stages"][-1]["last"]
    chain = LatticeChain(20, (3, 14, 1), rng, start)
    for _ in range(20_000):
        chain.step()
        assert lattice_distance(chain.pos[3], chain.pos[14]) == 1
    assert _valid(chain)


def test_contact_probability_of_a_short_loop_matches_exact_enumeration():
    # 4-residue chain, staple 0-3: of the 36 self-avoiding 3-step walks, 8 are U shapes
    # with ends in contact, so Delta S = ln(8 / 36).
    runs = [staged_stapling(4, (0, 3), [1], 4000, 50, seed)["delta_s"] for seed in range(3)]
    assert sum(runs) / 3 == pytest.approx(math.log(8 / 36), abs=0.06)


def test_impossible_staples_are_refused():
    with pytest.raises(ValueError, match="parity"):
        LatticeChain(20, (2, 12, 1), random.Random(0))  # j - i even: never in contact
    with pytest.raises(ValueError, match="satisfy"):
        LatticeChain(20, (2, 13, 1), random.Random(0))  # a straight line is not stapled


def test_claim_holds_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C17"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status == "holds", out.reason
        num = store.latest_verdict("C17", "tiny").evidence["numbers"]
    assert num["delta_s"] < -2
    assert num["stapled_rg_std"] < 0.7 * num["free_rg_std"]
    assert num["stapled_end_mean"] < 0.7 * num["free_end_mean"]
