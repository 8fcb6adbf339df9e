"""Mixing the styles of one bank and choosing the stroke: the style weights, how
``photo_stylize`` and ``job_run`` hand them to the backend, and the one check of a
job's mix (``jobs.job_mix_clean``)."""

import io

import numpy as np
import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from stylize.backends.base import PermanentBackendError
from stylize.models import DEFAULT_STROKE, Style, StyleJob
from stylize.services import jobs, stylizing
from stylize.services.stylizing import job_run, photo_stylize
from stylize.strokes import STROKE_WORKING_SIDES
from tests.factories import BankStyleFactory, StyleFactory, StyleJobFactory, UserFactory
from tests.helpers import gradient
from tests.model_fixtures import TINY_BANK_NAME, TINY_BANK_SLOTS

# --------------------------------------------------------------------------- photo_stylize


def bank_style(index=1, slots=3, **kwargs):
    return Style(name=f"Slot {index}", slug=f"slot-{index}", model_name="bank",
                 bank_index=index, bank_slots=slots, live_version=4, **kwargs)


def test_a_bank_style_gets_its_weights_and_no_pixel_blend(recording_backend):
    photo = gradient()
    result = photo_stylize(photo=photo, style=bank_style(2), strength=0.5,
                           blend_with=bank_style(1), blend=0.25)
    [call] = recording_backend.calls
    assert (call["model_name"], call["version"]) == ("bank", 4)
    np.testing.assert_allclose(call["style_weights"], [[0.5, 0.125, 0.375]], rtol=1e-6)
    assert call["style_weights"].dtype == np.float32
    # Strength was the identity slot's share in the network: the output is left as it is.
    np.testing.assert_array_equal(result, 255 - photo)


def test_a_lone_style_gets_its_strength_in_the_network_too(recording_backend):
    """A style trained on its own is a bank of the identity and itself: its strength is
    the identity slot's share, and nothing is blended on the pixels afterwards."""
    photo = gradient()
    style = Style(name="Lone", slug="lone", model_name="lone", live_version=2, bank_index=1,
                  bank_slots=2)
    result = photo_stylize(photo=photo, style=style, strength=0.5)
    [call] = recording_backend.calls
    np.testing.assert_allclose(call["style_weights"], [[0.5, 0.5]], rtol=1e-6)
    np.testing.assert_array_equal(result, 255 - photo)


def test_colours_are_still_preserved_for_a_bank_style(recording_backend):
    from stylize.imaging.postprocessing import preserve_colors

    photo = gradient()
    kept = photo_stylize(photo=photo, style=bank_style(1), strength=0.5, preserve_colors=True)
    assert not np.array_equal(kept, 255 - photo)
    # The photo's colours on the network's output; the strength is not blended again.
    np.testing.assert_array_equal(kept, preserve_colors(photo, 255 - photo))


def test_every_image_of_a_batch_gets_the_weights_row(recording_backend, monkeypatch):
    def three_at_once(photo, run, *, working_side, tile, on_pass=None):
        out = run(np.stack([photo] * 3))
        return out[0]

    monkeypatch.setattr(stylizing, "stylize_at_working_size", three_at_once)
    photo_stylize(photo=gradient(), style=bank_style(2, slots=4), strength=0.9)
    [call] = recording_backend.calls
    assert call["shape"][0] == 3
    np.testing.assert_allclose(call["style_weights"], [[0.1, 0, 0.9, 0]] * 3, rtol=1e-6)


@pytest.mark.parametrize("stroke", ["fine", "medium", "bold"])
def test_the_stroke_sets_the_size_the_network_paints_at(recording_backend, stroke):
    photo = gradient(600, 900)
    result = photo_stylize(photo=photo, style=bank_style(1), stroke=stroke)
    assert result.shape == photo.shape
    longest = max(max(call["shape"][1:3]) for call in recording_backend.calls)
    assert longest == min(900, STROKE_WORKING_SIDES[stroke])


@pytest.mark.parametrize(
    "style, kwargs, message",
    [
        (Style(name="Own", slug="own", model_name="own", live_version=2, bank_index=1,
               bank_slots=2), {"blend_with": bank_style(1)}, "cannot be mixed"),
        (bank_style(1), {"blend_with": Style(name="Own", slug="own", model_name="own",
                                             live_version=2, bank_index=1, bank_slots=2),
                         "blend": 0.5}, "cannot be mixed"),
        (bank_style(1), {"stroke": "huge"}, "Brush strokes"),
        (bank_style(1), {"strength": 1.5}, "cannot be painted"),
        (bank_style(1, slots=None), {}, "not been learnt"),
    ],
)
def test_impossible_settings_are_a_permanent_backend_error(recording_backend, style, kwargs,
                                                          message):
    with pytest.raises(PermanentBackendError, match=message):
        photo_stylize(photo=gradient(), style=style, **kwargs)
    assert recording_backend.calls == []


@pytest.mark.django_db
def test_job_run_passes_the_jobs_mix_and_stroke(recording_backend):
    first = BankStyleFactory(bank_index=1, bank_slots=3)
    second = BankStyleFactory(bank_index=2, bank_slots=3)
    job = StyleJobFactory(style=first, blend_with=second, blend=0.4, strength=0.5, stroke="bold",
                          max_side=1024)
    job.input_image.save("big.png", _png(gradient(600, 800)), save=True)

    assert job_run(job_id=job.pk) is True

    job.refresh_from_db()
    assert job.status == StyleJob.Status.SUCCEEDED, job.error
    np.testing.assert_allclose(recording_backend.calls[0]["style_weights"], [[0.5, 0.3, 0.2]],
                               rtol=1e-6)
    assert max(max(call["shape"][1:3]) for call in recording_backend.calls) == 512


def _png(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return ContentFile(buffer.getvalue())


# --------------------------------------------------------------------------- the one check


@pytest.mark.django_db
def test_a_second_style_alone_is_an_even_mix_and_none_is_no_mix():
    first, second = BankStyleFactory(bank_index=1), BankStyleFactory(bank_index=2)
    mix = jobs.job_mix_clean(style=first, blend_with=second.slug)
    assert (mix.blend_with, mix.blend, mix.stroke) == (second, 0.5, DEFAULT_STROKE)
    assert jobs.job_mix_clean(style=first, blend_with=second, blend=0.2).blend == 0.2
    mix = jobs.job_mix_clean(style=first)
    assert (mix.blend_with, mix.blend) == (None, 0.0)
    assert jobs.job_mix_clean(style=first, blend=0, stroke="fine").stroke == "fine"


@pytest.mark.django_db
def test_the_check_names_the_styles_that_can_be_mixed():
    first = BankStyleFactory(name="Alpha", slug="alpha", bank_index=1)
    BankStyleFactory(name="Beta", slug="beta", bank_index=2)
    BankStyleFactory(name="Hidden", slug="hidden", bank_index=3, bank_slots=4,
                     is_public=False)
    other = BankStyleFactory(name="Elsewhere", model_name="other_bank", bank_index=1)
    with pytest.raises(ValidationError) as refused:
        jobs.job_mix_clean(style=first, blend_with=other.slug)
    [message] = refused.value.message_dict["blend_with"]
    assert message == ("Alpha and Elsewhere cannot be mixed: only styles that share one "
                       "network can. Alpha can be mixed with: Beta (beta).")


@pytest.mark.django_db
def test_job_create_refuses_what_the_check_refuses(photo_upload):
    lone = StyleFactory()  # slot 1 of a network of its own
    slot = BankStyleFactory(bank_index=1)
    with pytest.raises(ValidationError) as refused:
        jobs.job_create(owner=UserFactory(), style=lone, input_image=photo_upload,
                            blend_with=slot)
    assert "cannot be mixed" in refused.value.message_dict["blend_with"][0]
    assert not StyleJob.objects.exists()


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def tiny_bank_styles(use_local_backend):
    return [
        BankStyleFactory(name=f"Tiny {index}", slug=f"tiny-{index}", model_name=TINY_BANK_NAME,
                         bank_index=index, bank_slots=TINY_BANK_SLOTS, live_version=1)
        for index in (1, 2)
    ]


def _api_job(client, **data):
    """Create a job through the API, run it as the worker would, and fetch its result."""
    upload = SimpleUploadedFile("photo.png", _png(gradient(120, 160)).read(), "image/png")
    response = client.post("/api/v1/jobs/", {"image": upload, **data}, format="multipart")
    assert response.status_code == 201, response.json()
    job_run(job_id=response.json()["id"])
    body = client.get(f"/api/v1/jobs/{response.json()['id']}/").json()
    assert body["status"] == "succeeded", body["error"]
    result = client.get(f"/api/v1/jobs/{body['id']}/result/")
    return body, np.asarray(Image.open(io.BytesIO(b"".join(result.streaming_content))),
                            dtype=np.float64)


@pytest.mark.django_db
def test_a_blended_api_job_goes_through_the_real_bank(tiny_bank_styles, monkeypatch):
    cache.clear()  # the job-create throttle
    monkeypatch.setattr("stylize.tasks.job_run.apply_async", lambda *a, **k: None)
    client = APIClient()
    client.force_authenticate(UserFactory())

    body, mixed = _api_job(client, style="tiny-1", blend_with="tiny-2", blend="0.5")
    assert (body["style"], body["blend_with"], body["blend"]) == ("tiny-1", "tiny-2", 0.5)
    _, first = _api_job(client, style="tiny-1")
    _, second = _api_job(client, style="tiny-2")
    _, no_share = _api_job(client, style="tiny-1", blend_with="tiny-2", blend="0")

    # Measured: 43 levels between the two slots, 24 and 27 from the mix to each.
    assert np.abs(first - second).mean() > 10  # the two slots paint differently
    assert np.abs(mixed - first).mean() > 5
    assert np.abs(mixed - second).mean() > 5
    np.testing.assert_array_equal(no_share, first)  # a 0 share is the first style alone
