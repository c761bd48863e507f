"""Who spoke each segment: speaker embeddings (the resemblyzer encoder shipped in its wheel),
clustered without being told how many speakers there are.

Clustering is average-linkage agglomeration on a distance that adds the cosine distance of the
embeddings and, weighted by ``pitch_weight``, the distance of the segments' median pitches in
octaves (``|log2(f1 / f2)|``); merging stops when the closest two clusters are ``threshold`` or more
apart, so the number of speakers is what the threshold finds. A segment's confidence is its
margin: how much nearer it is to its own cluster than to the next one, over the threshold.

Units: audio float32 mono at 16 kHz; embeddings unit vectors ``[S, 256]``; pitch in Hz (0 =
unvoiced, which then carries no pitch evidence).

Example:
    >>> import numpy as np
    >>> emb = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.1, 0.99]])
    >>> labels, conf = cluster_speakers(emb / np.linalg.norm(emb, axis=1, keepdims=True), threshold=0.3)
    >>> labels, round(conf, 2)
    ([0, 0, 1, 1], 1.0)
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

RATE_HZ = 16000


def pair_distances(
    emb: np.ndarray, pitch_hz: Optional[Sequence[float]] = None, *, pitch_weight: float = 0.0
) -> np.ndarray:
    """``[S, S]`` distances: cosine distance of unit embeddings plus ``pitch_weight`` × octave gap
    of the pitches (pairs where either pitch is 0 get no pitch term)."""
    d = np.clip(1.0 - emb @ emb.T, 0.0, 2.0)
    if pitch_hz is not None and pitch_weight > 0:
        f = np.asarray(pitch_hz, np.float64)
        voiced = f > 0
        lf = np.log2(np.where(voiced, f, 1.0))
        gap = np.abs(lf[:, None] - lf[None, :]) * (voiced[:, None] & voiced[None, :])
        d = d + pitch_weight * gap
    np.fill_diagonal(d, 0.0)
    return d


def cluster_distances(d: np.ndarray, *, threshold: float) -> Tuple[List[int], float]:
    """Average-linkage clusters of a ``[S, S]`` distance matrix, cut at ``threshold``: labels
    numbered by first appearance, and the mean per-segment confidence in [0, 1] (1 for one segment)."""
    n = d.shape[0]
    if n == 0:
        return [], 1.0
    if n == 1:
        return [0], 1.0
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    z = linkage(squareform(d, checks=False), method="average")
    raw = fcluster(z, t=threshold, criterion="distance")
    order: dict = {}
    labels = [order.setdefault(int(c), len(order)) for c in raw]
    return labels, _confidence(d, labels, threshold)


def _confidence(d: np.ndarray, labels: List[int], threshold: float) -> float:
    lab = np.asarray(labels)
    idx = np.arange(len(labels))
    margins = []
    for i in idx:
        own_members = (lab == lab[i]) & (idx != i)
        own = float(d[i, own_members].mean()) if own_members.any() else 0.0
        others = [float(d[i, lab == c].mean()) for c in set(labels) if c != lab[i]]
        if others:
            margins.append(float(np.clip((min(others) - own) / threshold, 0.0, 1.0)))
        else:  # one cluster: how far inside the threshold its members are
            margins.append(float(np.clip(1.0 - own / threshold, 0.0, 1.0)))
    return float(np.mean(margins))


def cluster_speakers(
    emb: np.ndarray, *, threshold: float, pitch_hz: Optional[Sequence[float]] = None, pitch_weight: float = 0.0
) -> Tuple[List[int], float]:
    """Speaker labels of ``S`` segments from their unit embeddings ``[S, D]`` (and pitches)."""
    return cluster_distances(pair_distances(emb, pitch_hz, pitch_weight=pitch_weight), threshold=threshold)


class SpeakerEncoder:
    """resemblyzer's GE2E voice encoder (its weights ship inside the wheel), on CPU."""

    def __init__(self) -> None:
        from resemblyzer import VoiceEncoder

        self._enc = VoiceEncoder(device="cpu", verbose=False)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """The unit embedding ``[256]`` of one segment (16 kHz mono float32). The encoder's own
        preprocessing trims its silences; a segment it would trim to nothing is embedded whole."""
        from resemblyzer import preprocess_wav

        wav = preprocess_wav(audio.astype(np.float32), source_sr=RATE_HZ)
        if len(wav) < RATE_HZ // 4:
            peak = float(np.abs(audio).max()) if len(audio) else 0.0
            wav = (audio / peak).astype(np.float32) if peak > 0 else audio.astype(np.float32)
        e = self._enc.embed_utterance(wav)
        return (e / max(1e-9, float(np.linalg.norm(e)))).astype(np.float32)


def cluster_constrained(
    d: np.ndarray,
    seen: Sequence[Optional[str]],
    quiet: Optional[Sequence[Set[str]]] = None,
    *,
    threshold: float,
) -> Tuple[List[int], float]:
    """Average-linkage clusters of a ``[S, S]`` voice-distance matrix with visual evidence.

    ``seen[i]`` names the one visible person whose mouth moved during segment ``i`` (None: no one,
    or several); ``quiet[i]`` the people visible during it whose mouths did not move. Segments seen
    on the same person start in one cluster; a cluster never merges with one seen on another
    person, nor with one that holds a segment during which its person was visible and quiet; the
    rest merge by voice while the closest pair is nearer than ``threshold``. Labels are numbered by
    first appearance; the confidence is as in :func:`cluster_distances`."""
    n = d.shape[0]
    if n == 0:
        return [], 1.0
    quiet = quiet if quiet is not None else [set() for _ in range(n)]
    groups: List[List[int]] = []
    names: List[Optional[str]] = []
    nots: List[Set[str]] = []
    by_name: Dict[str, int] = {}
    for i, who in enumerate(seen):
        if who is not None and who in by_name:
            g = by_name[who]
            groups[g].append(i)
            nots[g] |= set(quiet[i])
            continue
        if who is not None:
            by_name[who] = len(groups)
        groups.append([i])
        names.append(who)
        nots.append(set(quiet[i]))

    def compatible(a: int, b: int) -> bool:
        na, nb = names[a], names[b]
        if na is not None and nb is not None:
            return False  # two different people seen speaking
        return not (na is not None and na in nots[b]) and not (nb is not None and nb in nots[a])

    while len(groups) > 1:
        best, pair = threshold, None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                if compatible(a, b):
                    gap = float(d[np.ix_(groups[a], groups[b])].mean())
                    if gap < best:
                        best, pair = gap, (a, b)
        if pair is None:
            break
        a, b = pair
        groups[a] += groups.pop(b)
        names[a] = names[a] if names[a] is not None else names[b]
        names.pop(b)
        nots[a] |= nots.pop(b)
    raw = [0] * n
    for g, members in enumerate(groups):
        for i in members:
            raw[i] = g
    order: Dict[int, int] = {}
    labels = [order.setdefault(raw[i], len(order)) for i in range(n)]
    return labels, _confidence(d, labels, threshold) if n > 1 else 1.0
