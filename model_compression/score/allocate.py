"""Per-layer compression levels from sensitivity scores, within a budget.

Each layer offers levels (a sparsity, a bit width), each with a measured distortion (the
quality lost when that layer alone is compressed to it: ``score.sensitivity``) and a
cost (the weights or bits it keeps). Every layer starts at its costliest, least distorting
level; while the total cost is over budget, the one step down (to the layer's next
cheaper level) that adds the least distortion per unit of cost saved is taken. Fragile
layers therefore keep more weights or bits than robust ones, instead of one global number.
"""

from __future__ import annotations

# layer -> level -> (distortion, cost)
Options = dict[str, dict[float, tuple[float, float]]]


def allocate(options: Options, budget: float) -> dict[str, float]:
    """``{layer: level}`` whose total cost is at most ``budget``, greedily least distorting.

    Raises:
        ValueError: no layer offers a level, or even the cheapest levels exceed the budget.
    """
    if not options or any(not levels for levels in options.values()):
        raise ValueError("allocate needs at least one level per layer")
    ladders = {n: sorted(levels.items(), key=lambda kv: -kv[1][1]) for n, levels in options.items()}
    pos = dict.fromkeys(ladders, 0)
    cheapest = sum(ladder[-1][1][1] for ladder in ladders.values())
    if cheapest > budget:
        raise ValueError(f"budget {budget:.6g} is below the cheapest allocation {cheapest:.6g}")
    total = sum(ladder[0][1][1] for ladder in ladders.values())
    while total > budget:
        best, best_rate = None, float("inf")
        for n, ladder in ladders.items():
            if pos[n] + 1 < len(ladder):
                (_, (d0, c0)), (_, (d1, c1)) = ladder[pos[n]], ladder[pos[n] + 1]
                rate = max(d1 - d0, 0.0) / max(c0 - c1, 1e-12)
                if rate < best_rate:
                    best, best_rate = n, rate
        assert best is not None  # cheapest <= budget guarantees a move remains
        total -= ladders[best][pos[best]][1][1] - ladders[best][pos[best] + 1][1][1]
        pos[best] += 1
    return {n: ladder[pos[n]][0] for n, ladder in ladders.items()}
