"""Course chapter 2: two-tower retrieval.

- :mod:`baselines.two_tower.queries`: the seeded Myntra query-product benchmark (generated queries, graded labels).
- :mod:`baselines.two_tower.model`: the MiniLM towers + heads and the masked in-batch loss.
- :mod:`baselines.two_tower.search`: query -> product two-tower (MiniLM towers, in-batch + hard negatives), BM25 and
  frozen-MiniLM rows, evaluated on the benchmark.
- :mod:`baselines.two_tower.user_history`: Beauty user-history two-tower (next item from the user's history).
"""
