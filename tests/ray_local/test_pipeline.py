"""Ray Data front-end encoding: every readable clip encoded, a corrupt one skipped and named, cache reused
(and looked up by the driver: a fully cached pass starts no Ray Data job)."""

from __future__ import annotations

from dataclasses import replace

from diadem_ray.data.pipeline import encode_clips
from diadem_ray.data.shards import list_shards, write_shards
from diadem_ray.data.synth import synthesize


def test_encode_skips_corrupt_clip_and_caches(ray_local, tmp_path, monkeypatch):
    clips = synthesize(tmp_path / "syn", 3, seed=5, workers=1, progress=False)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    clips.append(replace(clips[0], clip_id="broken", video_uri=str(bad)))
    write_shards(clips, str(tmp_path / "shards"))
    shards = list_shards(str(tmp_path / "shards"))
    rep = encode_clips(shards, cache_dir=str(tmp_path / "cache"), concurrency=1)
    assert sorted(rep.features) == sorted(c.clip_id for c in clips[:3])
    assert list(rep.failed) == ["broken"] and "broken.mp4" in rep.failed["broken"]
    assert rep.decoded == 3 and rep.cached == 0
    assert all(text.startswith("People:") for text in rep.features.values())
    again = encode_clips(shards, cache_dir=str(tmp_path / "cache"), concurrency=1)
    assert again.features == rep.features and again.cached == 3 and again.decoded == 0
    assert list(again.failed) == ["broken"]  # the one clip not cached went through Ray Data again

    import ray.data

    def no_ray_data(*a, **k):
        raise AssertionError("Ray Data started for clips that are all cached")

    monkeypatch.setattr(ray.data, "read_parquet", no_ray_data)
    write_shards(clips[:3], str(tmp_path / "good"))
    cached = encode_clips(list_shards(str(tmp_path / "good")), cache_dir=str(tmp_path / "cache"), concurrency=1)
    assert cached.features == rep.features and cached.cached == 3 and cached.decoded == 0 and not cached.failed
