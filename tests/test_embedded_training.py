"""The embedded-model training code, run for a few steps on tiny dimensions (not the real recipe)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from modules.embedded.config import Recipe
from modules.embedded.pool import render_pool
from modules.embedded.train_t2i import train_t2i
from modules.embedded.train_vae import train_vae
from modules.training.loop import LoopConfig
from modules.training.noise_training import diffusion_loss, sd15_noise_scheduler

TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [8, 8, 8, 8],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 4,
    "sample_size": 64,
}
TINY_TE = {
    "vocab_size": 49408,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 1,
    "max_position_embeddings": 77,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
}
TINY_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [16, 16],
    "layers_per_block": 1,
    "cross_attention_dim": 16,
    "attention_head_dim": 2,
    "norm_num_groups": 8,
}


def tiny_recipe(steps: int = 3, pretrain_text_encoder: bool = False) -> Recipe:
    """Tiny dimensions; by default the text encoder trains with the UNet (the pretrained path has its own tests)."""
    loop = LoopConfig(steps=steps, learning_rate=1e-3, warmup_steps=1, log_every=1, checkpoint_every=2)
    return Recipe(
        vae_config=TINY_VAE, text_encoder_config=TINY_TE, unet_config=TINY_UNET, pool_size=16,
        vae_loop=loop, vae_refine_loop=loop, decoder_loop=loop, vae_batch=4, t2i_loop=replace(loop, ema_decay=0.99), t2i_batch=4,
        pretrain_text_encoder=pretrain_text_encoder, text_encoder_loop=loop, text_encoder_batch=4,
    )


@pytest.fixture(scope="module")
def pool():
    return render_pool(16, seed=3, exclude_shapes=("star",))


def test_sd15_noise_scheduler_matches_sd1_training_schedule() -> None:
    scheduler = sd15_noise_scheduler()
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.beta_start == 0.00085 and scheduler.config.beta_end == 0.012
    assert scheduler.config.num_train_timesteps == 1000 and scheduler.config.clip_sample is False


def test_zero_terminal_snr_schedule_ends_in_pure_noise_and_needs_v_prediction() -> None:
    scheduler = sd15_noise_scheduler("v_prediction", zero_terminal_snr=True)
    assert scheduler.alphas_cumprod[-1] == 0 and scheduler.config.timestep_spacing == "trailing"
    assert sd15_noise_scheduler().alphas_cumprod[-1] > 0.004  # the SD 1.x schedule leaks ~7% signal at t=999
    with pytest.raises(ValueError, match="v-prediction"):
        sd15_noise_scheduler("epsilon", zero_terminal_snr=True)


def test_snr_weightings_at_the_noisiest_and_cleanest_steps() -> None:
    from modules.training.noise_training import _snr_weights

    scheduler = sd15_noise_scheduler("v_prediction", zero_terminal_snr=True)
    ends = torch.tensor([999, 0])
    plus_one = _snr_weights(scheduler, ends, 5.0, "min_snr_plus_one")
    plain = _snr_weights(scheduler, ends, 5.0, "min_snr")
    assert plus_one[0] == pytest.approx(1.0) and plain[0] == 0  # pure noise keeps its weight only with +1
    assert plus_one[1] == pytest.approx(6.0 / (1.0 + float(scheduler.alphas_cumprod[0] / (1 - scheduler.alphas_cumprod[0]))))
    with pytest.raises(ValueError, match="v-prediction"):
        _snr_weights(sd15_noise_scheduler(), ends, 5.0, "min_snr_plus_one")
    with pytest.raises(ValueError, match="unknown SNR weighting"):
        _snr_weights(scheduler, ends, 5.0, "bogus")


def test_zero_terminal_snr_loss_is_finite() -> None:
    from modules.embedded.config import build_unet

    torch.manual_seed(0)
    unet = build_unet(TINY_UNET)
    scheduler = sd15_noise_scheduler("v_prediction", zero_terminal_snr=True)
    latents, context = torch.randn(8, 4, 8, 8), torch.randn(8, 77, 16)
    for seed in range(4):
        out = diffusion_loss(unet, scheduler, latents, context, snr_gamma=5.0, snr_weighting="min_snr_plus_one",
                             generator=torch.Generator().manual_seed(seed))
        assert torch.isfinite(out.loss)


def test_later_timestep_bias_draws_more_noisy_steps() -> None:
    from modules.training.noise_training import later_timestep_weights

    weights = later_timestep_weights(1000, 0.4, 3.0)
    assert float(weights.sum()) == pytest.approx(1.0) and float(weights[600:].sum()) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        later_timestep_weights(1000, 1.5, 3.0)
    # the loss draws its timesteps from the weights
    from diffusers import DDPMScheduler

    from modules.embedded.config import build_unet

    class Recording(DDPMScheduler):
        def add_noise(self, original, noise, timesteps):
            self.seen = timesteps
            return super().add_noise(original, noise, timesteps)

    scheduler = Recording.from_config(sd15_noise_scheduler().config)
    torch.manual_seed(0)
    latents, context = torch.randn(16, 4, 8, 8), torch.randn(16, 77, 16)
    diffusion_loss(build_unet(TINY_UNET), scheduler, latents, context, timestep_weights=later_timestep_weights(1000, 0.1, 1e6),
                   generator=torch.Generator().manual_seed(0))
    assert scheduler.seen.min() >= 900


def test_pool_excludes_held_out_shape(pool) -> None:
    assert pool.images.shape == (16, 3, 64, 64) and pool.images.dtype == torch.uint8
    assert all(s.shape != "star" for scene in pool.scenes for s in scene.shapes)
    from modules.embedded.pool import pool_scenes

    assert pool_scenes(16, seed=3, exclude_shapes=("star",)) == pool.scenes  # the text encoder's captions match


def test_vae_then_t2i_train_save_and_log(tmp_path: Path, pool) -> None:
    recipe = tiny_recipe()
    vae = train_vae(pool, tmp_path, recipe, log=False)
    assert (tmp_path / "vae" / "config.json").exists()
    assert vae.config.scaling_factor > 0 and vae.config.scaling_factor != 0.18215
    progress = [json.loads(line) for line in (tmp_path / "vae-train" / "progress.jsonl").read_text().splitlines()]
    assert [p["step"] for p in progress] == [1, 2, 3]
    target = train_t2i(pool, vae, tmp_path, recipe, log=False)
    for part in ("unet", "text_encoder", "tokenizer", "scheduler"):
        assert (target / part).is_dir()
    losses = [json.loads(line)["loss"] for line in (tmp_path / "t2i-train" / "progress.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))


def test_pool_latents_are_encoded_once_per_vae_and_pool(tmp_path: Path, pool, monkeypatch) -> None:
    from modules.embedded import train_t2i as t2i
    from modules.embedded.config import build_vae

    torch.manual_seed(0)
    vae = build_vae(TINY_VAE).eval()
    means, stds = t2i.pool_latents(vae, pool, tmp_path)
    expected = t2i.encode_pool(vae, pool)
    assert torch.equal(means, expected[0]) and torch.equal(stds, expected[1])
    assert (tmp_path / t2i.POOL_LATENTS).exists()
    calls = []
    monkeypatch.setattr(t2i, "encode_pool", lambda *args: calls.append(args) or expected)
    again = t2i.pool_latents(vae, pool, tmp_path)  # the ControlNet stage, same VAE and pool: read back
    assert calls == [] and torch.equal(again[0], means) and torch.equal(again[1], stds)
    monkeypatch.undo()
    with torch.no_grad():
        next(vae.parameters()).add_(0.5)  # other weights: the stored latents no longer apply
    changed = t2i.pool_latents(vae, pool, tmp_path)
    assert not torch.equal(changed[0], means) and torch.equal(changed[0], t2i.encode_pool(vae, pool)[0])
    other_pool = render_pool(16, seed=4, exclude_shapes=("star",))
    assert not torch.equal(t2i.pool_latents(vae, other_pool, tmp_path)[0], changed[0])


def test_decoder_finetune_keeps_the_encoder_and_scale(tmp_path: Path, pool) -> None:
    from modules.embedded.train_vae import final_vae_dir, finetune_decoder

    recipe = tiny_recipe(steps=2)
    vae = train_vae(pool, tmp_path, recipe, log=False)
    assert final_vae_dir(tmp_path) == tmp_path / "vae"
    tuned = finetune_decoder(pool, tmp_path, recipe, log=False)
    assert final_vae_dir(tmp_path) == tmp_path / "vae-decoder"
    assert tuned.config.scaling_factor == vae.config.scaling_factor
    for name, tensor in vae.encoder.state_dict().items():
        assert torch.equal(tensor, tuned.encoder.state_dict()[name]), name
    assert any(not torch.equal(t, tuned.decoder.state_dict()[n]) for n, t in vae.decoder.state_dict().items())


def test_vae_refinement_moves_the_latent_space_and_the_later_stages_follow_it(tmp_path: Path, pool) -> None:
    from modules.embedded.train_vae import final_vae_dir, finetune_decoder, latent_vae_dir, refine_vae

    recipe = tiny_recipe(steps=2)
    ticks: list[str] = []  # train_all's core hand-over hook, called at each log step of every VAE stage
    vae = train_vae(pool, tmp_path, recipe, log=False, tick=lambda: ticks.append("vae"))
    assert latent_vae_dir(tmp_path) == tmp_path / "vae"
    refined = refine_vae(pool, tmp_path, recipe, log=False, tick=lambda: ticks.append("refine"))
    assert ticks == ["vae", "vae", "refine", "refine"]
    assert latent_vae_dir(tmp_path) == final_vae_dir(tmp_path) == tmp_path / "vae-refined"
    assert any(not torch.equal(t, refined.encoder.state_dict()[n]) for n, t in vae.encoder.state_dict().items())
    assert refined.config.scaling_factor > 0
    tuned = finetune_decoder(pool, tmp_path, recipe, log=False)  # starts from the refined VAE
    assert tuned.config.scaling_factor == refined.config.scaling_factor
    for name, tensor in refined.encoder.state_dict().items():
        assert torch.equal(tensor, tuned.encoder.state_dict()[name]), name


def test_edge_loss_prefers_a_crisp_outline_to_a_blurred_one() -> None:
    from modules.training.autoencoder_training import edge_loss

    target = torch.full((1, 3, 16, 16), -1.0)
    target[..., 4:12, 4:12] = 1.0
    blurred = torch.nn.functional.avg_pool2d(target, 3, stride=1, padding=1, count_include_pad=False)
    assert edge_loss(target, target) == 0
    assert edge_loss(blurred, target) > 0.05
    # a plain pixel loss barely tells the two apart, the edge term does
    assert edge_loss(blurred, target) > 2 * (blurred - target).abs().mean()


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_t2i_trains_the_recipes_prediction_type(tmp_path: Path, pool, prediction: str) -> None:
    from modules.embedded.train_t2i import train_t2i

    recipe = replace(tiny_recipe(steps=1), t2i_prediction=prediction)
    vae = train_vae(pool, tmp_path, recipe, log=False)
    target = train_t2i(pool, vae, tmp_path, recipe, log=False)
    config = json.loads((target / "scheduler" / "scheduler_config.json").read_text())
    assert config["prediction_type"] == prediction


def test_resume_continues_from_checkpoint(tmp_path: Path, pool) -> None:
    train_vae(pool, tmp_path, tiny_recipe(steps=2), log=False)
    train_vae(pool, tmp_path, tiny_recipe(steps=4), log=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / "vae-train" / "progress.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_prior_preservation_loss_is_chunked() -> None:
    from modules.embedded.config import build_unet

    torch.manual_seed(0)
    unet = build_unet(TINY_UNET)
    latents, context = torch.randn(4, 4, 8, 8), torch.randn(4, 77, 16)
    out = diffusion_loss(unet, sd15_noise_scheduler(), latents, context, with_prior=True, prior_loss_weight=0.5,
                         generator=torch.Generator().manual_seed(1))
    assert out.prior is not None
    assert out.loss.item() == pytest.approx(out.instance + 0.5 * out.prior, rel=1e-5)


def test_classifier_trains_saves_and_predicts_per_group(tmp_path: Path) -> None:
    from modules.embedded.classifier import WorldClassifier
    from modules.embedded.train_classifier import ClassifierRecipe, train_classifier
    from modules.world.spec import LABEL_GROUPS

    tiny = {"image_size": 64, "patch_size": 16, "num_channels": 3, "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 1, "intermediate_size": 32}
    recipe = ClassifierRecipe(loop=LoopConfig(steps=2, learning_rate=1e-3, warmup_steps=1, log_every=1,
                                              checkpoint_every=2), batch=4, eval_size=8)
    target = train_classifier(tmp_path, recipe, config=tiny, log=False)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "accuracy.json"):
        assert (target / name).exists()
    accuracy = json.loads((target / "accuracy.json").read_text())
    assert set(accuracy) == set(LABEL_GROUPS) and all(0.0 <= a <= 1.0 for a in accuracy.values())
    from modules.world import render_scene, sample_scene
    import random

    reloaded = WorldClassifier(target)
    # logit order survives save/load (a dict in config.json would come back with sorted keys)
    assert list(reloaded.groups.items()) == [(g, list(v)) for g, v in LABEL_GROUPS.items()]
    prediction = reloaded.predict([render_scene(sample_scene(random.Random(0)))])[0]
    assert set(prediction) == set(LABEL_GROUPS)
    assert all(prediction[g] in LABEL_GROUPS[g] for g in LABEL_GROUPS)


def test_export_roundtrips_through_the_model_loader(tmp_path: Path, pool) -> None:
    from modules.embedded.export import export_checkpoint
    from modules.embedded.pipeline import pipeline_from_work_dir
    from modules.models.detect import detect_checkpoint
    from modules.models.loader import LoadOptions, load_model
    from safetensors import safe_open

    recipe = tiny_recipe(steps=1)
    vae = train_vae(pool, tmp_path, recipe, log=False)
    train_t2i(pool, vae, tmp_path, recipe, log=False)
    path = export_checkpoint(tmp_path, tmp_path / "models")
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
        keys = list(handle.keys())
        assert all(handle.get_tensor(k).dtype in (torch.float16, torch.int64) for k in keys[:20])
    assert metadata["modelspec.architecture"] == "stable-diffusion-v1"
    components = json.loads(metadata["atelier.components"])
    assert components["vae"]["scaling_factor"] == pytest.approx(vae.config.scaling_factor)
    assert any(k.startswith("model.diffusion_model.") for k in keys)
    assert any(k.startswith("cond_stage_model.transformer.text_model.") for k in keys)
    assert detect_checkpoint(path).family.id == "sd1"
    loaded = load_model(path, LoadOptions(cache_dir=tmp_path / "cache"))
    reference = pipeline_from_work_dir(tmp_path)
    ids = reference.tokenizer(["a red circle"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert ids.tolist() == loaded.pipeline.tokenizer(["a red circle"], padding="max_length", max_length=77,
                                                     return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        expected = reference.text_encoder(ids)[0]
        actual = loaded.pipeline.text_encoder(ids)[0]
        latents = torch.randn(1, 4, 8, 8)
        unet_expected = reference.unet(latents, 10, expected).sample
        unet_actual = loaded.pipeline.unet(latents, 10, expected).sample
    assert torch.allclose(expected, actual, atol=2e-2)
    assert torch.allclose(unet_expected, unet_actual, atol=2e-2)
    assert loaded.pipeline.vae.config.scaling_factor == pytest.approx(vae.config.scaling_factor)
    assert loaded.native_size == (64, 64)
    # train_all's export stage writes where --models-dir says (a measurement run must not overwrite models/)
    from modules.embedded import train_all

    train_all.main(["--out", str(tmp_path), "--stages", "export", "--models-dir", str(tmp_path / "elsewhere")])
    assert (tmp_path / "elsewhere" / "Stable-diffusion" / path.name).is_file()
    assert (tmp_path / "elsewhere" / "Stable-diffusion" / path.with_suffix(".md").name).is_file()


def test_zero_terminal_snr_export_is_marked_and_loads_with_its_schedule(tmp_path: Path, pool) -> None:
    from modules.embedded.export import export_checkpoint
    from modules.models.loader import LoadOptions, load_model

    recipe = replace(tiny_recipe(steps=1), t2i_prediction="v_prediction", zero_terminal_snr=True,
                     snr_weighting="min_snr_plus_one")
    train_t2i(pool, train_vae(pool, tmp_path, recipe, log=False), tmp_path, recipe, log=False)
    loaded = load_model(export_checkpoint(tmp_path, tmp_path / "models"), LoadOptions(cache_dir=tmp_path / "cache"))
    assert loaded.prediction_type == "v_prediction" and loaded.variant["prediction_source"] == "metadata"
    assert loaded.variant["zero_terminal_snr"] and loaded.scheduler_config["rescale_betas_zero_snr"]
    assert loaded.scheduler_config["timestep_spacing"] == "trailing"


def test_controlnet_trains_and_exports(tmp_path: Path, pool) -> None:
    from modules.embedded.export import export_controlnet, load_controlnet
    from modules.embedded.train_controlnet import ControlNetRecipe, train_controlnet

    recipe = tiny_recipe(steps=1)
    train_t2i(pool, train_vae(pool, tmp_path, recipe, log=False), tmp_path, recipe, log=False)
    cn_recipe = ControlNetRecipe(loop=LoopConfig(steps=2, learning_rate=1e-3, warmup_steps=1, log_every=1,
                                                 checkpoint_every=2), batch=2)
    ticks: list[int] = []
    target = train_controlnet(pool, tmp_path, cn_recipe, log=False, tick=lambda: ticks.append(1))
    steps = [json.loads(line)["step"] for line in (tmp_path / "controlnet-train" / "progress.jsonl").read_text().splitlines()]
    assert steps == [1, 2] and len(ticks) == 2  # the lane hand-over hook runs at every log step
    assert (tmp_path / "controlnet-train" / "training-state.pt").exists() and (target / "config.json").exists()
    path = export_controlnet(tmp_path, tmp_path / "models")
    controlnet = load_controlnet(path)
    assert controlnet.config.cross_attention_dim == TINY_UNET["cross_attention_dim"]
    # the zero-initialised output convolutions have left zero: the ControlNet itself was trained
    assert any(float(conv.weight.detach().abs().sum()) > 0 for conv in controlnet.controlnet_down_blocks)


def test_two_lane_projection_waits_for_the_vae_in_lane_b() -> None:
    from modules.embedded.card import two_lane_minutes

    def stage(minutes: float) -> dict[str, float]:
        return {"median_seconds": minutes * 60}

    training = {"VAE (encoder + decoder)": stage(10), "VAE refinement (edge loss)": stage(5),
                "UNet": stage(40), "ControlNet": stage(10), "classifier": stage(5),
                "VAE decoder refinement": stage(30)}
    assert two_lane_minutes(training) == 65          # lane A: 10 + 5 + 40 + 10; lane B: max(5, 15) + 30 = 45
    training["classifier"] = stage(45)
    assert two_lane_minutes(training) == 75          # lane B: 45 + 30
    training["text encoder (caption labels)"] = stage(20)
    assert two_lane_minutes(training) == 95          # lane B: 20 + 45 + 30; lane A waits for it: 20 + 40 + 10 = 70
    training["classifier"] = stage(1)
    training["text encoder (caption labels)"] = stage(25)
    assert two_lane_minutes(training) == 75          # lane A: max(15, 25) + 40 + 10
    # Without a decoder refinement lane B waits for nothing: the text encoder and the classifier.
    del training["VAE decoder refinement"]
    training["classifier"] = stage(60)
    assert two_lane_minutes(training) == 85          # lane B: 25 + 60; lane A: 25 + 40 + 10 = 75


def test_train_all_refuses_unknown_stages_and_stops_waiting(tmp_path: Path) -> None:
    from modules.embedded import train_all

    with pytest.raises(SystemExit):
        train_all.main(["--out", str(tmp_path), "--stages", "vae,bogus"])
    with pytest.raises(SystemExit, match="gave up waiting"):
        train_all._wait_for(tmp_path / "vae", seconds=-1)


def test_lane_a_takes_the_second_core_once_lane_b_is_done(tmp_path: Path, monkeypatch) -> None:
    from modules.embedded import train_all

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        handover = train_all.CoreHandover(tmp_path / train_all.LANE_B_DONE, threads=2)
        handover()
        assert torch.get_num_threads() == 1 and not handover.taken
        (tmp_path / train_all.LANE_B_DONE).touch()
        handover()
        assert torch.get_num_threads() == 2 and handover.taken
    finally:
        torch.set_num_threads(before)

    launched: list[list[str]] = []
    waited: list[str] = []
    (tmp_path / train_all.LANE_B_DONE).touch()  # a stale marker from an earlier run

    class FakeLane:
        def __init__(self, argv: list[str]) -> None:
            launched.append(argv)
            self.lane = "AB"[len(launched) - 1]
            # The marker must not exist while lane B runs (a stale one would hand lane A the core too soon).
            assert not (tmp_path / train_all.LANE_B_DONE).exists()

        def wait(self) -> int:
            waited.append(self.lane)
            return 0

    monkeypatch.setattr(train_all.subprocess, "Popen", FakeLane)
    monkeypatch.setattr(train_all, "main", lambda argv: None)
    train_all.run_lanes(tmp_path, threads=1, models_dir=tmp_path / "models")
    lane_a, lane_b = launched
    assert lane_a[lane_a.index("--stages") + 1] == ",".join(train_all.lanes(Recipe())[0])
    # Lane A takes the second core when run_lanes has seen lane B's process exit and written the marker.
    assert lane_a[lane_a.index("--take-cores-after") + 1] == str(tmp_path / train_all.LANE_B_DONE)
    assert lane_a[lane_a.index("--cores") + 1] == "2" and "--take-cores-after" not in lane_b
    assert waited[0] == "B" and (tmp_path / train_all.LANE_B_DONE).exists()


def test_lanes_put_the_encoder_refinement_on_the_critical_path_only_when_the_recipe_asks() -> None:
    from modules.embedded import train_all

    unrefined = replace(Recipe(), refine_latent_vae=False, refine_decoder=True)
    refined = replace(Recipe(), refine_latent_vae=True, refine_decoder=True)
    lane_a, lane_b = train_all.lanes(unrefined)
    assert lane_a == ("vae", "t2i", "controlnet") and lane_b == ("text_encoder", "classifier", "vae_decoder")
    assert train_all.cross_lane_inputs(unrefined) == {"vae_decoder": "vae", "t2i": "text_encoder"}
    assert train_all.lanes(refined)[0] == ("vae", "vae_refine", "t2i", "controlnet")
    assert train_all.cross_lane_inputs(refined)["vae_decoder"] == "vae_refine"
    assert train_all.recipe_stages(refined) == train_all.STAGES
    assert train_all.recipe_stages(unrefined) == tuple(s for s in train_all.STAGES if s != "vae_refine")
    # The shipped recipe: no decoder refinement, so lane B is the text encoder and the classifier only.
    shipped = Recipe()
    assert not shipped.refine_decoder and train_all.lanes(shipped)[1] == ("text_encoder", "classifier")
    assert "vae_decoder" not in train_all.cross_lane_inputs(shipped)
    assert "vae_decoder" not in train_all.recipe_stages(shipped)
    # Every stage the recipe uses (all but the export, which follows both lanes) runs in exactly one lane.
    for recipe in (unrefined, refined, shipped):
        a, b = train_all.lanes(recipe)
        assert not set(a) & set(b) and set(a) | set(b) == set(train_all.recipe_stages(recipe)) - {"export"}


def test_pretrained_text_encoder_is_trained_then_frozen_for_the_unet(tmp_path: Path, pool) -> None:
    from transformers import CLIPTextModel

    from modules.embedded.train_text_encoder import train_text_encoder

    recipe = tiny_recipe(steps=2, pretrain_text_encoder=True)
    vae = train_vae(pool, tmp_path, recipe, log=False)
    with pytest.raises(FileNotFoundError, match="text_encoder stage"):
        train_t2i(pool, vae, tmp_path, recipe, log=False)
    target = train_text_encoder(tmp_path, recipe, ("star",), log=False)
    progress = [json.loads(line) for line in (tmp_path / "text-encoder-train" / "progress.jsonl").read_text().splitlines()]
    assert [p["step"] for p in progress] == [1, 2] and all(0.0 <= p["acc_min"] <= 1.0 for p in progress)
    pretrained = CLIPTextModel.from_pretrained(target)
    torch.manual_seed(recipe.seed + 3)
    from modules.embedded.config import build_text_encoder

    untrained = build_text_encoder(TINY_TE)
    assert any(not torch.equal(a, b) for a, b in zip(pretrained.state_dict().values(), untrained.state_dict().values()))
    t2i = train_t2i(pool, vae, tmp_path, recipe, log=False)
    saved = CLIPTextModel.from_pretrained(t2i / "text_encoder")
    for name, tensor in pretrained.state_dict().items():
        assert torch.equal(tensor, saved.state_dict()[name]), name  # frozen while the UNet trained


def test_caption_head_targets_follow_what_the_caption_names() -> None:
    import random

    from modules.embedded.train_text_encoder import UNNAMED, caption_targets, head_classes, summary_mask
    from modules.world.captions import CaptionMentions, caption_scene, caption_scene_with_mentions
    from modules.world.spec import Scene, Shape

    scene = Scene("blue", (Shape("square", "green", "top left", "small"), Shape("heart", "red", "bottom right", "small")))
    targets = caption_targets(scene, CaptionMentions(sizes=(True, False), positions=(False, True), background=True))
    assert targets == {"shape0": "square", "colour0": "green", "size0": "small", "position0": UNNAMED,
                       "shape1": "heart", "colour1": "red", "size1": UNNAMED, "position1": "bottom right",
                       "background": "blue"}
    single = caption_targets(Scene("gray", scene.shapes[:1]), CaptionMentions((False,), (True,), False))
    assert single["shape1"] == single["colour1"] == single["background"] == single["size0"] == UNNAMED
    assert single["position0"] == "top left"
    assert all(targets[name] in classes for name, classes in head_classes().items())
    # the mentions describe the very caption caption_scene draws from the same RNG state
    for seed in range(40):
        text, mentions = caption_scene_with_mentions(scene, random.Random(seed))
        assert text == caption_scene(scene, random.Random(seed))
        assert mentions.background == ("blue background" in text)
        assert mentions.positions[1] == any(w in text for w in ("bottom right", "lower right"))
        assert mentions.sizes[0] == any(f"{w} green" in text for w in ("small", "little"))
    ids = torch.tensor([[49406, 320, 49407, 49407], [49406, 320, 321, 49407]])
    assert summary_mask(ids, 49407).tolist() == [[False, False, True, True], [False, False, False, True]]
