"""Recurrent generation, the loop itself (no Django): regenerate what RFNet rejects.

Per group (a product × prompt template) up to `budget` attempts with new seeds, until an
attempt's P(available) reaches `threshold`; that attempt is kept and the group closes. Every
attempt is handed to `on_attempt` (the job stores and links it). The generator and the scorer
are callables, so the same loop runs the diffusion job and, in the honest gating test, the
procedural generator whose true labels are known.

Rounds: round k generates attempt k of every still-open group (batched), then scores them all;
a resumed run passes what earlier attempts already decided (`done`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Attempt:
    group: Hashable
    attempt: int  # 1-based
    seed: int
    payload: Any = None  # what the generator made (an image, a stored row…)
    seconds: float = 0.0  # compute spent generating it
    score: float | None = None
    kept: bool = False


@dataclass
class GroupState:
    attempts: int = 0
    kept: bool = False


@dataclass
class Stats:
    groups: int = 0
    attempts: int = 0
    kept: int = 0
    first_attempt_kept: int = 0
    seconds: float = 0.0
    attempts_of_kept: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "groups": self.groups,
            "attempts": self.attempts,
            "kept": self.kept,
            "usable_rate": self.kept / self.groups if self.groups else None,
            # The gate's pass rate on first attempts: the generator's RFNet-judged usable rate.
            "first_attempt_usable_rate": (
                self.first_attempt_kept / self.groups if self.groups else None
            ),
            "attempts_per_usable_image": self.attempts / self.kept if self.kept else None,
            "compute_seconds": round(self.seconds, 3),
            "compute_seconds_per_usable_image": (
                round(self.seconds / self.kept, 3) if self.kept else None
            ),
        }


def attempt_seed(seed_start: int, attempt: int, stride: int = 1) -> int:
    """The seed of attempt k (1-based): seed_start, seed_start + stride, … (new every attempt)."""
    return int(seed_start) + (int(attempt) - 1) * int(stride)


def recurrent(
    *,
    groups: Sequence[Hashable],
    budget: int,
    threshold: float,
    generate: Callable[[list[Attempt]], list[Attempt]],
    score: Callable[[list[Attempt]], Sequence[float]],
    on_attempt: Callable[[Attempt], None] | None = None,
    seed_for: Callable[[Hashable, int], int] | None = None,
    done: dict[Hashable, GroupState] | None = None,
    on_round: Callable[[int, Stats], None] | None = None,
) -> Stats:
    """Run the loop; returns the statistics (over the groups decided in this call and `done`)."""
    if budget < 1:
        raise ValueError("budget must be >= 1")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError("threshold must be in [0, 1]")
    seed_for = seed_for or (lambda g, k: attempt_seed(0, k))
    state = {g: GroupState() for g in groups}
    for g, s in (done or {}).items():
        if g in state:
            state[g] = s
    stats = Stats(groups=len(state))
    for s in state.values():
        stats.attempts += s.attempts
        stats.kept += int(s.kept)
    for k in range(1, budget + 1):
        todo = [
            Attempt(group=g, attempt=k, seed=seed_for(g, k))
            for g, s in state.items()
            if not s.kept and s.attempts < k
        ]
        if not todo:
            continue
        made = generate(todo)
        scores = score(made)
        for a, p in zip(made, scores, strict=True):
            a.score = float(p)
            a.kept = a.score >= threshold
            s = state[a.group]
            s.attempts = a.attempt
            stats.attempts += 1
            stats.seconds += a.seconds
            if a.kept:
                s.kept = True
                stats.kept += 1
                stats.attempts_of_kept.append(a.attempt)
                if a.attempt == 1:
                    stats.first_attempt_kept += 1
            if on_attempt is not None:
                on_attempt(a)
        if on_round is not None:
            on_round(k, stats)
    return stats
