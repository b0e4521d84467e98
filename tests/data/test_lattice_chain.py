import itertools
import math
import random

import pytest

from skiplab.data.lattice_chain import (
    LatticeChain,
    free_entropy,
    integrated_autocorrelation,
    lattice_distance,
    observables,
    staged_stapling,
)


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
    start = staged_stapling(20, (3, 14), [5, 3, 1], 200, 20, 0).stages[-1].last
    chain = LatticeChain(20, (3, 14, 1), rng, start)
    for _ in range(20_000):
        chain.step()
        assert lattice_distance(chain.pos[3], chain.pos[14]) == 1
    assert _valid(chain)


def test_contact_probability_of_a_short_loop_matches_exact_enumeration():
    # 4-residue chain, staple 0-3: of the 36 self-avoiding 3-step walks, 8 are U shapes
    # with ends in contact, so Delta S = ln(8 / 36).
    runs = [staged_stapling(4, (0, 3), [1], 4000, 50, seed).delta_s for seed in range(3)]
    assert sum(runs) / 3 == pytest.approx(math.log(8 / 36), abs=0.06)


def test_impossible_staples_and_ladders_are_refused():
    with pytest.raises(ValueError, match="parity"):
        LatticeChain(20, (2, 12, 1), random.Random(0))  # j - i even: never in contact
    with pytest.raises(ValueError, match="satisfy"):
        LatticeChain(20, (2, 13, 1), random.Random(0))  # a straight line is not stapled
    with pytest.raises(ValueError, match="decrease to 1"):
        staged_stapling(20, (3, 14), [5, 7, 1], 10, 1, 0)


def test_staged_stapling_reports_every_sweep_and_repeats_with_its_seed():
    seen = []
    out = staged_stapling(12, (2, 9), [3, 1], 30, 5, 7, on_sweep=lambda *a: seen.append(a))
    assert [s.reach for s in out.stages] == [None, 3, 1] and out.stapled is out.stages[-1]
    assert [(k, sweep) for k, sweep, _ in seen] == [(k, i) for k in range(3) for i in range(30)]
    assert [obs[0] for k, _, obs in seen if k == 0] == out.stages[0].rg
    assert all(obs[2] == 1 for k, _, obs in seen if k == 2)  # the stapled stage stays stapled
    again = staged_stapling(12, (2, 9), [3, 1], 30, 5, 7)
    assert again.delta_s == out.delta_s and again.stages[-1].last == out.stages[-1].last
    assert math.isclose(out.delta_s, sum(math.log(s.p_next) for s in out.stages[:-1]))


def test_observables_and_statistics():
    rg, end, dist = observables([(0, 0), (1, 0), (1, 1), (0, 1)], (0, 3))
    assert rg == pytest.approx(math.sqrt(0.5)) and end == 1.0 and dist == 1
    stage = staged_stapling(12, (2, 9), [3, 1], 50, 5, 0).stages[0]
    stats = stage.statistics()
    assert stats["rg_mean"] == pytest.approx(sum(stage.rg) / 50)
    assert 0 < stats["acceptance"] < 1 and stats["tau_rg"] >= 1
    assert integrated_autocorrelation([1.0, 1.0, 1.0]) == 1.0
    assert integrated_autocorrelation([float(i // 10) for i in range(200)]) > 5  # slow series
    assert free_entropy(100) == pytest.approx(99 * math.log(2.63815853) + 11 / 32 * math.log(99))
