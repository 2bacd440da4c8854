"""ControlNet preprocessors: weight-free modules offline, annotator modules from models/annotators
(clear errors when files are missing; one detector loaded from a local folder with the network blocked),
resize modes and pixel-perfect resolution."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from modules.generation.controlnet.preprocess import (PREPROCESSORS, AnnotatorCache, PreprocessorError,
                                                      available_modules, find_preprocessor, module_detail,
                                                      pixel_perfect_resolution, resize_to_target, resize_with_pad,
                                                      run_preprocessor)


def _picture(h: int = 48, w: int = 80) -> np.ndarray:
    img = np.full((h, w, 3), 30, dtype=np.uint8)
    cv2.rectangle(img, (10, 8), (50, 40), (220, 180, 40), -1)
    cv2.circle(img, (62, 24), 10, (40, 90, 230), -1)
    return img


WEIGHT_FREE = [name for name, pre in PREPROCESSORS.items() if pre.model_free]


@pytest.mark.parametrize("module", WEIGHT_FREE)
def test_weight_free_modules_run_offline(module: str, no_network: None) -> None:
    out = run_preprocessor(_picture(), module, resolution=64, seed=1)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


def test_canny_matches_opencv_and_uses_default_thresholds() -> None:
    img = _picture()
    padded, unpad = resize_with_pad(img, 64)
    expected = unpad(cv2.Canny(padded, 100, 200))
    out = run_preprocessor(img, "canny", resolution=64, threshold_a=-1, threshold_b=-1)
    assert out.shape[:2] == (64, 107) and np.array_equal(out[:, :, 0], expected)
    assert set(np.unique(out)) <= {0, 255}
    assert not np.array_equal(run_preprocessor(img, "canny", resolution=64, threshold_a=5, threshold_b=10), out)


def test_shuffle_is_seeded_and_names_resolve() -> None:
    img = _picture()
    a = run_preprocessor(img, "shuffle", resolution=64, seed=3)
    assert np.array_equal(a, run_preprocessor(img, "shuffle", resolution=64, seed=3))
    assert not np.array_equal(a, run_preprocessor(img, "shuffle", resolution=64, seed=4))
    assert find_preprocessor("invert (from white bg & black line)").name == "invert"
    assert find_preprocessor("hed").name == "softedge_hed" and find_preprocessor(None).name == "none"
    assert np.array_equal(run_preprocessor(img, "invert", resolution=64), 255 - img)
    with pytest.raises(PreprocessorError, match="unknown ControlNet preprocessor 'sobel'; available: none, canny"):
        find_preprocessor("sobel")


def test_missing_annotator_files_are_named(tmp_path) -> None:
    cache = AnnotatorCache(tmp_path / "annotators")
    with pytest.raises(PreprocessorError, match=r"'openpose' needs body_pose_model.pth, hand_pose_model.pth, "
                                                r"facenet.pth in .*annotators"):
        run_preprocessor(_picture(), "openpose", resolution=64, annotators=cache)
    usable, unavailable = available_modules(cache)
    assert "canny" in usable and "openpose" not in usable
    assert unavailable["depth_midas"] == ["dpt_hybrid-midas-501f0c75.pt"]
    detail = module_detail(PREPROCESSORS["canny"])
    assert detail["model_free"] and [s["name"] for s in detail["sliders"]] == [
        "Preprocessor Resolution", "Canny Low Threshold", "Canny High Threshold"]


def test_annotator_detector_loads_from_a_local_folder_offline(tmp_path, no_network) -> None:
    import torch
    from controlnet_aux.mlsd.models.mbv2_mlsd_large import MobileV2_MLSD_Large

    folder = tmp_path / "annotators"
    folder.mkdir()
    torch.save(MobileV2_MLSD_Large().state_dict(), folder / "mlsd_large_512_fp32.pth")
    cache = AnnotatorCache(folder)
    assert "mlsd" in available_modules(cache)[0]
    out = run_preprocessor(_picture(64, 64), "mlsd", resolution=64, annotators=cache)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert cache.detector("MLSDdetector", ("mlsd_large_512_fp32.pth",), "mlsd") is cache.detector(
        "MLSDdetector", ("mlsd_large_512_fp32.pth",), "mlsd")


def test_resize_modes() -> None:
    detected = np.zeros((40, 80, 3), dtype=np.uint8)
    detected[:, 38:42] = 255                       # a vertical edge in the middle
    stretched = resize_to_target(detected, 64, 64, "Just Resize")
    assert stretched.shape == (64, 64, 3) and set(np.unique(stretched)) <= {0, 255}
    cropped = resize_to_target(detected, 64, 64, "Crop and Resize")
    assert cropped.shape == (64, 64, 3) and cropped[:, 28:36].max() == 255 and cropped[:, :8].max() == 0
    grey = np.full((40, 80, 3), 90, dtype=np.uint8)
    filled = resize_to_target(grey, 64, 64, "Resize and Fill")
    assert filled.shape == (64, 64, 3) and np.all(filled == 90)
    assert pixel_perfect_resolution(np.zeros((40, 80, 3)), 64, 64, "Crop and Resize") == 64
    assert pixel_perfect_resolution(np.zeros((40, 80, 3)), 64, 64, "Resize and Fill") == 32
