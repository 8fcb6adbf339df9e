"""What an upload costs the web process, and what its decode costs the worker.

The web request only walks the file's bytes (``stylize.image_headers``); these tests
measure it with CPU time (``time.process_time``) and Python's allocations
(``tracemalloc``), and make any Pillow decode in it fail the test, since Pillow's own
buffers are invisible to tracemalloc. The worker's side is measured as the peak RSS of
a fresh process (``VmHWM``). The files: ``tests/stylize/hostile_files.py``.
"""

import io
import json
import random
import subprocess
import sys
import time
import tracemalloc
from contextlib import contextmanager
from unittest import mock

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageFile
from rest_framework.test import APIClient

from stylize.imaging import loading
from stylize.models import StyleJob
from stylize.services.stylizing import job_run
from stylize.validators import validate_photo_upload
from tests.factories import StyleFactory, StyleJobFactory, UserFactory
from tests.helpers import BASE_DIR
from tests.stylize import hostile_files

# The bound for one upload request in the web process.
MAX_WEB_CPU_S = 1.0
MAX_WEB_BYTES = 200 * 2**20


@pytest.fixture(scope="module")
def scan_bomb():
    return hostile_files.scan_bomb_jpeg(6000, 3000)


@pytest.fixture(scope="module")
def rgba_png():
    return hostile_files.rgba_png(6300)


@pytest.fixture(scope="module")
def rgb16_png():
    return hostile_files.sixteen_bit_png(6300, colour_type=2)


@pytest.fixture(scope="module")
def grey16_png():
    return hostile_files.sixteen_bit_png(6300, colour_type=0)


@pytest.fixture(scope="module")
def big_png():
    """Incompressible, just under the 20 MB limit: what costs most to copy and walk."""
    side = 2550
    noise = Image.frombytes("RGB", (side, side), random.Random(1).randbytes(side * side * 3))
    data = hostile_files.encode(noise, "PNG", compress_level=0)
    assert 18 * 2**20 < len(data) < 20 * 2**20
    return data


@contextmanager
def web_cost(decoding_allowed=False):
    """Yields a dict that gets ``cpu_s`` and ``peak_bytes`` (Python's allocations).

    Any pixel decode inside fails the test, so the numbers are the whole cost.
    """
    def no_decoding(self, *args, **kwargs):
        raise AssertionError("the web request decoded pixels")

    cost = {}
    with mock.patch.object(ImageFile.ImageFile, "load", no_decoding), \
            mock.patch.object(Image.Image, "load", no_decoding):
        tracemalloc.start()
        started = time.process_time()
        try:
            yield cost
        finally:
            cost["cpu_s"] = time.process_time() - started
            cost["peak_bytes"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()


def assert_cheap(cost, label):
    print(f"{label}: {cost['cpu_s'] * 1000:.1f} ms CPU, "
          f"{cost['peak_bytes'] / 2**20:.1f} MB peak allocations")
    assert cost["cpu_s"] < MAX_WEB_CPU_S, cost
    assert cost["peak_bytes"] < MAX_WEB_BYTES, cost


def upload(data, name="photo.png"):
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


# --- The validator ----------------------------------------------------------------------


def test_the_scan_bomb_is_refused_from_its_bytes(scan_bomb):
    assert scan_bomb.count(b"\xff\xda") == 3000 and len(scan_bomb) < 500_000
    with web_cost() as cost, pytest.raises(ValidationError) as refused:
        validate_photo_upload(upload(scan_bomb, "bomb.jpg"))
    assert refused.value.code == "too_many_scans"
    assert refused.value.messages == [
        "The image is a progressive JPEG in more than 100 scans; photos may have at most "
        "100. Save it again as an ordinary JPEG."]
    assert_cheap(cost, "scan bomb")


def test_an_ordinary_progressive_jpeg_is_accepted():
    data = hostile_files.encode(Image.linear_gradient("L").convert("RGB"), "JPEG",
                                progressive=True)
    result = validate_photo_upload(upload(data, "p.jpg"))
    assert result.format == "JPEG" and 2 <= result.scans <= 12


def test_a_hundred_scans_are_accepted_and_a_hundred_and_one_are_not():
    assert validate_photo_upload(upload(hostile_files.scan_bomb_jpeg(64, 100))).scans == 100
    with pytest.raises(ValidationError) as refused:
        validate_photo_upload(upload(hostile_files.scan_bomb_jpeg(64, 101)))
    assert refused.value.code == "too_many_scans"


def test_a_png_bomb_is_refused_from_its_header():
    data = hostile_files.png_bomb(20_000)
    with web_cost() as cost, pytest.raises(ValidationError) as refused:
        validate_photo_upload(upload(data))
    assert refused.value.code == "too_many_pixels"
    assert_cheap(cost, "20000² PNG bomb")


@pytest.mark.parametrize("kind", ["rgba_png", "rgb16_png", "grey16_png", "big_png"])
def test_big_pngs_are_checked_without_decoding(kind, request):
    data = request.getfixturevalue(kind)
    with web_cost() as cost:
        result = validate_photo_upload(upload(data))
    assert (result.width, result.height) == ((2550,) * 2 if kind == "big_png" else (6300,) * 2)
    assert_cheap(cost, f"{kind} validator")


# --- The whole upload request -------------------------------------------------------------


@pytest.fixture
def api(db, settings):
    cache.clear()
    StyleFactory(slug="starry-night")
    client = APIClient()
    client.force_authenticate(UserFactory())
    # A first request imports and builds what every later one reuses; not an upload's cost.
    warm_up = hostile_files.encode(Image.new("RGB", (32, 32)), "PNG")
    with mock.patch("stylize.tasks.job_run.apply_async"):
        client.post("/api/v1/jobs/", {"image": upload(warm_up), "style": "starry-night"},
                    format="multipart")
    return client


@pytest.mark.parametrize("kind", ["rgba_png", "rgb16_png", "grey16_png", "scan_bomb", "big_png"])
def test_an_upload_request_costs_the_web_process_little(api, kind, request):
    data = request.getfixturevalue(kind)
    file = upload(data, "bomb.jpg" if kind == "scan_bomb" else "big.png")
    with mock.patch("stylize.tasks.job_run.apply_async"), web_cost() as cost:
        response = api.post("/api/v1/jobs/", {"image": file, "style": "starry-night"},
                            format="multipart")
    assert response.status_code == (400 if kind == "scan_bomb" else 201), response.content
    assert_cheap(cost, f"{kind} upload request")


# --- The worker ----------------------------------------------------------------------------

_MEASURE = """
import io, json, sys
from stylize.imaging import loading, pixels
from PIL import Image
data = open(sys.argv[1], "rb").read()
side = int(sys.argv[2])
with Image.open(io.BytesIO(data)) as image:
    full = image.size
    image.draft("RGB", pixels.fitted_size(image.size, side))
    estimate = loading.decode_cost_bytes(image, max_side=side, full_size=full)
def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM to the current RSS
before = rss("VmRSS")
shape = loading.load_photo(io.BytesIO(data), max_side=side).shape
print(json.dumps({"estimate": estimate, "peak": rss("VmHWM") - before, "shape": shape}))
"""


def worker_decode_peak(tmp_path, data: bytes, max_side: int) -> dict:
    """load_photo's peak RSS growth in a fresh process, and decode_cost_bytes' estimate."""
    path = tmp_path / "photo"
    path.write_bytes(data)
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path), str(max_side)],
                          cwd=BASE_DIR, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["rgba_png", "rgb16_png", "grey16_png"])
@pytest.mark.parametrize("max_side", [1024, 4096])
def test_the_worker_decodes_40_megapixels_within_its_estimate_and_ceiling(
    kind, max_side, request, tmp_path, settings
):
    measured = worker_decode_peak(tmp_path, request.getfixturevalue(kind), max_side)
    print(f"{kind} at {max_side}: peak {measured['peak'] / 2**20:.0f} MB, estimate "
          f"{measured['estimate'] / 2**20:.0f} MB")
    assert measured["shape"] == [max_side, max_side, 3]
    assert measured["peak"] <= measured["estimate"] <= settings.STYLIZE_DECODE_MAX_BYTES


@pytest.fixture
def tiny_style(use_local_backend, db):
    return StyleFactory(slug="tiny", model_name="tiny", live_version=1)


def stored_job(style, data: bytes, name="photo.png", **fields) -> StyleJob:
    """A queued job whose stored photo is ``data`` as it is (no upload check)."""
    return StyleJobFactory(style=style, input_image=ContentFile(data, name=name), **fields)


def test_a_16_bit_40_megapixel_png_paints_in_the_worker(tiny_style, grey16_png):
    job = stored_job(tiny_style, grey16_png, max_side=256)
    assert job_run(job_id=job.pk) is True
    job.refresh_from_db()
    assert job.status == StyleJob.Status.SUCCEEDED, job.error
    with Image.open(job.result_image) as result:
        assert result.size == (256, 256)


def test_a_photo_over_the_decode_ceiling_fails_its_job_before_decoding(
    tiny_style, rgb16_png, settings
):
    settings.STYLIZE_DECODE_MAX_BYTES = 64 * 2**20
    job = stored_job(tiny_style, rgb16_png)

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("decoded a photo over the ceiling")

    started = time.process_time()
    with mock.patch.object(ImageFile.ImageFile, "load", no_decoding):
        assert job_run(job_id=job.pk) is True
    assert time.process_time() - started < MAX_WEB_CPU_S
    job.refresh_from_db()
    assert job.status == StyleJob.Status.FAILED
    assert job.error.startswith(
        "Your photo is too large to paint: reading its 6300×6300 pixels would take about ")
    assert "a photo may take at most 64 MB" in job.error


def test_a_scan_bomb_that_got_stored_fails_its_job_cheaply(tiny_style, scan_bomb):
    """A file stored before the upload check (or around it) meets it again in the worker."""
    job = stored_job(tiny_style, scan_bomb, name="photo.jpg")
    started = time.process_time()
    assert job_run(job_id=job.pk) is True
    assert time.process_time() - started < MAX_WEB_CPU_S
    job.refresh_from_db()
    assert job.status == StyleJob.Status.FAILED
    assert job.error.startswith("Your photo could not be read: The image is a progressive "
                                "JPEG in more than 100 scans")


def broken_pixels_png() -> bytes:
    """Every chunk well-formed (checksums right), the compressed pixels not zlib data."""
    import zlib

    data = bytearray(hostile_files.encode(Image.new("RGB", (64, 64), "red"), "PNG"))
    idat = data.index(b"IDAT")
    length = int.from_bytes(data[idat - 4:idat], "big")
    data[idat + 4:idat + 4 + length] = b"\x00not zlib" + b"\xff" * (length - 9)
    crc = zlib.crc32(bytes(data[idat:idat + 4 + length]))
    data[idat + 4 + length:idat + 8 + length] = crc.to_bytes(4, "big")
    return bytes(data)


def test_pixels_that_do_not_decode_pass_the_upload_and_fail_the_job_readably(tiny_style):
    data = broken_pixels_png()
    validate_photo_upload(upload(data))  # nothing cheap and certain is wrong with it
    job = stored_job(tiny_style, data)
    assert job_run(job_id=job.pk) is True
    job.refresh_from_db()
    assert job.status == StyleJob.Status.FAILED
    assert job.error == "Your photo could not be read as an image."


def test_load_photo_turns_every_decode_error_into_an_unreadable_photo():
    with pytest.raises(loading.UnreadablePhoto):
        loading.load_photo(io.BytesIO(broken_pixels_png()), max_side=100)
    with pytest.raises(loading.UnreadablePhoto):
        loading.load_photo(io.BytesIO(b"not an image at all"), max_side=100)
