"""The CPU comparison's timing loop (cupy_core/bench/authors.py): every contender runs
the same number of frames and takes every place in the order equally often (with a
fixed order the timings depended on the place)."""
from cupy_core.bench.authors import interleaved


def test_interleaved_turns_the_order_each_round():
    calls = []
    fns = {k: (lambda k=k: calls.append(k)) for k in ("a", "b", "c")}
    wall, cpu = interleaved(fns, 6)
    assert set(wall) == set(cpu) == {"a", "b", "c"}
    assert all(v >= 0 for v in list(wall.values()) + list(cpu.values()))
    rounds = [calls[i:i + 3] for i in range(6, len(calls), 3)]   # after 2 warm-up rounds
    assert len(rounds) == 6 and all(sorted(r) == ["a", "b", "c"] for r in rounds)
    for place in range(3):       # each contender twice in each place
        assert sorted(r[place] for r in rounds) == ["a", "a", "b", "b", "c", "c"]
