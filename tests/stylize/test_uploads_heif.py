"""Phone photos: HEIC/HEIF (iPhones) and AVIF uploads, through the one upload validator.

Test files are encoded here with pillow-heif (HEIF) and Pillow (AVIF); the hostile ones
are those files with a box edited, cut or renamed. Each hostile file gets a 400 with a
readable message and no job; each good one runs a job end to end, and the photo the job
page shows is then an upright JPEG with no metadata, which every browser can show.
"""

import io
import struct
from unittest import mock

import pillow_heif
import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image, ImageFile
from rest_framework.test import APIClient

from stylize import image_headers
from stylize.image_headers import photo_inspect, photo_strip_metadata
from stylize.imaging.loading import AVIF_SUPPORTED, PhotoTooLarge, UnreadablePhoto, load_photo
from stylize.models import StyleJob
from stylize.services.stylizing import job_run, stored_photo_load
from stylize.validators import validate_photo_upload
from tests.factories import StyleFactory, StyleJobFactory, UserFactory

pytestmark = pytest.mark.usefixtures("empty_cache")
needs_avif = pytest.mark.skipif(not AVIF_SUPPORTED, reason="this Pillow reads no AVIF")

ORIENTATION, ARTIST, MAKE, GPS_IFD = 0x0112, 0x013B, 0x010F, 0x8825
PRIVATE = (b"Jane Q. Photographer", b"Canon", b"Hauptstr")
XMP = (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
       b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
       b'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description>at home, Hauptstr. 5'
       b'</dc:description></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')


# --- Files -----------------------------------------------------------------------------------


def picture(size=(80, 40)) -> Image.Image:
    """Stored ``size``: its left half red, its right half blue."""
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    return image


def private_exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[ARTIST], exif[MAKE] = "Jane Q. Photographer", "Canon"
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 1.0)})
    return exif.tobytes()


def encoded(fmt: str, size=(80, 40), orientation=1, **params) -> bytes:
    """``picture(size)`` as a phone writes it: with its EXIF (where, who, what camera, and
    the orientation, which the encoder turns into 'irot'/'imir') and XMP."""
    buffer = io.BytesIO()
    picture(size).save(buffer, format=fmt, quality=90, exif=private_exif(orientation), xmp=XMP,
                       **params)
    return buffer.getvalue()


def heic(size=(80, 40), orientation=1, **params) -> bytes:
    return encoded("HEIF", size, orientation, **params)


def avif(size=(80, 40), orientation=1) -> bytes:
    return encoded("AVIF", size, orientation)


def boxes(data: bytes, start=0, end=None):
    """{type: (box start, body start, box end)} of the boxes in data[start:end]."""
    found, end = {}, len(data) if end is None else end
    while start < end:
        size, kind = struct.unpack(">I4s", data[start:start + 8])
        found.setdefault(kind, (start, start + 8, start + size))
        start += size
    return found


def property_boxes(data: bytes, kind: bytes) -> list[int]:
    """Where each ``kind`` property's body starts."""
    _, meta, meta_end = boxes(data)[b"meta"]
    _, iprp, iprp_end = boxes(data, meta + 4, meta_end)[b"iprp"]
    _, at, ipco_end = boxes(data, iprp, iprp_end)[b"ipco"]
    found = []
    while at < ipco_end:
        size, found_kind = struct.unpack(">I4s", data[at:at + 8])
        if found_kind == kind:
            found.append(at + 8)
        at += size
    return found


def property_box(data: bytes, kind: bytes) -> tuple[int, int]:
    """Where the first ``kind`` property's body is: (body start, box end)."""
    body = property_boxes(data, kind)[0]
    return body, body - 8 + int.from_bytes(data[body - 8:body - 4], "big")


def with_ispe(data: bytes, width: int, height: int) -> bytes:
    """The file with its (first) 'ispe' saying ``width`` × ``height``."""
    body, _ = property_box(data, b"ispe")
    return data[:body + 4] + struct.pack(">II", width, height) + data[body + 12:]


def upload(data: bytes, name="IMG_0001.HEIC", content_type="image/heic"):
    return SimpleUploadedFile(name, data, content_type=content_type)


def refusal(data: bytes, name="IMG_0001.HEIC") -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        validate_photo_upload(upload(data, name))
    return caught.value


# --- The validator ---------------------------------------------------------------------------


def test_a_heic_photo_passes_the_validator_by_its_boxes():
    result = validate_photo_upload(upload(heic((80, 40))))
    assert (result.format, result.content_type, result.extension) == ("HEIF", "image/heic", "heic")
    assert (result.width, result.height, result.orientation) == (80, 40, 1)
    assert result.filename == "IMG_0001.heic" and result.mode == "RGB"


@pytest.mark.parametrize("fmt", ["HEIF", pytest.param("AVIF", marks=needs_avif)])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_orientation_is_read_from_irot_and_imir(fmt, orientation):
    """The encoder turned the EXIF orientation into 'irot'/'imir'; the walk reads it back,
    and the upright size is what a decoder that applies it shows."""
    data = encoded(fmt, (80, 40), orientation)
    header = photo_inspect(data)
    assert (header.format, header.width, header.height) == (fmt, 80, 40)
    assert header.orientation == orientation
    result = validate_photo_upload(upload(data))
    assert (result.width, result.height) == ((40, 80) if orientation >= 5 else (80, 40))


def test_an_iphone_like_grid_of_tiles_is_one_photo():
    data = heic((700, 500), tile_size=256)  # 3 × 2 tiles of 256², as iPhones write 512²
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.size == (700, 500)
    result = validate_photo_upload(upload(data))
    assert (result.format, result.width, result.height) == ("HEIF", 700, 500)


def test_a_padded_picture_is_its_clean_aperture():
    """The HEVC encoder pads 80×40 to 80×64 and says so with 'clap', as libheif shows it."""
    data = heic((80, 40))
    body, _ = property_box(data, b"ispe")
    assert struct.unpack(">II", data[body + 4:body + 12]) != (80, 40)
    assert (photo_inspect(data).width, photo_inspect(data).height) == (80, 40)


def test_the_stored_heic_keeps_its_picture_and_no_private_metadata():
    data = heic((80, 40), orientation=6)
    assert all(secret in data for secret in PRIVATE)
    stored, image_format = photo_strip_metadata(data)
    assert image_format == "HEIF"
    assert not any(secret in stored for secret in PRIVATE)
    with Image.open(io.BytesIO(stored)) as kept, Image.open(io.BytesIO(data)) as sent:
        assert not kept.getexif() and not kept.info.get("xmp", b"").strip()
        assert kept.size == sent.size == (40, 80)  # the 'irot' is kept, the EXIF is not
        assert kept.tobytes() == sent.tobytes()  # the same compressed picture


def test_what_follows_the_last_box_is_not_stored():
    data = heic()
    stored, _ = photo_strip_metadata(data + b"<html><script>alert(1)</script></html>")
    assert stored == photo_strip_metadata(data)[0] and b"<html>" not in stored


def test_the_web_process_decodes_no_heic_pixel():
    def no_decoding(self, *args, **kwargs):
        raise AssertionError("the upload decoded pixels")

    data = heic(orientation=6, tile_size=64)

    with mock.patch.object(ImageFile.ImageFile, "load", no_decoding), \
            mock.patch.object(Image.Image, "load", no_decoding), \
            mock.patch.object(pillow_heif.as_plugin._LibHeifImageFile, "load", no_decoding):
        assert validate_photo_upload(upload(data)).format == "HEIF"


def test_the_worker_decodes_a_heic_under_the_memory_ceiling():
    with pytest.raises(PhotoTooLarge, match="too large to paint"):
        stored_photo_load(heic((2000, 1500)), max_side=512, max_decode_bytes=40 * 2**20)


# --- Hostile HEIC files ----------------------------------------------------------------------


def truncated_in_its_pixels() -> bytes:
    data = heic((300, 200))
    return data[:len(data) - 200]


def truncated_in_its_boxes() -> bytes:
    data = heic()
    _, meta, _ = boxes(data)[b"meta"]
    return data[:meta + 100]


def wrong_brand() -> bytes:
    data = bytearray(heic())
    _, body, end = boxes(bytes(data))[b"ftyp"]
    data[body:end] = b"mp42\x00\x00\x00\x00isommp42" + b"mp42" * ((end - body - 16) // 4)
    return bytes(data)


def no_known_brand() -> bytes:
    data = bytearray(heic())
    _, body, end = boxes(bytes(data))[b"ftyp"]
    data[body:end] = b"zzzz" * ((end - body) // 4)
    return bytes(data)


def huge_declared() -> bytes:
    return with_ispe(heic(), 100_000, 100_000)


def huge_tiles() -> bytes:
    """A 700×500 grid whose first tile says it is 10,000 × 10,000: the decoder would
    decode what the tiles say."""
    data = heic((700, 500), tile_size=256)
    [tile] = [body for body in property_boxes(data, b"ispe")
              if struct.unpack(">II", data[body + 4:body + 12]) == (256, 256)]
    return data[:tile + 4] + struct.pack(">II", 10_000, 10_000) + data[tile + 12:]


def coded_as(coding: bytes) -> bytes:
    return heic().replace(b"hvc1", coding)  # the item type, in 'iinf'; the 'hvcC' stays


def an_image_sequence() -> bytes:
    data = heic()
    moov = struct.pack(">I4s", 16, b"moov") + b"\x00" * 8
    return data + moov


def bigger_than_declared() -> bytes:
    """A 400×300 picture whose 'ispe' says 64×64: libheif decodes it, then raises
    (its security limits are sized by the 'ispe')."""
    return with_ispe(heic((400, 300)), 64, 64)


def avif_bigger_than_declared() -> bytes:
    """A 1500² AV1 picture whose 'ispe' says 100²: libavif decodes all of it."""
    return with_ispe(avif((1500, 1500)), 100, 100)


def grid_bigger_than_declared() -> bytes:
    """A 700×500 grid (its canvas, in its descriptor) whose 'ispe' says 300×200."""
    data = heic((700, 500), tile_size=256)
    [grid] = [body for body in property_boxes(data, b"ispe")
              if struct.unpack(">II", data[body + 4:body + 12]) == (700, 500)]
    return data[:grid + 4] + struct.pack(">II", 300, 200) + data[grid + 12:]


@pytest.mark.parametrize("make, code, message", [
    (truncated_in_its_pixels, "corrupt", "The image is damaged or incomplete"),
    (bigger_than_declared, "corrupt", "The image is damaged or incomplete"),
    pytest.param(avif_bigger_than_declared, "corrupt", "The image is damaged or incomplete",
                 marks=needs_avif),
    (grid_bigger_than_declared, "corrupt", "The image is damaged or incomplete"),
    (truncated_in_its_boxes, "corrupt", "The image is damaged or incomplete"),
    (wrong_brand, "unsupported_format", "A video is not a supported photo."),
    (no_known_brand, "unsupported_format", "This file is not a supported photo."),
    (huge_declared, "too_many_pixels", "(100000×100000 pixels, 10000.0 megapixels)"),
    (huge_tiles, "too_many_pixels", "its pictures add up to 600.0 megapixels"),
    (lambda: coded_as(b"jpeg"), "unsupported_format", "A HEIF image in jpeg is not"),
    (an_image_sequence, "animated", "Animated images are not supported."),
    (lambda: with_ispe(heic(), 320, 8), "too_small", "each side must be at least 16"),
])
def test_hostile_heic_files_are_refused_readably(make, code, message):
    error = refusal(make())
    assert error.code == code
    assert message in error.messages[0], error.messages


def test_a_heic_cut_anywhere_is_refused_and_never_an_error():
    data = heic((120, 90))
    for end in range(8, len(data), max(1, len(data) // 150)):
        with pytest.raises(ValidationError):
            validate_photo_upload(upload(data[:end]))


@pytest.mark.django_db
@pytest.mark.parametrize("make", [bigger_than_declared, grid_bigger_than_declared,
                                  pytest.param(avif_bigger_than_declared, marks=needs_avif)])
def test_a_stored_picture_bigger_than_declared_fails_its_job_as_unreadable(
        make, recording_backend):
    """Stored before the upload's walk refused it (or changed since): the worker's walk
    refuses it too, and the owner reads that the photo could not be read, not that
    something went wrong on our side."""
    style = StyleFactory(model_name="tiny", live_version=1)
    job = StyleJobFactory(style=style, input_image=ContentFile(make(), name="IMG_0001.heic"))
    assert job_run(job_id=job.pk) is True
    job.refresh_from_db()
    assert job.status == StyleJob.Status.FAILED
    assert job.error == "Your photo could not be read as an image."
    assert not recording_backend.calls


@needs_avif
def test_the_decode_ceiling_binds_on_an_avifs_real_size():
    """100² fits under the ceiling, 1500² (about 55 MB to decode and write anew) does
    not: the lying file is refused before anything opens it, as the honest one is."""
    ceiling = 24 * 2**20
    with mock.patch.object(Image, "open", side_effect=AssertionError("decoded")):
        with pytest.raises(UnreadablePhoto):
            stored_photo_load(avif_bigger_than_declared(), max_side=512,
                              max_decode_bytes=ceiling)
    with pytest.raises(PhotoTooLarge):
        stored_photo_load(avif((1500, 1500)), max_side=512, max_decode_bytes=ceiling)


def test_libheifs_own_refusals_are_an_unreadable_photo():
    """What libheif raises past its own limits (a RuntimeError from pillow-heif) is a
    photo that cannot be read, wherever the worker decodes."""
    with pytest.raises(UnreadablePhoto):
        load_photo(io.BytesIO(bigger_than_declared()), max_side=512)


@pytest.mark.parametrize("make", [
    lambda: heic((333, 217)),  # coded 336×224: HEVC pads to whole coding blocks
    lambda: heic((130, 97), chroma=444),
    lambda: heic((700, 500), tile_size=256),
    pytest.param(lambda: avif((333, 217)), marks=needs_avif),
])
def test_good_files_pass_the_real_size_check(make):
    assert validate_photo_upload(upload(make())).format in ("HEIF", "AVIF")


def test_a_jpeg_named_heic_is_the_jpeg_it_is():
    """Content decides, not the name (as for a PNG named .jpg): accepted, stored as JPEG."""
    buffer = io.BytesIO()
    picture().save(buffer, format="JPEG")
    result = validate_photo_upload(upload(buffer.getvalue(), "IMG_0002.HEIC"))
    assert (result.format, result.filename) == ("JPEG", "IMG_0002.jpg")


# --- End to end: the page, the API, the worker --------------------------------------------


@pytest.fixture
def owner(client, db):
    cache.clear()
    user = UserFactory(email="ada@example.com")
    client.force_login(user)
    return user


@pytest.fixture
def style(db):
    return StyleFactory(name="Starry Night", slug="starry-night", model_name="tiny",
                        live_version=1)


def assert_upright_jpeg_without_metadata(data: bytes, size=(40, 80)):
    """The photo as the worker leaves it: what any browser shows, stood upright (the
    stored red left half of ``picture`` on top), nothing private left."""
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.size == size
        assert not image.getexif() and "xmp" not in image.info
        red, _, blue = image.convert("RGB").getpixel((size[0] // 2, 5))
        assert red > 200 and blue < 60
    assert not any(secret in data for secret in PRIVATE)


def run_and_check(client, job: StyleJob, recording_backend, size=(40, 80)):
    assert job_run(job_id=job.pk) is True
    job.refresh_from_db()
    assert job.status == StyleJob.Status.SUCCEEDED, job.error
    assert recording_backend.calls  # painted
    assert job.input_image.name.endswith(".jpg")
    photo = client.get(reverse("stylize:job_photo", args=[job.pk]))
    assert photo.status_code == 200 and photo["Content-Type"] == "image/jpeg"
    assert_upright_jpeg_without_metadata(b"".join(photo.streaming_content), size)
    with job.result_image.open("rb") as result, Image.open(result) as painted:
        assert painted.size == size
        cyan = painted.convert("RGB").getpixel((size[0] // 2, 5))  # the negative of red
        assert cyan[0] < 60 and cyan[2] > 200


def test_an_iphone_heic_uploads_through_the_page_and_its_job_succeeds(
        client, owner, style, queue, recording_backend):
    response = client.post(reverse("stylize:upload"), {
        "image": upload(heic((80, 40), orientation=6)), "style": style.slug,
        "strength": "1", "max_side": "512",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    job = StyleJob.objects.get()
    assert job.input_filename == "IMG_0001.heic" and job.input_image.name.endswith(".heic")
    with job.input_image.open("rb") as stored:  # as uploaded, less its metadata
        assert not any(secret in stored.read() for secret in PRIVATE)
    run_and_check(client, job, recording_backend)


def test_a_heic_uploads_through_the_api_and_its_job_succeeds(
        client, owner, style, queue, recording_backend):
    api = APIClient()
    api.force_authenticate(owner)
    response = api.post("/api/v1/jobs/", {
        "image": upload(heic((80, 40), orientation=6, tile_size=64)), "style": style.slug,
    }, format="multipart")
    assert response.status_code == 201, response.content
    run_and_check(client, StyleJob.objects.get(), recording_backend)


@needs_avif
def test_an_avif_uploads_and_its_job_succeeds_upright(
        client, owner, style, queue, recording_backend):
    api = APIClient()
    api.force_authenticate(owner)
    response = api.post("/api/v1/jobs/", {
        "image": upload(avif((80, 40), orientation=6), "photo.avif", "image/avif"),
        "style": style.slug,
    }, format="multipart")
    assert response.status_code == 201, response.content
    job = StyleJob.objects.get()
    assert job.input_image.name.endswith(".avif")
    run_and_check(client, job, recording_backend)


def test_a_jpeg_named_heic_runs_as_a_jpeg(client, owner, style, queue, recording_backend):
    buffer = io.BytesIO()
    Image.new("RGB", (40, 80), (255, 0, 0)).save(buffer, format="JPEG")
    response = client.post(reverse("stylize:upload"), {
        "image": upload(buffer.getvalue(), "IMG_0003.HEIC"), "style": style.slug,
        "strength": "1", "max_side": "512",
    })
    assert response.status_code == 302
    job = StyleJob.objects.get()
    assert job.input_image.name.endswith(".jpg")
    assert job_run(job_id=job.pk) is True
    job.refresh_from_db()
    assert job.status == StyleJob.Status.SUCCEEDED, job.error


@pytest.mark.parametrize("make", [truncated_in_its_pixels, wrong_brand, huge_declared,
                                  huge_tiles])
def test_hostile_heic_files_get_a_400_and_no_job(client, owner, style, queue, make):
    api = APIClient()
    api.force_authenticate(owner)
    response = api.post("/api/v1/jobs/", {"image": upload(make()), "style": style.slug},
                        format="multipart")
    assert response.status_code == 400, response.content
    message = " ".join(response.json()["image"])
    assert message == str(refusal(make()).messages[0])  # the validator's readable message
    page = client.post(reverse("stylize:upload"), {
        "image": upload(make()), "style": style.slug, "strength": "1", "max_side": "512",
    })
    assert page.status_code == 400
    assert not StyleJob.objects.exists()


def test_the_upload_page_offers_heic(client, owner, style):
    page = client.get(reverse("stylize:upload")).content.decode()
    accept = page.split('accept="', 1)[1].split('"', 1)[0].split(",")
    assert {"image/heic", "image/heif", ".heic", ".heif", "image/jpeg"} <= set(accept)
    assert "HEIC" in page


def test_the_messages_name_heic():
    error = refusal(b"GIF89a" + b"\x00" * 40)
    assert "Upload a JPEG, PNG, WebP, HEIC" in error.messages[0]
    assert image_headers.describe(wrong_brand()[:32]) == "A video"
