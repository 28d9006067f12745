"""Sequence alignment for ``relay diff``: which step (or notification) of A is which of B.

The keys of A and B are aligned by a longest common subsequence, so that one missing or extra
item is one finding and not a cascade. The LCS is Myers' O(ND) shortest edit script (E. Myers,
"An O(ND) Difference Algorithm and Its Variations", Algorithmica 1986), after stripping the
common head and tail: two recordings of one scenario differ in a few places, so D is small and
the work is close to linear. Past ``MAX_EDITS`` differences the inputs hardly correspond anyway
and difflib's SequenceMatcher (longest blocks first, not a true LCS) is used instead, to stay
fast on two unrelated 10,000-event cassettes.

What is left over is then paired in two more ways:

- an item whose key is left over on both sides was moved (with a true LCS, a key left over on
  both sides of one gap cannot happen: it would have been matched);
- in one gap, items whose *relaxed* key agrees (a step on another call, a notification about
  another call) are paired, so that their fields are compared instead of reporting a missing
  and an extra item.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

#: The work Myers may do, in (length of A + length of B) x differences, before giving way to
#: patience anchoring: about a second in CPython. Below it the alignment is a true LCS.
MAX_WORK = 20_000_000
#: Differences Myers is always allowed, however long the inputs.
MAX_EDITS = 400

_Opcode = tuple[str, int, int, int, int]


@dataclass(frozen=True, slots=True)
class Pair:
    """Aligned positions: ``a`` only (missing), ``b`` only (extra), or both (``moved`` when
    out of order)."""

    a: int | None
    b: int | None
    moved: bool = False


def _myers(
    a: Sequence[Hashable], b: Sequence[Hashable], max_d: int
) -> list[tuple[int, int]] | None:
    """The matched (i, j) of a longest common subsequence, or None past ``max_d`` edits.

    ``v[k + off]`` is the furthest x on diagonal k; each round keeps a copy of the diagonals it
    could reach (-d-1 .. d+1), so memory is O(D^2) and time O((N + M) D)."""
    n, m = len(a), len(b)
    max_d = min(max_d, n + m)
    off = max_d + 1
    v = [0] * (2 * max_d + 3)
    trace: list[list[int]] = []
    for d in range(max_d + 1):
        trace.append(v[off - d - 1 : off + d + 2])
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and v[off + k - 1] < v[off + k + 1]):
                x = v[off + k + 1]
            else:
                x = v[off + k - 1] + 1
            y = x - k
            while x < n and y < m and a[x] == b[y]:
                x += 1
                y += 1
            v[off + k] = x
            if x >= n and y >= m:
                return _backtrack(trace, n, m)
    return None


def _backtrack(trace: list[list[int]], n: int, m: int) -> list[tuple[int, int]]:
    matches: list[tuple[int, int]] = []
    x, y = n, m
    for d in range(len(trace) - 1, -1, -1):
        v = trace[d]  # diagonals -d-1 .. d+1 at the start of round d: index k + d + 1
        k = x - y
        up = k == -d or (k != d and v[k + d] < v[k + d + 2])
        prev_k = k + 1 if up else k - 1
        prev_x = v[prev_k + d + 1] if d > 0 else 0
        prev_y = prev_x - prev_k if d > 0 else 0
        while x > prev_x and y > prev_y:
            x, y = x - 1, y - 1
            matches.append((x, y))
        x, y = prev_x, prev_y
    matches.reverse()
    return matches


def _patience(a: Sequence[Hashable], b: Sequence[Hashable]) -> list[tuple[int, int]]:
    """Matches for inputs too different for Myers within ``MAX_WORK``: the keys that occur once
    in each are anchors (their longest increasing run, as patience diff), and the stretches
    between anchors are aligned again (Myers when small enough). Without anchors nothing is
    matched: the caller pairs what is left by relaxed key, in order. Not always a longest
    common subsequence, but near linear."""
    count_a: dict[Hashable, int] = {}
    for key in a:
        count_a[key] = count_a.get(key, 0) + 1
    where_b: dict[Hashable, int] = {}
    count_b: dict[Hashable, int] = {}
    for j, key in enumerate(b):
        count_b[key] = count_b.get(key, 0) + 1
        where_b[key] = j
    candidates = [
        (i, where_b[key]) for i, key in enumerate(a) if count_a[key] == 1 and count_b.get(key) == 1
    ]
    if not candidates:
        return []
    # Longest increasing subsequence of the b positions (patience sorting).
    tails: list[int] = []  # index into candidates of the smallest tail of each length
    back: list[int] = [-1] * len(candidates)
    for c, (_, j) in enumerate(candidates):
        lo, hi = 0, len(tails)
        while lo < hi:
            mid = (lo + hi) // 2
            if candidates[tails[mid]][1] < j:
                lo = mid + 1
            else:
                hi = mid
        back[c] = tails[lo - 1] if lo else -1
        if lo == len(tails):
            tails.append(c)
        else:
            tails[lo] = c
    anchors: list[tuple[int, int]] = []
    c = tails[-1]
    while c != -1:
        anchors.append(candidates[c])
        c = back[c]
    anchors.reverse()
    out: list[tuple[int, int]] = []
    i0 = j0 = 0
    for i, j in [*anchors, (len(a), len(b))]:
        out.extend((i0 + x, j0 + y) for x, y in _lcs(a[i0:i], b[j0:j]))
        if i < len(a):
            out.append((i, j))
        i0, j0 = i + 1, j + 1
    return out


def _lcs(a: Sequence[Hashable], b: Sequence[Hashable]) -> list[tuple[int, int]]:
    """Matched positions: a longest common subsequence when Myers can afford it."""
    n, m = len(a), len(b)
    lo = 0
    while lo < n and lo < m and a[lo] == b[lo]:
        lo += 1
    hi = 0
    while hi < n - lo and hi < m - lo and a[n - 1 - hi] == b[m - 1 - hi]:
        hi += 1
    mid_a, mid_b = a[lo : n - hi], b[lo : m - hi]
    middle: list[tuple[int, int]] = []
    if mid_a and mid_b:
        budget = max(MAX_EDITS, MAX_WORK // (len(mid_a) + len(mid_b)))
        found = _myers(mid_a, mid_b, budget)
        middle = found if found is not None else _patience(mid_a, mid_b)
    matches = [(t, t) for t in range(lo)]
    matches += [(i + lo, j + lo) for i, j in middle]
    matches += [(n - hi + t, m - hi + t) for t in range(hi)]
    return matches


def opcodes(a: Sequence[Hashable], b: Sequence[Hashable]) -> list[_Opcode]:
    """difflib-style opcodes (equal, replace, delete, insert) of an LCS alignment."""
    n, m = len(a), len(b)
    matches = _lcs(a, b)
    ops: list[_Opcode] = []
    i = j = 0
    for mi, mj in [*matches, (n, m)]:
        if mi > i or mj > j:
            tag = "replace" if mi > i and mj > j else "delete" if mi > i else "insert"
            ops.append((tag, i, mi, j, mj))
        if (mi, mj) == (n, m):
            break
        if ops and ops[-1][0] == "equal" and ops[-1][2] == mi and ops[-1][4] == mj:
            tag, i1, _, j1, _ = ops[-1]
            ops[-1] = ("equal", i1, mi + 1, j1, mj + 1)
        else:
            ops.append(("equal", mi, mi + 1, mj, mj + 1))
        i, j = mi + 1, mj + 1
    return ops


def align(
    a_keys: Sequence[Hashable],
    b_keys: Sequence[Hashable],
    a_relaxed: Sequence[Hashable],
    b_relaxed: Sequence[Hashable],
    a_middle: Sequence[Hashable] | None = None,
    b_middle: Sequence[Hashable] | None = None,
) -> list[Pair]:
    """Align two sequences by key: an LCS, then moves, then, gap by gap, an LCS of the
    ``middle`` keys (when given) and last pairs that differ in a detail (same relaxed key, in
    order); in A's order, with B's extras where they fall."""
    if len(a_keys) == len(b_keys) and all(x == y for x, y in zip(a_keys, b_keys, strict=True)):
        return [Pair(i, i) for i in range(len(a_keys))]  # the usual case, made cheap
    placed: list[tuple[tuple[float, int], Pair]] = []
    a_left: list[tuple[int, int]] = []  # (position, gap)
    b_left: list[tuple[int, int]] = []
    gap_end: list[int] = []
    for gap, (tag, i1, i2, j1, j2) in enumerate(opcodes(a_keys, b_keys)):
        gap_end.append(i2)
        if tag == "equal":
            placed.extend(
                ((i, 0), Pair(i, j)) for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            )
        else:
            a_left.extend((i, gap) for i in range(i1, i2))
            b_left.extend((j, gap) for j in range(j1, j2))
    waiting: dict[Hashable, deque[int]] = {}
    for j, _ in b_left:
        waiting.setdefault(b_keys[j], deque()).append(j)
    used: set[int] = set()
    rest_a: dict[int, list[int]] = {}
    for i, gap in a_left:
        queue = waiting.get(a_keys[i])
        if queue:
            j = queue.popleft()
            used.add(j)
            placed.append(((i, 0), Pair(i, j, moved=True)))
        else:
            rest_a.setdefault(gap, []).append(i)
    rest_b: dict[int, list[int]] = {}
    for j, gap in b_left:
        if j not in used:
            rest_b.setdefault(gap, []).append(j)
    for gap, ra in rest_a.items():
        rb = rest_b.get(gap, [])
        if not rb:
            placed.extend(((i, 0), Pair(i, None)) for i in ra)
            continue
        paired: dict[int, int] = {}
        if a_middle is not None and b_middle is not None:
            for tag, i1, i2, j1, j2 in opcodes(
                [a_middle[i] for i in ra], [b_middle[j] for j in rb]
            ):
                if tag == "equal":
                    paired.update(zip(ra[i1:i2], rb[j1:j2], strict=True))
        taken = set(paired.values())
        similar: dict[Hashable, deque[int]] = {}
        for j in rb:
            if j not in taken:
                similar.setdefault(b_relaxed[j], deque()).append(j)
        for i in ra:
            match = paired.get(i)
            if match is None:
                queue = similar.get(a_relaxed[i])
                match = queue.popleft() if queue else None
            if match is None:
                placed.append(((i, 0), Pair(i, None)))
            else:
                used.add(match)
                placed.append(((i, 0), Pair(i, match)))
    for j, gap in b_left:
        if j not in used:
            placed.append(((gap_end[gap] - 0.5, j), Pair(None, j)))
    placed.sort(key=lambda t: t[0])
    return [pair for _, pair in placed]
