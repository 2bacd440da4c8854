"""Tests for image base64 codecs and infotext metadata."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from modules.images.codec import (
    ImageDecodeError,
    decode_image_base64,
    decode_user_comment,
    encode_png_base64,
    encode_user_comment,
    exif_with_infotext,
    png_info,
    read_infotext,
)

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 4096 * 4096}
INFOTEXT = "a cat\nSteps: 20, Sampler: Euler, Seed: 1, Lora hashes: \"x: 1\""


def _png_bytes(size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "blue").save(buffer, format="PNG")
    return buffer.getvalue()


def test_encode_png_base64_is_raw_and_carries_parameters() -> None:
    encoded = encode_png_base64(Image.new("RGB", (8, 8), "green"), INFOTEXT)
    assert not encoded.startswith("data:")
    raw = base64.b64decode(encoded, validate=True)
    assert raw.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(raw)) as image:
        assert image.info["parameters"] == INFOTEXT
        assert read_infotext(image) == INFOTEXT


def test_encode_without_infotext_has_no_chunk() -> None:
    raw = base64.b64decode(encode_png_base64(Image.new("RGB", (4, 4)), None))
    with Image.open(io.BytesIO(raw)) as image:
        assert "parameters" not in image.info
        assert read_infotext(image) is None


def test_decode_raw_and_data_uri_round_trip() -> None:
    encoded = encode_png_base64(Image.new("RGB", (8, 6), "red"), INFOTEXT)
    for data in (encoded, f"data:image/png;base64,{encoded}", f"  {encoded[:40]}\n{encoded[40:]}  "):
        image = decode_image_base64(data, **LIMITS)
        assert image.size == (8, 6)
        assert image.getpixel((0, 0)) == (255, 0, 0)
        assert image.info["parameters"] == INFOTEXT


def test_decode_accepts_missing_padding() -> None:
    encoded = base64.b64encode(_png_bytes()).decode().rstrip("=")
    assert decode_image_base64(encoded, **LIMITS).size == (8, 6)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not base64 at all!!", "base64"),
        ("", "No image data"),
        (base64.b64encode(b"hello, this is not an image").decode(), "not a recognised image"),
        ("data:text/plain;base64,aGVsbG8=", "not an image"),
        ("data:image/png,rawdata", "data URI"),
    ],
)
def test_decode_rejects_bad_input(data: str, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        decode_image_base64(data, **LIMITS)


def test_decode_rejects_truncated_png() -> None:
    truncated = _png_bytes((64, 64))[:-30]
    with pytest.raises(ImageDecodeError, match="corrupt|truncated"):
        decode_image_base64(base64.b64encode(truncated).decode(), **LIMITS)


def test_decode_rejects_corrupted_png_crc() -> None:
    data = bytearray(_png_bytes((32, 32)))
    data[40] ^= 0xFF  # flip a byte inside the first chunk after IHDR
    with pytest.raises(ImageDecodeError):
        decode_image_base64(base64.b64encode(bytes(data)).decode(), **LIMITS)


def test_decode_rejects_oversized_payload() -> None:
    encoded = base64.b64encode(_png_bytes((64, 64))).decode()
    with pytest.raises(ImageDecodeError, match="byte limit"):
        decode_image_base64(encoded, max_bytes=50, max_pixels=10**8)


def test_decode_rejects_too_many_pixels_before_decoding() -> None:
    encoded = base64.b64encode(_png_bytes((100, 100))).decode()
    with pytest.raises(ImageDecodeError, match="pixel limit"):
        decode_image_base64(encoded, max_bytes=10**7, max_pixels=99 * 100)
    assert decode_image_base64(encoded, max_bytes=10**7, max_pixels=100 * 100).size == (100, 100)


def test_user_comment_encoding_matches_piexif_unicode() -> None:
    encoded = encode_user_comment("héllo")
    assert encoded == b"UNICODE\x00" + "héllo".encode("utf-16-be")
    assert decode_user_comment(encoded) == "héllo"
    assert decode_user_comment(b"ASCII\x00\x00\x00plain") == "plain"
    assert decode_user_comment(b"\x00" * 8 + b"raw text") == "raw text"


def test_read_infotext_reads_gif_comment() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF", comment=b"gif infotext")
    buffer.seek(0)
    with Image.open(buffer) as gif:
        assert read_infotext(gif) == "gif infotext"


def test_read_infotext_exif_comment_wins_like_a1111() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(
        buffer, format="PNG", pnginfo=png_info("png text"), exif=exif_with_infotext("exif text")
    )
    buffer.seek(0)
    with Image.open(buffer) as image:
        assert image.info["parameters"] == "png text"
        assert read_infotext(image) == "exif text"
