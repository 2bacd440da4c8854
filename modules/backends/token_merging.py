"""Token merging (ToMe for Stable Diffusion) through diffusers' attention processors, for one pipeline call.

The method (Bolya & Hoffman, "Token Merging for Fast Stable Diffusion", 2023): before a UNet's
self-attention, the image tokens are split into a *destination* set (one token per 2x2 cell of the latent
grid, its place in the cell drawn at random) and a *source* set (the others); each source token finds its most
similar destination token (cosine similarity), and the ``r`` source tokens with the best matches are averaged
into their destinations (bipartite soft matching). Attention then runs over ``N - r`` tokens, and its output
is *unmerged*: each merged source token takes its destination's output. Only the self-attention layers at the
latent's full resolution are merged (the paper's default, where nearly all the attention cost is; a UNet with
no attention there, SDXL, merges at half resolution), so cross-attention and the rest of the UNet are exact.

Nothing is patched: :func:`token_merging` wraps each ``attn1`` layer's own processor in a
:class:`MergingProcessor` with ``unet.set_attn_processor`` and puts the previous processors back on exit;
the latent's size reaches the processors through a forward pre-hook on the UNet (PyTorch's hook API), removed
on exit too. :func:`token_merging_hook` is the generation's :class:`SamplingHook`: around each pipeline call
(first pass, hires pass) with its ratio, and the A1111 infotext keys ``Token merging ratio`` and
``Token merging ratio hr``.

Settings (A1111's): ``token_merging_ratio`` (0: off, up to 0.9), ``token_merging_ratio_img2img`` (img2img when
non-zero), ``token_merging_ratio_hr`` (the hires pass when non-zero); a request's ``token_merging_ratio`` /
``token_merging_ratio_hr`` (A1111: ``override_settings``) win. The PyTorch backend only: an exported graph
(ONNX Runtime, OpenVINO) has its attention fixed at export, so a job asking for token merging there is
refused by name (:func:`check_token_merging`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from modules.backends.registry import Backend, BackendError

#: the largest ratio offered (A1111's slider: 0 to 0.9)
MAX_RATIO = 0.9
#: the merge's random choice of destination tokens is seeded with this at each pipeline call (same images again)
SEED = 0


class TokenMergingError(BackendError):
    """Token merging asked for where it cannot run."""


def check_ratio(ratio: float) -> float:
    ratio = float(ratio)
    if not 0.0 <= ratio <= MAX_RATIO:
        raise TokenMergingError(f"token merging ratio {ratio:g} is out of range: 0 (off) to {MAX_RATIO:g}")
    return ratio


def check_token_merging(backend: Backend, ratios: tuple[float | None, ...]) -> None:
    """Refuse token merging on an exported-graph backend (by name, with what to change)."""
    if backend.name == "torch" or not any(ratios):
        return
    raise TokenMergingError(
        f"token merging runs on the PyTorch backend only (the {backend.label} graph has its attention fixed at "
        "export): set this model's backend to PyTorch, or set token_merging_ratio to 0 in Settings > Optimizations")


# --- the merge -----------------------------------------------------------------------------------------------------

@dataclass
class Merge:
    """One bipartite soft matching of ``tokens`` tokens down to ``tokens - merged``; :meth:`merge` and
    :meth:`unmerge` apply it to tensors of shape ``(batch, tokens, channels)``."""

    tokens: int
    merged: int
    dst_idx: Any = None      # (Nd,) positions of the destination tokens
    src_pos: Any = None      # (B, Ns) positions of the source tokens, best-matched first
    dst_of_src: Any = None   # (B, Ns) index into the destinations of each source token's match, same order

    def merge(self, x: Any) -> Any:
        if self.merged == 0:
            return x
        import torch

        r = self.merged
        rows = torch.arange(x.shape[0], device=x.device)[:, None]
        src = x[rows, self.src_pos]                     # (B, Ns, C), best-matched first
        dst = x[:, self.dst_idx]                        # (B, Nd, C), a copy
        counts = torch.ones(dst.shape[:2], dtype=x.dtype, device=x.device)
        ones = torch.ones(r, dtype=x.dtype, device=x.device)
        for b in range(x.shape[0]):  # sums and counts by row (index_add_ is far faster than a scatter on CPUs)
            dst[b].index_add_(0, self.dst_of_src[b, :r], src[b, :r])
            counts[b].index_add_(0, self.dst_of_src[b, :r], ones)
        return torch.cat([src[:, r:], dst / counts[..., None]], dim=1)

    def unmerge(self, y: Any) -> Any:
        if self.merged == 0:
            return y
        import torch

        batch, _, channels = y.shape
        r = self.merged
        kept = self.src_pos.shape[1] - r
        unmerged, dst = y[:, :kept], y[:, kept:]
        rows = torch.arange(batch, device=y.device)[:, None]
        out = y.new_empty(batch, self.tokens, channels)
        out[:, self.dst_idx] = dst
        out[rows, self.src_pos[:, r:]] = unmerged
        out[rows, self.src_pos[:, :r]] = dst[rows, self.dst_of_src[:, :r]]
        return out


def plan_merge(x: Any, height: int, width: int, ratio: float, generator: Any = None) -> Merge:
    """The merge of ``x`` (``(batch, height * width, channels)``, row-major tokens) removing ``ratio`` of its
    tokens (at most the source tokens: three in four)."""
    import torch

    batch, tokens, _ = x.shape
    if tokens != height * width:
        raise ValueError(f"{tokens} tokens are not a {height}x{width} grid")
    cells_h, cells_w = height // 2, width // 2
    r = min(int(tokens * ratio), tokens - cells_h * cells_w)
    if r <= 0 or cells_h * cells_w == 0:
        return Merge(tokens, 0)
    device = x.device
    choice = torch.randint(4, (cells_h, cells_w), generator=generator)
    rows = torch.arange(cells_h)[:, None] * 2 + choice // 2
    cols = torch.arange(cells_w)[None, :] * 2 + choice % 2
    is_dst = torch.zeros(height, width, dtype=torch.bool)
    is_dst[rows, cols] = True
    flat = is_dst.flatten()
    dst_idx = flat.nonzero().squeeze(1).to(device)
    src_idx = (~flat).nonzero().squeeze(1).to(device)
    with torch.no_grad():
        unit = torch.nn.functional.normalize(x, dim=-1)
        scores = unit[:, src_idx] @ unit[:, dst_idx].transpose(1, 2)   # (B, Ns, Nd)
        best, match = scores.max(dim=-1)
        order = best.argsort(dim=-1, descending=True)
    return Merge(tokens, r, dst_idx=dst_idx, src_pos=src_idx[order], dst_of_src=torch.gather(match, 1, order))


# --- the processor -------------------------------------------------------------------------------------------------

@dataclass
class MergeState:
    """What the processors of one pipeline call share: the ratio, the latent's size (set by the UNet's pre-hook),
    the merge's random generator, and counts of what the attention saw (for the job's tests and the bench)."""

    ratio: float
    max_downsample: int = 1
    latent_hw: tuple[int, int] | None = None
    generator: Any = None
    merged_calls: int = 0
    tokens_in: int = 0        # tokens given to the merged layers, summed over their calls
    tokens_attended: int = 0  # tokens their attention saw

    def grid_of(self, tokens: int) -> tuple[int, int] | None:
        """(h, w) of a layer with ``tokens`` tokens when it is at a merged resolution, else None."""
        if self.latent_hw is None:
            return None
        height, width = self.latent_hw
        factor = 1
        while factor <= self.max_downsample:
            h, w = -(-height // factor), -(-width // factor)
            if h * w == tokens:
                return h, w
            factor *= 2
        return None


class MergingProcessor:
    """A self-attention layer's processor that attends over the merged tokens and unmerges the output; the
    layer's own processor (``inner``) does the attention."""

    def __init__(self, inner: Any, state: MergeState) -> None:
        self.inner = inner
        self.state = state

    def __call__(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any = None,
                 attention_mask: Any = None, temb: Any = None, **kwargs: Any) -> Any:
        grid = self.state.grid_of(hidden_states.shape[1]) if hidden_states.ndim == 3 and \
            encoder_hidden_states is None and attention_mask is None else None
        if temb is not None:
            kwargs["temb"] = temb
        if grid is None:
            return self.inner(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                              attention_mask=attention_mask, **kwargs)
        plan = plan_merge(hidden_states, *grid, self.state.ratio, self.state.generator)
        merged = plan.merge(hidden_states)
        self.state.merged_calls += 1
        self.state.tokens_in += hidden_states.shape[1]
        self.state.tokens_attended += merged.shape[1]
        out = self.inner(attn, merged, **kwargs)
        return plan.unmerge(out)


def _max_downsample(unet: Any) -> int:
    """1 when the UNet has attention at the latent's full resolution (SD 1.x/2.x), else 2 (SDXL)."""
    blocks = getattr(unet, "down_blocks", None) or ()
    return 1 if blocks and getattr(blocks[0], "attentions", None) else 2


@contextlib.contextmanager
def token_merging(unet: Any, ratio: float) -> Iterator[MergeState | None]:
    """Merge tokens in ``unet``'s full-resolution self-attention inside the block (ratio 0: nothing changes);
    its processors and hooks are as before afterwards, even after an error."""
    ratio = check_ratio(ratio)
    if ratio == 0.0:
        yield None
        return
    import torch

    if not hasattr(unet, "set_attn_processor"):
        raise TokenMergingError("token merging works on UNet models (SD 1.x, 2.x, SDXL); this model has no UNet")
    state = MergeState(ratio, max_downsample=_max_downsample(unet), generator=torch.Generator().manual_seed(SEED))
    original = dict(unet.attn_processors)
    wrapped = {name: MergingProcessor(proc, state) if name.endswith("attn1.processor") else proc
               for name, proc in original.items()}

    def remember_size(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        sample = args[0] if args else kwargs.get("sample")
        if sample is not None:
            state.latent_hw = (int(sample.shape[-2]), int(sample.shape[-1]))

    handle = unet.register_forward_pre_hook(remember_size, with_kwargs=True)
    unet.set_attn_processor(wrapped)
    try:
        yield state
    finally:
        handle.remove()
        unet.set_attn_processor(original)


# --- the job's ratios and its sampling hook -------------------------------------------------------------------------

@dataclass(frozen=True)
class Ratios:
    """A job's token merging: the first pass (txt2img or img2img) and the hires pass."""

    first: float = 0.0
    hires: float = 0.0
    infotext: dict[str, float] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.first or self.hires)


def ratios_for(req: Any, settings: Any) -> Ratios:
    """A1111's choice: the request's ratio, else the setting (img2img: ``token_merging_ratio_img2img`` when
    non-zero); the hires pass: the request's or the setting's hires ratio when non-zero, else the first pass's."""
    asked = getattr(req, "token_merging_ratio", None)
    if asked is not None:
        first = float(asked)
    elif getattr(req, "kind", "") in ("img2img", "img2img_batch"):
        first = settings.token_merging_ratio_img2img or settings.token_merging_ratio
    else:
        first = settings.token_merging_ratio
    hires = 0.0
    if getattr(req, "enable_hr", False):
        asked_hr = getattr(req, "token_merging_ratio_hr", None)
        hires = float(asked_hr) if asked_hr is not None else (settings.token_merging_ratio_hr or first)
    infotext = {}
    if first:
        infotext["Token merging ratio"] = first
    if hires:
        infotext["Token merging ratio hr"] = hires
    return Ratios(check_ratio(first), check_ratio(hires), infotext)


def token_merging_hook(ratios: Ratios) -> Callable[[Any], Any]:
    """The :class:`SamplingHook` merging tokens around each pipeline call at that pass's ratio."""

    @contextlib.contextmanager
    def hook(ctx: Any) -> Iterator[None]:
        ratio = ratios.hires if ctx.task == "hires" else ratios.first
        ctx.infotext_params.update(ratios.infotext)
        unet = getattr(ctx.pipe, "unet", None)
        if ratio and unet is None:
            raise TokenMergingError("token merging works on UNet models (SD 1.x, 2.x, SDXL); "
                                    f"{ctx.model.family.label} has none: set token_merging_ratio to 0")
        with token_merging(unet, ratio):
            yield

    return hook


def override_fields(overrides: dict[str, Any] | None, *, img2img: bool = False) -> dict[str, Any]:
    """The request fields an A1111 payload's ``override_settings`` asks for: ``token_merging_ratio`` (img2img:
    ``token_merging_ratio_img2img`` when that one is not given) and, for txt2img, ``token_merging_ratio_hr``."""
    overrides = overrides or {}
    fields: dict[str, Any] = {}
    first = overrides.get("token_merging_ratio")
    if img2img and first is None:
        first = overrides.get("token_merging_ratio_img2img")
    if first is not None:
        fields["token_merging_ratio"] = first
    if not img2img and overrides.get("token_merging_ratio_hr") is not None:
        fields["token_merging_ratio_hr"] = overrides["token_merging_ratio_hr"]
    return fields
