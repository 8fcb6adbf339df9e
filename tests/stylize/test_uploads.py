"""Hostile and unusual uploads, through the API and through the shared validator.

Each one is refused with a 4xx and a readable message, or accepted correctly where the
format is allowed; nothing is a 5xx.
"""

import io
import random
import re
import zipfile
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageFile
from rest_framework.test import APIClient

from stylize.imaging.loading import load_photo
from stylize.models import StyleJob
from stylize.validators import validate_photo_upload
from tests.factories import StyleFactory, UserFactory
from tests.stylize.hostile_files import encode

# --- Files -----------------------------------------------------------------------------


def photo(size=(96, 64)) -> Image.Image:
    """Not a flat colour, so JPEG has real entropy-coded data to truncate."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image.putpixel((0, 0), (255, 0, 0))
    return image


def jpeg(size=(96, 64)) -> bytes:
    return encode(photo(size), "JPEG", quality=90)


def png(size=(96, 64)) -> bytes:
    return encode(photo(size), "PNG")


def noisy_png(size=(200, 200)) -> bytes:
    """Incompressible: about 3 bytes a pixel."""
    return encode(Image.frombytes("RGB", size, random.Random(0).randbytes(size[0] * size[1] * 3)),
                  "PNG")


def png_bomb(side=20_000) -> bytes:
    """side × side pixels of 1-bit black: a few KB on disk, gigabytes once decoded."""
    return encode(Image.new("1", (side, side)), "PNG", optimize=True)


def exif_rotated_jpeg() -> bytes:
    """Stored 80 wide × 40 high, with EXIF orientation 6: shown 40 wide × 80 high."""
    image = Image.new("RGB", (80, 40), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 40, 40))  # left half red as stored
    exif = image.getexif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def sixteen_bit_png() -> bytes:
    image = Image.linear_gradient("L").resize((64, 64)).convert("I")
    image = image.point(lambda v: v * 257).convert("I;16")
    data = encode(image, "PNG")
    assert data[24] == 16  # IHDR bit depth: really 16 bits per sample
    return data


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), "JPEG")


def upload(data: bytes, name="photo.jpg", content_type="image/jpeg"):
    return SimpleUploadedFile(name, data, content_type=content_type)


def refusal(data: bytes, name="photo.jpg") -> ValidationError:
    return refusal_of(upload(data, name))


def refusal_of(file) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        validate_photo_upload(file)
    return caught.value


# --- The validator on its own ----------------------------------------------------------


class TestValidator:
    def test_accepts_a_jpeg_and_rewinds(self):
        file = upload(jpeg(), "holiday.jpg")
        result = validate_photo_upload(file)
        assert (result.format, result.content_type, result.extension) == (
            "JPEG", "image/jpeg", "jpg")
        assert (result.width, result.height, result.orientation) == (96, 64, 1)
        assert result.size_bytes == len(jpeg())
        assert file.tell() == 0
        assert file.read() == jpeg()

    @pytest.mark.parametrize("data, fmt, ext", [
        (png(), "PNG", "png"),
        (encode(photo(), "WEBP"), "WEBP", "webp"),
    ])
    def test_accepts_png_and_webp(self, data, fmt, ext):
        result = validate_photo_upload(upload(data, "x.bin", "application/octet-stream"))
        assert (result.format, result.extension, result.filename) == (fmt, ext, f"x.{ext}")

    def test_rewinds_after_a_refusal_too(self):
        file = upload(b"not an image")
        with pytest.raises(ValidationError):
            validate_photo_upload(file)
        assert file.tell() == 0

    def test_empty(self):
        error = refusal(b"")
        assert error.code == "empty"
        assert error.messages == ["The file is empty."]

    def test_over_the_byte_limit(self, settings):
        settings.UPLOAD_MAX_BYTES = 1000
        data = noisy_png()
        assert len(data) > 1000
        error = refusal(data)
        assert error.code == "file_too_large"
        assert error.messages == [
            f"The file is {len(data) / 1024:.1f} KB; photos may be at most 1000 bytes."]
        settings.UPLOAD_MAX_BYTES = 20 * 1024 * 1024
        big = upload(b"x", "huge.jpg")
        big.size = 25 * 1024 * 1024  # as Django reports a 25 MB upload
        assert refusal_of(big).messages == [
            "The file is 25 MB; photos may be at most 20 MB."]

    def test_default_limits(self):
        from django.conf import settings

        assert settings.UPLOAD_MAX_BYTES == 20 * 1024 * 1024
        assert settings.UPLOAD_MAX_PIXELS == 40_000_000

    def test_text_named_jpg(self):
        error = refusal(b"Just some text, honestly.\n" * 10, "photo.jpg")
        assert error.code == "unsupported_format"
        assert error.messages == [
            "This file is not a supported photo. Upload a JPEG, PNG, WebP, HEIC or AVIF image."]

    @pytest.mark.parametrize("data, what", [
        (encode(photo(), "GIF"), "A GIF image"),
        (encode(photo(), "BMP"), "A BMP image"),
        (encode(photo(), "TIFF"), "A TIFF image"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
         "An SVG or XML file"),
    ])
    def test_other_formats_are_named(self, data, what):
        error = refusal(data, "photo.png")
        assert error.code == "unsupported_format"
        assert error.messages[0].startswith(f"{what} is not a supported photo.")

    def test_truncated_jpeg(self):
        data = jpeg((400, 300))
        error = refusal(data[: len(data) * 2 // 3])
        assert error.code == "corrupt"
        assert "damaged or incomplete" in error.messages[0]

    def test_truncated_jpeg_even_if_pillow_is_told_to_tolerate_it(self, monkeypatch):
        monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
        data = jpeg((400, 300))
        assert refusal(data[: len(data) * 2 // 3]).code == "corrupt"
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # put back as it was

    def test_truncated_png(self):
        data = png((200, 200))
        assert refusal(data[: len(data) // 2], "photo.png").code == "corrupt"

    def test_png_with_a_bad_checksum(self):
        data = bytearray(png((64, 64)))
        idat = data.index(b"IDAT")
        data[idat + 10] ^= 0xFF
        assert refusal(bytes(data), "photo.png").code == "corrupt"

    def test_png_decompression_bomb(self):
        data = png_bomb()
        assert len(data) < 100_000  # 400 megapixels in a few KB
        error = refusal(data, "photo.png")
        assert error.code == "too_many_pixels"
        assert "at most 40 megapixels" in error.messages[0]

    def test_pixel_limit_is_checked_before_decoding(self, monkeypatch):
        """Over our limit but under Pillow's: refused from the header, nothing decoded."""
        def no_decoding(self):
            raise AssertionError("decoded an image over the pixel limit")

        monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
        error = refusal(png_bomb(7000), "photo.png")
        assert error.code == "too_many_pixels"
        assert error.messages == [
            "The image is too large (7000×7000 pixels, 49.0 megapixels): photos may have "
            "at most 40 megapixels."]

    def test_pillows_bomb_warning_is_a_refusal_too(self, settings):
        """With our limit raised past Pillow's, Pillow's warning still refuses the bomb."""
        settings.UPLOAD_MAX_PIXELS = 10**9
        assert 10_000**2 > Image.MAX_IMAGE_PIXELS
        error = refusal(png_bomb(10_000), "photo.png")
        assert error.code == "too_many_pixels"

    def test_pixel_limit_setting(self, settings):
        settings.UPLOAD_MAX_PIXELS = 96 * 64 - 1
        assert refusal(png()).code == "too_many_pixels"
        settings.UPLOAD_MAX_PIXELS = 96 * 64
        validate_photo_upload(upload(png()))

    def test_one_by_a_hundred_thousand(self):
        error = refusal(encode(Image.new("L", (1, 100_000)), "PNG"), "line.png")
        assert error.code == "too_small"
        assert error.messages == [
            "The image is 1×100000 pixels; each side must be at least 16 pixels."]

    def test_extreme_aspect_ratio(self):
        error = refusal(encode(Image.new("RGB", (16 * 21, 16)), "PNG"), "strip.png")
        assert error.code == "extreme_aspect_ratio"
        assert error.messages == [
            "The image is 336×16 pixels; its longer side may be at most 20 times its "
            "shorter side."]
        # Exactly 20:1 is still a (very wide) panorama.
        validate_photo_upload(upload(encode(Image.new("RGB", (320, 16)), "PNG")))

    def test_animated_gif(self):
        error = refusal(animated("GIF"), "cat.gif")
        assert error.code == "unsupported_format"
        assert error.messages[0].startswith("A GIF image")

    @pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
    def test_animated_png_and_webp(self, fmt):
        error = refusal(animated(fmt), "anim.png")
        assert error.code == "animated"
        assert error.messages == ["Animated images are not supported. Upload a still photo."]

    def test_jpeg_with_extra_pictures_mpo_is_a_still_photo(self):
        buffer = io.BytesIO()
        photo().save(buffer, format="MPO", save_all=True, append_images=[photo()])
        result = validate_photo_upload(upload(buffer.getvalue(), "phone.jpg"))
        assert (result.format, result.content_type, result.extension) == (
            "MPO", "image/jpeg", "jpg")

    def test_cmyk_jpeg(self):
        result = validate_photo_upload(upload(cmyk_jpeg()))
        assert (result.format, result.mode) == ("JPEG", "CMYK")

    def test_sixteen_bit_png(self):
        result = validate_photo_upload(upload(sixteen_bit_png(), "deep.png"))
        assert (result.format, result.mode) == ("PNG", "I;16")

    def test_exif_orientation_gives_the_upright_size(self):
        result = validate_photo_upload(upload(exif_rotated_jpeg()))
        assert result.orientation == 6
        assert (result.width, result.height) == (40, 80)

    def test_wrong_name_and_content_type(self):
        file = upload(jpeg(), "photo.png", "image/png")
        result = validate_photo_upload(file)
        assert result.content_type == "image/jpeg"
        assert file.name == "photo.jpg"

    @pytest.mark.parametrize("name, safe", [
        ("../../etc/passwd", "passwd.png"),
        ("evil.html", "evil.png"),
        ("x.php.png", "x-php.png"),
        ("<script>.png", "script.png"),
        ("%%%.png", "photo.png"),
    ])
    def test_the_name_comes_from_the_content(self, name, safe):
        file = upload(png(), name)
        assert validate_photo_upload(file).filename == safe
        assert file.name == safe

    def test_png_with_html_appended_is_kept_as_a_png(self):
        data = png() + b"<html><script>alert(document.cookie)</script></html>"
        file = upload(data, "page.html", "text/html")
        result = validate_photo_upload(file)
        assert (result.format, file.name) == ("PNG", "page.png")

    def test_html_with_a_png_appended_is_refused(self):
        data = b"<html><script>alert(1)</script></html>" + png()
        assert refusal(data, "photo.png").code == "unsupported_format"

    def test_gif_javascript_polyglot_is_refused(self):
        # Valid as a GIF header and as JavaScript (GIF89a=…); GIF is not allowed anyway.
        data = b"GIF89a/*\x0a\x00\x0a\x00\x00\x00\x00*/=alert(1);" + b"\x00" * 20
        error = refusal(data, "x.gif")
        assert error.code == "unsupported_format"
        assert error.messages[0].startswith("A GIF image")

    def test_a_webp_libwebp_will_not_open_is_refused(self):
        """Found by `make fuzz` (then a 500 from the upload): two ALPH chunks, the RIFF
        size made right. The byte walk alone lets it through; Pillow's header read of
        the bytes to be stored (libwebp's demuxer) refuses it."""
        image = photo((48, 32)).convert("RGBA")
        image.putalpha(Image.linear_gradient("L").resize((48, 32)))
        data = encode(image, "WEBP", quality=70)
        alph = data.index(b"ALPH")
        length = int.from_bytes(data[alph + 4:alph + 8], "little")
        end = alph + 8 + length + (length & 1)
        doubled = data[:end] + data[alph:end] + data[end:]
        doubled = doubled[:4] + (len(doubled) - 8).to_bytes(4, "little") + doubled[8:]
        assert refusal(doubled, "a.webp").code == "corrupt"
        validate_photo_upload(upload(data, "a.webp"))  # the file it came from is fine

    def test_zip_is_refused(self):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("a.txt", "hello")
        assert refusal(buffer.getvalue(), "photo.jpg").messages[0].startswith("A ZIP archive")


# --- Through the API -------------------------------------------------------------------


@pytest.fixture
def api(db):
    cache.clear()
    StyleFactory(slug="starry-night")
    client = APIClient()
    client.force_authenticate(UserFactory())
    return client


def post(client, data: bytes, name="photo.jpg", content_type="image/jpeg"):
    return client.post(
        "/api/v1/jobs/",
        {"image": upload(data, name, content_type), "style": "starry-night"},
        format="multipart",
    )


def assert_refused(response, message: str):
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    assert message in " ".join(response.json()["image"])
    assert not StyleJob.objects.exists()


@pytest.mark.parametrize("data, name, message", [
    (b"", "photo.jpg", "The file is empty."),
    (b"hello\n" * 100, "photo.jpg", "This file is not a supported photo."),
    (jpeg((400, 300))[:3000], "photo.jpg", "damaged or incomplete"),
    (png_bomb(), "bomb.png", "at most 40 megapixels"),
    (encode(Image.new("L", (1, 100_000)), "PNG"), "line.png", "at least 16 pixels"),
    (animated("GIF"), "cat.gif", "A GIF image is not a supported photo."),
    (animated("PNG"), "anim.png", "Animated images are not supported."),
    (b"GIF89a/*\x0a\x00\x0a\x00\x00\x00\x00*/=alert(1);" + b"\x00" * 20, "x.gif", "A GIF image"),
])
def test_api_refuses_hostile_uploads(api, data, name, message):
    assert_refused(post(api, data, name), message)


def test_api_refuses_over_the_byte_limit(api, settings):
    settings.UPLOAD_MAX_BYTES = 2000
    assert_refused(post(api, noisy_png(), "big.png"), "photos may be at most")


def stored(response) -> StyleJob:
    assert response.status_code == 201, response.content
    return StyleJob.objects.get(pk=response.json()["id"])


def test_api_accepts_a_cmyk_jpeg_and_the_pipeline_reads_it_as_rgb(api):
    job = stored(post(api, cmyk_jpeg()))
    with job.input_image.open("rb") as file:
        assert load_photo(file, max_side=1024).shape == (48, 64, 3)


def test_api_accepts_a_16_bit_png(api):
    job = stored(post(api, sixteen_bit_png(), "deep.png", "image/png"))
    assert job.input_image.name.endswith(".png")
    with job.input_image.open("rb") as file:
        pixels = load_photo(file, max_side=1024)
    assert pixels.shape == (64, 64, 3)
    assert pixels.max() > 200  # scaled down from 16 bits, not clipped to white or black


def test_api_accepts_an_exif_rotated_photo_and_keeps_its_orientation(api):
    data = exif_rotated_jpeg()
    job = stored(post(api, data))
    with job.input_image.open("rb") as file, Image.open(file) as kept:
        # Stored as sent, with only the orientation left of its EXIF: the web request
        # decodes nothing; the worker turns it upright (test_private_files.py).
        assert kept.size == (80, 40) and kept.getexif() == {0x0112: 6}
    with job.input_image.open("rb") as file:
        pixels = load_photo(file, max_side=1024)
    assert pixels.shape == (80, 40, 3)  # upright: 40 wide, 80 high
    top, bottom = pixels[5, 20], pixels[75, 20]
    assert top[0] > 200 and top[2] < 60  # the stored left half (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_api_accepts_by_content_not_content_type(api):
    job = stored(post(api, jpeg(), "photo.png", "image/png"))
    assert Path(job.input_image.name).suffix == ".jpg"


def test_api_stores_a_polyglot_under_an_image_name(api):
    """A PNG with HTML (or a ZIP) appended decodes fully as a PNG, so it is accepted.

    It is stored as ``.png`` whatever it was called, so it is only ever served as an
    image (with ``X-Content-Type-Options: nosniff``), never as a page; the trailing bytes
    never reach the result, which the pipeline re-encodes from pixels.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<script>alert(1)</script>")
    for tail, name in [(b"<html><script>alert(1)</script></html>", "page.html"),
                       (buffer.getvalue(), "bundle.zip")]:
        job = stored(post(api, png() + tail, name, "text/html"))
        assert Path(job.input_image.name).suffix == ".png"
        assert not job.input_image.name.endswith((".html", ".zip"))


def test_api_accepts_a_very_long_name(api):
    job = stored(post(api, png(), "a" * 300 + ".png", "image/png"))
    assert re.fullmatch(r"photos/[0-9a-f]{32}\.png", job.input_image.name)
    assert job.input_filename == "a" * 40 + ".png"  # shown back to its owner only


def test_api_refuses_an_image_field_that_is_not_a_file(api):
    response = api.post("/api/v1/jobs/", {"image": "x" * 1000, "style": "starry-night"},
                        format="multipart")
    assert response.status_code == 400
    assert response.json()["image"]


# Mutated files through the API (Hypothesis): tests/stylize/test_upload_fuzz.py.
