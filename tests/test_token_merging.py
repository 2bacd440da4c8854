"""Token merging (ToMe, issue 29) through diffusers' attention processors: the merge and unmerge, the attention
seeing about half the tokens at 0.5 with an output close to the unmerged one on a tiny UNet, the processors put
back afterwards, the settings and A1111 overrides, the refusal on an exported-graph backend, the infotext keys."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from modules.backends.registry import BackendError, get_backend
from modules.backends.token_merging import (MergingProcessor, Ratios, check_token_merging, override_fields,
                                            plan_merge, ratios_for, token_merging)


def _unet():  # noqa: ANN202
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(sample_size=16, block_out_channels=(32, 64), layers_per_block=1,
                                cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).eval()


def _call(unet) -> torch.Tensor:  # noqa: ANN001
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        return unet(torch.randn(2, 4, 16, 16, generator=gen), torch.tensor([500.0, 500.0]),
                    encoder_hidden_states=torch.randn(2, 7, 32, generator=gen)).sample


def test_merge_and_unmerge() -> None:
    x = torch.randn(2, 8 * 6, 5, generator=torch.Generator().manual_seed(0))
    none = plan_merge(x, 8, 6, 0.0)
    assert none.merged == 0 and torch.equal(none.unmerge(none.merge(x)), x)  # ratio 0: exact

    half = plan_merge(x, 8, 6, 0.5, torch.Generator().manual_seed(0))
    merged = half.merge(x)
    assert half.merged == 24 and merged.shape == (2, 24, 5)
    back = half.unmerge(merged)
    kept = half.src_pos[:, half.merged:]  # the source tokens not merged come back exactly
    assert torch.equal(torch.gather(back, 1, kept[..., None].expand(-1, -1, 5)),
                       torch.gather(x, 1, kept[..., None].expand(-1, -1, 5)))
    assert not torch.equal(back, x)  # merged ones take their destination's mean

    # every 2x2 cell made of one repeated token: each source matches its own cell's destination, exactly
    cells = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(1))
    grid = cells.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2).reshape(2, 48, 5)
    plan = plan_merge(grid, 8, 6, 0.7, torch.Generator().manual_seed(2))
    assert plan.merged == 33 and torch.allclose(plan.unmerge(plan.merge(grid)), grid, atol=1e-6)
    with pytest.raises(ValueError, match="grid"):
        plan_merge(x, 7, 7, 0.5)


def test_attention_sees_half_the_tokens_and_the_model_is_restored() -> None:
    unet = _unet()
    reference = _call(unet)
    before = dict(unet.attn_processors)
    with token_merging(unet, 0.0) as off:  # ratio 0: nothing is wrapped
        assert off is None and dict(unet.attn_processors) == before
    with token_merging(unet, 0.5) as state:
        wrapped = unet.attn_processors
        assert sum(isinstance(p, MergingProcessor) for p in wrapped.values()) == 4  # every attn1
        assert not any(isinstance(p, MergingProcessor) for n, p in wrapped.items() if "attn2" in n)
        merged = _call(unet)
    assert state.merged_calls == 3 and state.tokens_in == 3 * 256  # those at full resolution (16x16) merge
    assert state.tokens_attended == 3 * 128  # half the tokens
    relative = float((merged - reference).norm() / reference.norm())
    assert 0 < relative < 0.15, relative
    assert dict(unet.attn_processors) == before and not unet._forward_pre_hooks  # noqa: SLF001
    assert torch.equal(_call(unet), reference)
    with pytest.raises(BackendError, match="0 \\(off\\) to 0.9"):
        with token_merging(unet, 0.95):
            pass


def test_ratios_settings_overrides_and_refusal_on_exported_graphs() -> None:
    settings = SimpleNamespace(token_merging_ratio=0.3, token_merging_ratio_img2img=0.0, token_merging_ratio_hr=0.0)
    txt = SimpleNamespace(kind="txt2img", token_merging_ratio=None, enable_hr=True, token_merging_ratio_hr=None)
    assert ratios_for(txt, settings) == Ratios(0.3, 0.3, {"Token merging ratio": 0.3, "Token merging ratio hr": 0.3})
    settings.token_merging_ratio_hr, settings.token_merging_ratio_img2img = 0.6, 0.2
    assert ratios_for(txt, settings).hires == 0.6
    img = SimpleNamespace(kind="img2img", token_merging_ratio=None)
    assert ratios_for(img, settings) == Ratios(0.2, 0.0, {"Token merging ratio": 0.2})
    img.token_merging_ratio = 0.0  # the request wins, 0 included: no infotext key
    assert ratios_for(img, settings) == Ratios(0.0, 0.0, {})

    check_token_merging(get_backend("torch"), (0.5, 0.0))
    check_token_merging(get_backend("openvino"), (0.0, 0.0))
    with pytest.raises(BackendError, match="token merging runs on the PyTorch backend only.*ONNX Runtime"):
        check_token_merging(get_backend("onnx"), (0.5, 0.0))

    # A1111 clients: override_settings become the request's fields, and are not reported as ignored
    from modules.api.sdapi_models import SdImg2ImgPayload, SdTxt2ImgPayload
    from modules.api.sdapi_notes import _overrides_not_applied

    overrides = {"token_merging_ratio": 0.5, "token_merging_ratio_hr": 0.4}
    req = SdTxt2ImgPayload(prompt="x", override_settings=overrides).to_request()
    assert (req.token_merging_ratio, req.token_merging_ratio_hr) == (0.5, 0.4)
    req = SdImg2ImgPayload(prompt="x", override_settings={"token_merging_ratio_img2img": 0.25}).to_request()
    assert req.token_merging_ratio == 0.25
    assert override_fields(None) == {} and _overrides_not_applied(overrides, {}) == []


def test_job_writes_the_infotext_and_is_refused_on_onnx(studio_factory) -> None:
    from modules.backends.status import backend_status, set_model_backend
    from modules.generation.requests import Txt2ImgRequest
    from modules.jobs.model import JobState
    from modules.jobs.submit import submit_job

    server = studio_factory(("--nowebui",))
    ctx = server.ctx
    with server.client() as client:  # an A1111 client's override_settings: applied and written like A1111
        answer = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1, "width": 64, "height": 64,
                                                        "override_settings": {"token_merging_ratio": 0.3}})
    info = answer.json()["info"]
    assert answer.status_code == 200 and "Token merging ratio: 0.3" in info and "token_merging" not in info
    ctx.settings.update({"token_merging_ratio": 0.5})
    req = Txt2ImgRequest(prompt="x", steps=1, width=64, height=64, seed=1, sampler_name="Euler", enable_hr=True,
                         hr_scale=1.5, token_merging_ratio_hr=0.3, hr_upscaler="Latent")
    job = submit_job(ctx, req, owner="t", source="test")
    ctx.queue.wait(job.id, 300)
    assert job.state is JobState.SUCCEEDED, job.error
    infotext = job.result.infotexts[0]
    assert "Token merging ratio: 0.5, Token merging ratio hr: 0.3" in infotext
    assert "token merging 0.5" in job.result.memory_mode
    unet = ctx.models.active.model.pipeline.unet
    assert not any(isinstance(p, MergingProcessor) for p in unet.attn_processors.values())
    assert dict(backend_status(ctx, None))["Token merging"] == "0.5"

    name = ctx.models.active.info.name
    set_model_backend(ctx, name, "onnx")
    try:
        with pytest.raises(BackendError, match="token merging runs on the PyTorch backend only"):
            submit_job(ctx, req.model_copy(update={"enable_hr": False}), owner="t", source="test")
        from modules.generation.prechecks import check_backend

        check_backend(ctx, req.model_copy(update={"token_merging_ratio": 0.0, "enable_hr": False}))  # off: passes
    finally:
        set_model_backend(ctx, name, "default")
        ctx.settings.update({"token_merging_ratio": 0.0})
