import pyarrow.parquet as pq
import pytest

from diadem_ray.data.cursor import ClipStream
from diadem_ray.data.schema import CLIP_SCHEMA, validate_clip
from diadem_ray.data.shards import list_shards, read_shard, write_shards
from diadem_ray.types import Clip, Turn


def clip(i, bucket="", **kw):
    args = dict(
        clip_id=f"c{i:03d}",
        video_uri=f"/v/c{i}.mp4",
        duration_s=4.0,
        language="en",
        prompt="Describe.",
        characters=("a man", "a woman"),
        dialogue=(Turn("a man", f"line {i}", 0.1, 1.0), Turn("a woman", "ok", 1.2, 2.0)),
        speaker_num=2,
        people_on_screen=2,
        is_single_shot=True,
        has_off_screen_speaker=False,
        has_same_sex_speakers=False,
        only_opposite_sex_speakers=True,
        bucket=bucket,
        pass_rate=None,
    )
    args.update(kw)
    return Clip(**args)


def test_hive_partitioned_round_trip(tmp_path):
    clips = [clip(i, bucket=["easy", "hard"][i % 2]) for i in range(10)] + [clip(99)]
    paths = write_shards(clips, str(tmp_path), clips_per_shard=3)
    assert {p.split("/")[-2] for p in paths} == {"bucket=easy", "bucket=hard", "bucket=unassigned"}
    assert pq.read_schema(paths[0]).equals(CLIP_SCHEMA)
    hard = [c for p in list_shards(str(tmp_path), ["hard"]) for c in read_shard(p)]
    assert sorted(c.clip_id for c in hard) == [f"c{i:03d}" for i in range(1, 10, 2)]
    assert hard[0] == next(c for c in clips if c.clip_id == hard[0].clip_id)
    with pytest.raises(FileNotFoundError, match=r"no shards for bucket\(s\) \['medium'\]"):
        list_shards(str(tmp_path), ["medium"])


def test_validation_names_clip_and_field_and_writes_nothing(tmp_path):
    bad = [
        clip(1, duration_s=0.0),
        clip(2, bucket="../x"),
        clip(3, pass_rate=1.5),
        clip(4, dialogue=(Turn("a man", "hi", 3.0, 9.0),)),
        clip(5),
        clip(5),
    ]
    with pytest.raises(ValueError) as err:
        write_shards(bad, str(tmp_path))
    msg = str(err.value)
    for needle in (
        "clip 'c001': duration_s",
        "clip 'c002': bucket '../x'",
        "clip 'c003': pass_rate",
        "clip 'c004': dialogue[0] span",
        "clip 'c005': duplicate clip_id",
    ):
        assert needle in msg
    assert not list(tmp_path.iterdir())
    assert validate_clip(clip(7)) == []


def test_resumed_stream_yields_exactly_the_uninterrupted_sequence(tmp_path):
    write_shards([clip(i, bucket="hard") for i in range(23)], str(tmp_path), clips_per_shard=5)
    full = [c.clip_id for c in ClipStream(str(tmp_path), ["hard"], seed=3).take(60)]  # > 2 epochs
    s = ClipStream(str(tmp_path), ["hard"], seed=3)
    first = [c.clip_id for c in s.take(17)]
    state = s.cursor()
    rest = [c.clip_id for c in ClipStream(str(tmp_path), ["hard"], seed=3, cursor=state).take(43)]
    assert first + rest == full
    assert sorted(full[:23]) == sorted(f"c{i:03d}" for i in range(23))  # one epoch = every clip once
    assert full[:23] != full[23:46]  # epochs are reshuffled


def test_the_same_seed_gives_the_same_order_wherever_the_shards_live(tmp_path):
    """A run's profiled shards live under its own folder: two runs of one seed (or a fork, or a moved
    run) must draw the same clips, so the order depends on the shard's name within its root only."""
    clips = [clip(i, bucket="hard") for i in range(23)]
    for name in ("run-a", "a-run-with-another-name"):
        write_shards(clips, str(tmp_path / name / "profiled"), clips_per_shard=5)

    def order(name, seed=3):
        return [c.clip_id for c in ClipStream(str(tmp_path / name / "profiled"), ["hard"], seed=seed).take(30)]

    assert order("run-a") == order("a-run-with-another-name")
    assert order("run-a") != order("run-a", seed=4)
