"""Qwen2.5-Omni inputs without torchvision: the numpy patchifier agrees with transformers' own
(torchvision-free) Qwen2-VL image processor on still frames, and ``build_inputs`` drives a tiny
random thinker of the same architecture (the model itself checks that every video and audio
placeholder has its feature, and builds the audio-in-video positions from them)."""

import numpy as np
import pytest
import torch

from diadem_ray.models import qwen2_5_omni as q


def test_patches_match_transformers_image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (70, 130, 3), dtype=np.uint8)
    s = q.Settings(max_pixels=64 * 28 * 28, min_pixels=4 * 28 * 28)
    mine, grid = q.video_patches(np.stack([img, img]), s)
    ref = Qwen2VLImageProcessorPil(size={"shortest_edge": s.min_pixels, "longest_edge": s.max_pixels})(
        img, return_tensors="np"
    )
    assert list(ref["image_grid_thw"][0]) == list(grid)
    np.testing.assert_allclose(mine, ref["pixel_values"], rtol=0, atol=1e-5)


def test_sample_frames_at_fps_even_count():
    frames = np.arange(10)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    times = np.arange(10) * 0.3  # 0 … 2.7 s
    out = q.sample_frames(frames, times, fps=2.0, max_frames=64)
    assert [int(f[0, 0, 0]) for f in out] == [0, 2, 3, 5, 7, 8]  # nearest to 0, .5, 1, 1.5, 2, 2.5 s
    assert len(q.sample_frames(frames, times, fps=2.0, max_frames=3)) == 4  # thinned to 3, padded to even
    with pytest.raises(ValueError, match="no frames"):
        q.sample_frames(frames[:0], times[:0], fps=2.0, max_frames=4)


@pytest.fixture(scope="module")
def tiny_thinker(tmp_path_factory):
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    path, tok, fe = q.build_tiny_thinker(tmp_path_factory.mktemp("thinker"))
    return (
        Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(str(path), local_files_only=True).eval(),
        tok,
        fe,
        path,
    )


def test_build_inputs_drive_a_tiny_thinker(tiny_thinker):
    model, tok, fe, _ = tiny_thinker
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (12, 60, 90, 3), dtype=np.uint8)
    times = np.arange(12) * 0.25  # 3 s of video
    audio = (0.1 * np.sin(np.arange(48_000) * 2 * np.pi * 220 / 16_000)).astype(np.float32)
    s = q.Settings(max_pixels=64 * 28 * 28)
    inputs = q.build_inputs(frames, times, audio, "Describe who says what.", tokenizer=tok, feature_extractor=fe, s=s)
    ids = inputs["input_ids"][0]
    n_video = int((ids == model.config.video_token_index).sum())
    t, h, w = inputs["video_grid_thw"][0]
    assert n_video == t * h * w // 4 and int((ids == model.config.audio_token_index).sum()) > 0
    text = tok.decode(ids)
    assert text.index("<|vision_bos|><|audio_bos|><|VIDEO|>") < text.index(
        "<|AUDIO|>"
    )  # interleaved: video chunk, then audio
    with torch.no_grad():
        out = model(**q.to_torch(inputs))
    assert out.logits.shape == (1, len(ids), len(tok)) and torch.isfinite(out.logits).all()


def test_media_split_and_kwargs(tiny_thinker):
    from diadem_ray.models.media import media_kwargs
    from diadem_ray.models.qwen2_5_omni import MEDIA_KEYS, split_inputs

    _, tok, fe, _ = tiny_thinker
    rng = np.random.default_rng(2)
    inputs = q.build_inputs(
        rng.integers(0, 256, (4, 56, 56, 3), dtype=np.uint8),
        np.arange(4) * 0.5,
        np.zeros(16_000, np.float32),
        "Who?",
        tokenizer=tok,
        feature_extractor=fe,
        s=q.Settings(max_pixels=16 * 28 * 28),
    )
    ids, media = split_inputs(inputs)
    assert ids == inputs["input_ids"][0].tolist() and set(media) == set(MEDIA_KEYS) - {"pixel_values_videos"}
    kw = media_kwargs(media, device="cpu", float_dtype=torch.bfloat16)
    assert "video_frames" not in kw
    assert kw["pixel_values_videos"].dtype == torch.bfloat16 and kw["input_features"].dtype == torch.bfloat16
    assert kw["video_second_per_grid"].dtype == torch.float32 and kw["video_grid_thw"].dtype == torch.int64
    assert media_kwargs(None, device="cpu", float_dtype=torch.float32) == {}
    with pytest.raises(KeyError, match="unknown media fields"):
        media_kwargs({"pixel_values": np.zeros(2)}, device="cpu", float_dtype=torch.float32)


def test_compact_frames_become_the_same_patches(tiny_thinker):
    """Media carry resized uint8 frames; the patches made from them where the model runs are the
    ones the one-step patchifier makes, at a quarter of the bytes in transit."""
    from diadem_ray.models.media import expand_media

    _, tok, fe, _ = tiny_thinker
    rng = np.random.default_rng(4)
    frames, times = rng.integers(0, 256, (6, 70, 130, 3), dtype=np.uint8), np.arange(6) * 0.5
    s = q.Settings(max_pixels=32 * 28 * 28)
    inputs = q.build_inputs(
        frames, times, np.zeros(16_000, np.float32), "Who?", tokenizer=tok, feature_extractor=fe, s=s
    )
    assert inputs["video_frames"].dtype == np.uint8 and "pixel_values_videos" not in inputs
    want, grid = q.video_patches(q.sample_frames(frames, times, fps=s.fps, max_frames=s.max_frames), s)
    full = q.model_inputs(inputs)
    np.testing.assert_array_equal(full["pixel_values_videos"], want)
    assert tuple(inputs["video_grid_thw"][0]) == grid and "video_frames" not in full
    assert want.nbytes == 4 * inputs["video_frames"].nbytes
    # one patchify per distinct clip for a group of sequences sharing it; text-only entries pass through
    media = {k: inputs[k] for k in ("video_frames", "video_grid_thw")}
    out = expand_media([media, media, None])
    assert out[0] is out[1] and out[2] is None and "pixel_values_videos" in out[0]
    with pytest.raises(ValueError, match="clear the data cache"):
        q.model_inputs({**media, "video_grid_thw": np.asarray([[grid[0], grid[1] + 2, grid[2]]])})


def test_clip_inputs_cache_round_trip(tiny_thinker, tmp_path):
    from diadem_ray.models.qwen2_5_omni import split_inputs

    _, _, _, path = tiny_thinker
    s = q.Settings(max_pixels=16 * 28 * 28)
    ci = q.ClipInputs(str(path), s)
    assert ci.version == q.ClipInputs(str(path), s).version != q.ClipInputs(str(path), q.Settings(fps=1.0)).version
    rng = np.random.default_rng(3)
    frames, times = rng.integers(0, 256, (6, 56, 56, 3), dtype=np.uint8), np.arange(6) * 0.5
    audio = rng.normal(0, 0.05, 40_000).astype(np.float32)
    inputs = ci(frames, times, audio, 16_000)
    q.save_inputs(tmp_path / "c.npz", inputs)
    assert [f.name for f in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left behind
    ids, media = q.load_inputs(tmp_path / "c.npz")
    want_ids, want_media = split_inputs(inputs)
    assert ids == want_ids and set(media) == set(want_media) and media["use_audio_in_video"] is True
    for k, v in want_media.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(media[k], v)
            assert media[k].dtype == v.dtype
    with pytest.raises(ValueError, match="data.audio_sample_rate_hz: 16000"):
        ci(frames, times, audio, 22_050)
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        q.ClipInputs(str(tmp_path))


def test_media_tokens_are_never_sampled(tiny_thinker):
    from diadem_ray.models.families import get_family

    _, tok, _, _ = tiny_thinker
    banned = get_family("qwen2_5_omni").media_token_ids(tok)
    assert banned == sorted(tok.convert_tokens_to_ids(t) for t in q.TOKENS.values()) and len(banned) == 7
    assert get_family("tiny_av").media_token_ids(tok) == []


def test_vllm_prompt_collapses_the_clip_and_carries_frames_and_audio(tiny_thinker):
    from diadem_ray.models.qwen2_5_omni import split_inputs

    _, tok, fe, _ = tiny_thinker
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (8, 56, 84, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(40 * 16_000)).astype(np.float32)  # 40 s: the features see the first 30
    s = q.Settings(max_pixels=16 * 28 * 28)
    ids, media = split_inputs(
        q.build_inputs(frames, np.arange(8) * 0.5, audio, "Who?", tokenizer=tok, feature_extractor=fe, s=s)
    )
    assert media["audio_waveform"].shape == (30 * 16_000,)
    np.testing.assert_array_equal(
        q.audio_features(media["audio_waveform"], fe, s)["input_features"], media["input_features"]
    )
    special = q.special_token_ids(tok)
    fields = q.vllm_prompt(ids, media, special)
    # the ids vLLM expands again: the prompt text's own tokens, one <|VIDEO|> between the vision markers
    assert fields["prompt_token_ids"] == tok(q.prompt_text("Who?"), add_special_tokens=False)["input_ids"]
    assert fields["multi_modal_data"]["video"] is media["video_frames"] or np.array_equal(
        fields["multi_modal_data"]["video"], media["video_frames"]
    )
    wave, rate = fields["multi_modal_data"]["audio"]
    assert rate == 16_000 and np.array_equal(wave, media["audio_waveform"])
    assert fields["mm_processor_kwargs"] == {"use_audio_in_video": True, "fps": 2.0, "second_per_grid_ts": [1.0]}
    with pytest.raises(KeyError, match="clear the data cache"):  # inputs cached before the waveform was kept
        q.vllm_prompt(ids, {k: v for k, v in media.items() if k != "audio_waveform"}, special)
    with pytest.raises(ValueError, match="one clip"):
        q.vllm_prompt(ids + ids, media, special)
    # the learners get every field a forward takes, the same arrays, and not the raw audio
    from diadem_ray.models.media import learner_media

    kept = learner_media(media)
    assert set(kept) == set(media) - {"audio_waveform"} and all(kept[k] is media[k] for k in kept)
