"""A plain pure-Python implementation of the DiaDemBench programme (docs/metrics.md §1), for parity
tests and as the speed baseline of bench/reward_throughput.py.

Deliberately naive, as the public scorer is: O(len²) Python edit distance, merged strings rebuilt
for every candidate, no pruning. Not used by the package. Both-empty similarity is 1.0, the
package's documented choice (the public scorer divides by zero there).
"""

from __future__ import annotations

import re

from opencc import OpenCC

_cc = OpenCC("t2s")


def clean(lines):
    out = []
    for raw in lines:
        s = raw.strip()
        for q in ('"', "“", "”"):
            s = s.replace(q, "")
        if len(s) > 0 and s[-1] in ("。", ".", "?", "？", "!", "！"):
            s = s[: len(s) - 1]
        if ":" not in s:
            continue
        cut = s.index(":")
        speaker = s[:cut].strip()
        content = s[cut + 1 :].strip()
        content = re.sub(r"[^\w\s\u4e00-\u9fff]", "", content).lower()
        if re.search(r"[\u3040-\u30ff]", content) is None:
            content = _cc.convert(content)
        out.append((speaker[:100], content[:1000]))
    return out


def levenshtein(a, b):
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                cur[j] = prev[j - 1]
            else:
                cur[j] = 1 + min(prev[j], cur[j - 1], prev[j - 1])
        prev = cur
    return prev[len(b)]


def sim(a, b):
    a = "".join(a.split())
    b = "".join(b.split())
    longest = max(len(a), len(b))
    if longest == 0:
        return 1.0
    return 1.0 - levenshtein(a, b) / longest


def _merged(items, end, count):
    """Content of items end-count+1..end joined by spaces, or None if speakers differ."""
    first = end - count + 1
    speaker = items[end][0]
    for idx in range(first, end + 1):
        if items[idx][0] != speaker:
            return None
    return " ".join(items[idx][1] for idx in range(first, end + 1))


def align(dt, gt, thres=0.6, window=6):
    m, n = len(dt), len(gt)
    dp = [[0.0 for _ in range(n + 1)] for _ in range(m + 1)]
    move = [[(0, 0) for _ in range(n + 1)] for _ in range(m + 1)]
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            if dp[i - 1][j] >= dp[i][j - 1]:
                best, mv = dp[i - 1][j], (1, 0)
            else:
                best, mv = dp[i][j - 1], (0, 1)
            candidates = [(k, 1) for k in range(1, min(window, i) + 1)]
            candidates += [(1, l) for l in range(2, min(window, j) + 1)]
            candidates += [(k, l) for k in range(2, min(window, i) + 1) for l in range(2, min(window, j) + 1)]
            for k, l in candidates:
                a = _merged(dt, i - 1, k)
                b = _merged(gt, j - 1, l)
                if a is None or b is None:
                    continue
                s = sim(a, b)
                if s > thres and dp[i - k][j - l] + s > best:
                    best, mv = dp[i - k][j - l] + s, (k, l)
            dp[i][j] = best
            move[i][j] = mv
    groups = []
    i, j = m, n
    while i > 0 and j > 0:
        k, l = move[i][j]
        if (k, l) == (0, 0):
            break
        if dp[i][j] > dp[i - k][j - l] + 1e-6:
            groups.append((list(range(i - k, i)), list(range(j - l, j)), dp[i][j] - dp[i - k][j - l]))
        i, j = i - k, j - l
    return groups[::-1]


def score(dt_lines, gt_lines, same_speaker=None):
    """Per-sample fields: clean lists, groups, counts, ASR/REF recall and precision."""
    dt, gt = clean(dt_lines), clean(gt_lines)
    groups = align(dt, gt) if dt and gt else []
    dt_num = len(dt) - sum(len(g[0]) - 1 for g in groups)
    gt_num = len(gt) - sum(len(g[1]) - 1 for g in groups)
    total = sum(g[2] for g in groups)
    judge = same_speaker or (lambda a, b: a == b)
    hits = sum(1 for g in groups if judge(dt[g[0][0]][0], gt[g[1][0]][0]))
    return {
        "clean_dt": [list(x) for x in dt],
        "clean_gt": [list(x) for x in gt],
        "groups": [{"dt_indices": g[0], "gt_indices": g[1], "score": g[2]} for g in groups],
        "dt_num": dt_num,
        "gt_num": gt_num,
        "asr_recall": total / gt_num if gt_num > 0 else 1.0,
        "asr_precision": total / dt_num if dt_num > 0 else 1.0,
        "ref_recall": hits / gt_num if gt_num > 0 else 1.0,
        "ref_precision": hits / dt_num if dt_num > 0 else 1.0,
    }


def f1_cell(rows):
    """``"REF / ASR"`` of macro-averaged per-sample scores (×100, one decimal)."""
    if not rows:
        return "- / -"
    n = len(rows)
    out = []
    for kind in ("ref", "asr"):
        r = sum(x[f"{kind}_recall"] for x in rows) / n
        p = sum(x[f"{kind}_precision"] for x in rows) / n
        out.append(2 * r * p / (r + p) if r + p > 0 else 0.0)
    return f"{out[0] * 100:.1f} / {out[1] * 100:.1f}"
