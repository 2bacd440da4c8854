"""Image codecs: infotext metadata (PNG text / EXIF UserComment), base64 encode and safe decode.

Metadata follows A1111 ``modules/images.py``: PNG gets a ``parameters`` text chunk; JPEG and
WebP get an EXIF ``UserComment`` in piexif's "unicode" form (``b"UNICODE\\0"`` + UTF-16-BE);
GIF carries a ``comment``. Reading mirrors ``read_info_from_image``.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from typing import Final

from PIL import ExifTags, Image, PngImagePlugin, UnidentifiedImageError

_UNICODE_PREFIX: Final[bytes] = b"UNICODE\x00"
_ASCII_PREFIX: Final[bytes] = b"ASCII\x00\x00\x00"
_JIS_PREFIX: Final[bytes] = b"JIS\x00\x00\x00\x00\x00"
_USER_COMMENT_ENCODINGS: Final[dict[bytes, str]] = {
    _UNICODE_PREFIX: "utf_16_be",
    _ASCII_PREFIX: "ascii",
    _JIS_PREFIX: "shift_jis",
}
_DATA_URI: Final[re.Pattern[str]] = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?(;[\w-]+=[^;,]*)*;base64,", re.I)
_WHITESPACE: Final[re.Pattern[str]] = re.compile(r"\s+")


class ImageDecodeError(ValueError):
    """An uploaded image could not be decoded or exceeds the configured limits."""


def png_info(infotext: str | None) -> PngImagePlugin.PngInfo | None:
    """A ``PngInfo`` holding the ``parameters`` chunk, or None when there is no infotext."""
    if not infotext:
        return None
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext)
    return info


def encode_user_comment(text: str) -> bytes:
    """EXIF UserComment bytes exactly as piexif's ``UserComment.dump(text, "unicode")``."""
    return _UNICODE_PREFIX + text.encode("utf_16_be", errors="replace")


def decode_user_comment(data: bytes | str) -> str:
    """Decode an EXIF UserComment like A1111 (piexif ``UserComment.load``, utf-8 fallback)."""
    if isinstance(data, str):
        return data
    encoding = _USER_COMMENT_ENCODINGS.get(data[:8]) if len(data) >= 8 else None
    if encoding is None:
        return data.decode("utf8", errors="ignore").lstrip("\x00")
    return data[8:].decode(encoding, errors="replace")


def exif_with_infotext(infotext: str) -> bytes:
    """Serialised EXIF block whose Exif IFD carries ``UserComment`` = infotext."""
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = encode_user_comment(infotext)
    return exif.tobytes()


def read_infotext(image: Image.Image) -> str | None:
    """The infotext stored in an image (A1111 ``read_info_from_image``), or None.

    PNG ``parameters`` first; a non-empty EXIF ``UserComment`` (JPEG/WebP) takes precedence,
    as in A1111; otherwise a GIF-style ``comment``.
    """
    info = image.info or {}
    geninfo = info.get("parameters")
    if "exif" in info:
        try:
            raw = image.getexif().get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.UserComment, b"")
        except (OSError, ValueError, SyntaxError):
            raw = b""
        comment = decode_user_comment(raw) if raw else ""
        if comment:
            geninfo = comment
    elif "comment" in info:
        comment_value = info["comment"]
        geninfo = comment_value.decode("utf8", errors="ignore") if isinstance(comment_value, bytes) else comment_value
    if geninfo is not None and not isinstance(geninfo, str):
        geninfo = str(geninfo)
    return geninfo


def encode_png_bytes(image: Image.Image, infotext: str | None) -> bytes:
    """PNG bytes of ``image`` with a ``parameters`` chunk when ``infotext`` is given."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=png_info(infotext))
    return buffer.getvalue()


def encode_png_base64_with_texts(image: Image.Image, texts: dict[str, str]) -> str:
    """Raw base64 of the PNG with each non-empty ``texts`` item as a text chunk (e.g. ``parameters`` and
    Extras' ``postprocessing``)."""
    meta = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        if value:
            meta.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=meta)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def encode_png_base64(image: Image.Image, infotext: str | None) -> str:
    """Raw base64 (no ``data:`` prefix) of the PNG, as the A1111 API returns images."""
    return base64.b64encode(encode_png_bytes(image, infotext)).decode("ascii")


def _strip_data_uri(data: str) -> str:
    text = data.strip()
    if text[:5].lower() != "data:":
        return text
    match = _DATA_URI.match(text)
    if match is None:
        raise ImageDecodeError("Invalid data URI: expected 'data:image/<type>;base64,<data>'")
    mime = (match.group(1) or "").lower()
    if mime and not mime.startswith("image/"):
        raise ImageDecodeError(f"Data URI is {mime!r}, not an image")
    return text[match.end():]


def _b64decode(text: str) -> bytes:
    compact = _WHITESPACE.sub("", text)
    if len(compact) % 4:
        compact += "=" * (-len(compact) % 4)
    altchars = b"-_" if ("-" in compact or "_" in compact) else None
    try:
        return base64.b64decode(compact, altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageDecodeError(f"Invalid base64 image data: {exc}") from None


def decode_image_base64(data: str, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Decode raw base64 or a ``data:image/...;base64,`` URI into a fully loaded image.

    Raises ImageDecodeError for invalid base64, data that is not a (valid) image, a payload
    larger than ``max_bytes`` or an image with more than ``max_pixels`` pixels; the pixel limit
    is checked from the header, before any pixel data is decoded.
    """
    if not isinstance(data, str) or not data.strip():
        raise ImageDecodeError("No image data given")
    payload = _strip_data_uri(data)
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise ImageDecodeError(f"Image payload is larger than the {max_bytes}-byte limit")
    raw = _b64decode(payload)
    if not raw:
        raise ImageDecodeError("Image data is empty")
    if len(raw) > max_bytes:
        raise ImageDecodeError(f"Image payload is {len(raw)} bytes, over the {max_bytes}-byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as probe:
                width, height = probe.size
                if width * height > max_pixels:
                    raise ImageDecodeError(
                        f"Image is {width}x{height} ({width * height} pixels), over the {max_pixels}-pixel limit"
                    )
                probe.verify()
            image = Image.open(io.BytesIO(raw))
            image.load()
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("Data is not a recognised image format") from None
    except Image.DecompressionBombError:
        raise ImageDecodeError("Image dimensions are too large to decode safely") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"Image data is corrupt or truncated: {exc}") from None
    return image


#: the limits an image sent in a request is decoded within (the A1111 routes' and the job kinds')
REQUEST_IMAGE_MAX_BYTES: Final[int] = 50 * 1024 * 1024
REQUEST_IMAGE_MAX_PIXELS: Final[int] = 64 * 1024 * 1024


def decode_request_image(data: str, what: str = "image") -> Image.Image:
    """A request's base64 image (or data URI) within the request limits; ImageDecodeError naming ``what``."""
    try:
        return decode_image_base64(data, max_bytes=REQUEST_IMAGE_MAX_BYTES, max_pixels=REQUEST_IMAGE_MAX_PIXELS)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{what}: {exc}") from None
