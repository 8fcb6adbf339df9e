"""Staff see training (issue 16, item 7): the progress recorder of every training run
(``stylize.services.training_progress.TrainingRecorder``), the Training section of a style's
admin page, held-out numbers in the style list, and ``stylize.loss_curves``.

The recorder is driven by hand-made ``TrainProgress`` steps on a fake clock (its
throttle and history), through each front end with ``ml.train.train`` stopped after a
few steps (the command, the Celery task, a bank), and once through a real tiny run
with random VGG16 weights (marked slow).
"""

import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.db.models.fields.files import FieldFile
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone
from django.views.static import serve
from PIL import Image

from ml.callbacks import TrainProgress
from ml.checkpoints import TrainingDiverged
from stylize.loss_curves import loss_curves_svg
from stylize.models import Style
from stylize.services import training, training_progress
from stylize.services.training_progress import HISTORY_POINTS, TrainingRecorder
from tests.factories import BankStyleFactory, StyleFactory, UserFactory
from tests.helpers import admin_log_in, needs_chromium, open_browser, png_bytes

SVG = "{http://www.w3.org/2000/svg}"
TERMS = ("content", "style", "tv", "total")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def losses(step):
    return {"content": 1e5 / step, "style": 50.0 + step, "tv": 3.0, "total": 1e5 / step + 53}


def progress(step, steps, seconds=None):
    return TrainProgress(step, steps, 2.0 * step if seconds is None else seconds, losses(step))


class Config:
    """What the recorder reads of a ``TrainConfig``."""

    def __init__(self, out_dir, steps, sample_every=1000, max_seconds=None):
        self.out_dir, self.steps = str(out_dir), steps
        self.sample_every, self.max_seconds = sample_every, max_seconds


def write_sample(out_dir: Path, step: int, color) -> bytes:
    data = png_bytes(size=(16, 32), color=color)
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    (out_dir / "samples" / f"step-{step:08d}.png").write_bytes(data)
    return data


def stored(field_file) -> bytes:
    with field_file.open("rb") as f:
        return f.read()


def fetch_media(url: str):
    """What the media route serves for ``url`` (``static()`` in development, Caddy's
    ``/media/`` in production, both from MEDIA_ROOT)."""
    assert url.startswith(django_settings.MEDIA_URL), url
    path = url[len(django_settings.MEDIA_URL):]
    return serve(RequestFactory().get(url), path, document_root=django_settings.MEDIA_ROOT)


def curves(html: str):
    """The loss-curves SVG of an admin page, parsed."""
    start = html.index('<svg xmlns="http://www.w3.org/2000/svg" class="loss-curves"')
    return ET.fromstring(html[start:html.index("</svg>", start) + 6])


INLINE = [re.compile(r"<script\b(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I),
          re.compile(r"\sstyle\s*=", re.I), re.compile(r"\son[a-z]+\s*=", re.I),
          re.compile(r"<style\b", re.I), re.compile(r"javascript:", re.I)]


def assert_nothing_inline(response):
    """Nothing the Content-Security-Policy would block (as tests/stylize/test_security.py)."""
    assert response.status_code == 200
    assert "style-src 'self'" in response["Content-Security-Policy"]
    html = response.content.decode()
    for pattern in INLINE:
        assert not pattern.search(html), pattern.search(html).group(0)


# --------------------------------------------------------------------------- loss_curves_svg


def history(n=50):
    return [[step, losses(step)] for step in range(1, n + 1)]


def test_the_svg_draws_one_polyline_per_term_with_axes_legend_and_a_title():
    svg = loss_curves_svg(history(), title="Loss per step")
    root = ET.fromstring(svg)  # well-formed XML
    lines = root.findall(f"{SVG}polyline")
    assert [line.get("data-term") for line in lines] == list(TERMS)
    assert all(len(line.get("points").split()) == 50 for line in lines)
    assert len({line.get("stroke") for line in lines}) == 4
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert set(TERMS) <= set(texts)  # the legend
    assert "step" in texts and "Loss per step" in texts
    assert root.get("role") == "img" and root.find(f"{SVG}title").text == "Loss per step"
    assert "logarithmic" in root.find(f"{SVG}desc").text  # 1e5 down to 3
    assert {"1", "10", "100", "1000", "10k", "100k"} <= set(texts)  # powers of ten
    assert "style=" not in svg and "<script" not in svg


def test_a_narrow_range_gets_a_linear_axis_and_every_point_stays_inside_the_plot():
    svg = loss_curves_svg([[s, {"total": 10 + s / 10}] for s in range(0, 101, 10)])
    root = ET.fromstring(svg)
    assert "linear" in root.find(f"{SVG}desc").text
    frame = next(r for r in root.iter(f"{SVG}rect") if r.get("fill") == "none")
    top, height = float(frame.get("y")), float(frame.get("height"))
    left, width = float(frame.get("x")), float(frame.get("width"))
    [line] = root.findall(f"{SVG}polyline")
    for point in line.get("points").split():
        x, y = map(float, point.split(","))
        assert left - 0.1 <= x <= left + width + 0.1 and top - 0.1 <= y <= top + height + 0.1


def test_a_hostile_term_name_and_title_are_escaped():
    hostile = '</text></svg><script>alert(1)</script><img src=x onerror="alert(2)">'
    svg = loss_curves_svg([[1, {hostile: 2.0}], [2, {hostile: 1.0}]], title='"><b onload=x>')
    root = ET.fromstring(svg)  # still one well-formed SVG
    assert root.tag == f"{SVG}svg"
    assert "<script" not in svg and "<img" not in svg and "<b " not in svg
    assert not re.search(r"\son[a-z]+\s*=", svg)  # nothing that reads as a handler
    [line] = root.findall(f"{SVG}polyline")
    assert line.get("data-term") == hostile  # the name survives, as text
    assert hostile in [t.text for t in root.iter(f"{SVG}text")]


def test_an_empty_history_draws_nothing():
    assert loss_curves_svg([]) == ""
    assert loss_curves_svg(None) == ""
    assert loss_curves_svg([[1, {"total": float("nan")}], ["x", {"total": 1.0}], [2, "junk"]]) == ""


def test_a_single_point_is_a_dot_on_a_line_with_finite_coordinates():
    svg = loss_curves_svg([[7, {"total": 5.0}]])
    root = ET.fromstring(svg)
    [line] = root.findall(f"{SVG}polyline")
    [dot] = root.findall(f"{SVG}circle")
    assert not re.search(r"\b(nan|inf)\b", svg, re.I)
    x, y = map(float, line.get("points").split(","))
    assert (x, y) == (float(dot.get("cx")), float(dot.get("cy")))


def test_points_that_cannot_be_drawn_are_left_out():
    svg = loss_curves_svg([[1, {"total": 4.0, "tv": None}], [2, {"total": float("inf")}],
                           [3, {"total": 2.0, "tv": True}]])
    [line] = ET.fromstring(svg).findall(f"{SVG}polyline")
    assert line.get("data-term") == "total" and len(line.get("points").split()) == 2


# --------------------------------------------------------------------------- the recorder


@pytest.mark.django_db
def test_the_recorder_writes_progress_throttled_and_always_the_first_and_last_step(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(training_progress, "PROGRESS_SAVE_SECONDS", 5.0)
    style = StyleFactory()
    clock, seen = Clock(), []
    recorder = TrainingRecorder(styles=[style], on_progress=seen.append, clock=clock)
    recorder.start(config=Config(tmp_path, steps=20))
    style.refresh_from_db()
    assert style.training_progress["state"] == "running"
    assert style.training_progress["step"] == 0 and style.training_progress["steps"] == 20

    def step_to(step):
        recorder(progress(step, 20, seconds=10.0 + 2 * (step - 1)))
        style.refresh_from_db()
        return style.training_progress

    first = step_to(1)  # the first step is always written
    assert first["step"] == 1 and first["seconds_left"] is None  # one step: no rate yet
    assert first["losses"] == {"content": 100000.0, "style": 51.0, "tv": 3.0, "total": 100053.0}
    clock.now += 1
    assert step_to(2)["step"] == 1  # 1 s later: not written
    clock.now += 3.9
    assert step_to(3)["step"] == 1  # 4.9 s after the last write: still not
    clock.now += 0.1
    record = step_to(4)  # 5 s: written
    assert record["step"] == 4
    # 2 s a step from the first step on (its compile time left out), 16 steps to go.
    assert record["seconds_left"] == pytest.approx(32.0)
    assert record["seconds"] == pytest.approx(16.0)
    for step in range(5, 20):
        clock.now += 0.1
        assert step_to(step)["step"] == 4  # 1.5 s in all: none written
    last = step_to(20)  # the last step is always written
    assert last["step"] == 20 and last["seconds_left"] == 0
    assert [p.step for p in seen] == list(range(1, 21))  # the caller's own hook, every step
    assert [entry[0] for entry in last["history"]] == list(range(1, 21))


@pytest.mark.django_db
def test_the_history_stays_bounded_and_evenly_spaced(tmp_path):
    style = StyleFactory()
    clock = Clock()
    recorder = TrainingRecorder(styles=[style], clock=clock)
    steps = 5000
    recorder.start(config=Config(tmp_path, steps=steps))
    for step in range(1, steps + 1):
        clock.now += 0.01
        recorder(progress(step, steps))
    recorder.succeed()
    style.refresh_from_db()
    kept = [step for step, _ in style.training_progress["history"]]
    assert len(kept) <= HISTORY_POINTS and len(kept) >= HISTORY_POINTS // 2
    assert kept[0] == 1 and kept[-1] == steps  # the start and the latest step
    gaps = {b - a for a, b in zip(kept[:-1], kept[1:-1])}
    assert len(gaps) == 1  # evenly spaced (but the latest)
    terms = style.training_progress["history"][-1][1]
    assert terms == {name: pytest.approx(v, rel=1e-5) for name, v in losses(steps).items()}
    assert style.training_progress["state"] == "succeeded"
    assert style.training_progress["finished_at"]


@pytest.mark.django_db
def test_the_recorder_copies_the_newest_sample_throttled_and_lets_old_ones_go(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(training_progress, "SAMPLE_COPY_SECONDS", 30.0)
    style = StyleFactory()
    old = default_storage.save("styles/training/old-run.png", ContentFile(png_bytes()))
    Style.objects.filter(pk=style.pk).update(training_sample=old)
    clock = Clock()
    recorder = TrainingRecorder(styles=[style], clock=clock)
    recorder.start(config=Config(tmp_path, steps=30, sample_every=10))
    style.refresh_from_db()
    assert not style.training_sample  # the previous run's sample is let go …
    assert not default_storage.exists(old)  # … and deleted, as no style shows it

    for step in range(1, 10):
        recorder(progress(step, 30))
    style.refresh_from_db()
    assert not style.training_sample
    first = write_sample(tmp_path, 10, (255, 0, 0))
    recorder(progress(10, 30))  # a sample: copied at once (the first)
    style.refresh_from_db()
    assert stored(style.training_sample) == first
    assert style.training_progress["sample_step"] == 10
    first_name = style.training_sample.name
    assert first_name.startswith("styles/training/") and len(Path(first_name).stem) > 20

    clock.now += 10
    second = write_sample(tmp_path, 20, (0, 255, 0))
    recorder(progress(20, 30))  # 10 s after the last copy: waits
    style.refresh_from_db()
    assert stored(style.training_sample) == first
    clock.now += 25
    recorder(progress(21, 30))  # 35 s: the waiting sample goes in
    style.refresh_from_db()
    assert stored(style.training_sample) == second
    assert style.training_progress["sample_step"] == 20
    assert not default_storage.exists(first_name)

    third = write_sample(tmp_path, 30, (0, 0, 255))
    clock.now += 1
    recorder(progress(30, 30))  # the last step: copied however soon
    recorder.succeed()
    style.refresh_from_db()
    assert stored(style.training_sample) == third
    # The run's last sample is its contact sheet, one stored file for both.
    assert style.training_sheet.name == style.training_sample.name
    assert style.training_progress["sheet_step"] == 30


@pytest.mark.django_db
def test_the_recorder_updates_only_its_fields_and_a_failed_write_does_not_stop_training(
    tmp_path, monkeypatch
):
    style = StyleFactory(description="before")
    recorder = TrainingRecorder(styles=[style], clock=Clock())
    recorder.start(config=Config(tmp_path, steps=5))
    Style.objects.filter(pk=style.pk).update(description="edited meanwhile")
    recorder(progress(1, 5))
    style.refresh_from_db()
    assert style.description == "edited meanwhile" and style.training_progress["step"] == 1

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(training_progress.Style.objects, "filter", broken)
    seen = []
    recorder.on_progress = seen.append
    recorder(progress(5, 5))  # logged, not raised; the caller's hook still runs
    assert [p.step for p in seen] == [5]


def fake_train(steps_before_failing=3, error=None):
    """``ml.train.train`` that reports a few steps, then fails like a diverged run."""

    def train(config, *, on_progress=None, **kwargs):
        for step in range(1, steps_before_failing + 1):
            on_progress(TrainProgress(step, config.steps, 0.5 * step, losses(step)))
        raise error or TrainingDiverged(f"step {steps_before_failing}: non-finite loss style")

    return train


@pytest.mark.django_db
def test_a_failed_run_from_train_style_is_marked_failed(serving_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("ml.train.train", fake_train())
    style = StyleFactory(slug="wave", model_name="wave", live_version=None, status="draft")
    with pytest.raises(CommandError, match="non-finite"):
        call_command("train_style", "wave", "--data", str(tmp_path), "--steps", "10",
                     stdout=io.StringIO())
    style.refresh_from_db()
    record = style.training_progress
    assert record["state"] == "failed" and "non-finite loss" in record["reason"]
    assert record["step"] == 3 and record["steps"] == 10 and record["finished_at"]
    assert set(record["losses"]) == set(TERMS)
    assert style.status == Style.Status.FAILED


@pytest.mark.django_db
def test_the_celery_task_records_progress_without_knowing_of_it(serving_dir, monkeypatch):
    from stylize.tasks import style_train as train_task

    monkeypatch.setattr("ml.train.train", fake_train(2, RuntimeError("worker lost")))
    style = StyleFactory(slug="starry", model_name="starry")
    with pytest.raises(RuntimeError, match="worker lost"):
        train_task(style.pk, {"steps": 7})  # what the admin's Retrain queues
    style.refresh_from_db()
    assert style.training_progress["state"] == "failed"
    assert style.training_progress["step"] == 2 and style.training_progress["steps"] == 7
    assert style.training_progress["reason"] == "RuntimeError: worker lost"


@pytest.mark.django_db
def test_a_bank_run_is_recorded_on_every_style_it_trains(serving_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("ml.train.train", fake_train(4))
    red = StyleFactory(slug="red", model_name="red", live_version=None, status="draft")
    blue = StyleFactory(slug="blue", model_name="blue", live_version=None, status="draft")
    bystander = StyleFactory(slug="green", model_name="green")
    with pytest.raises(TrainingDiverged):
        training.bank_train(model_name="duo", styles=[red, blue],
                            overrides={"data_dir": str(tmp_path), "steps": 9})
    for style in (red, blue):
        style.refresh_from_db()
        assert style.training_progress["state"] == "failed"
        assert style.training_progress["step"] == 4 and style.training_progress["steps"] == 9
    bystander.refresh_from_db()
    assert bystander.training_progress == {}


@pytest.mark.django_db
def test_a_slot_run_is_recorded_on_its_style_only(serving_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("ml.train.train", fake_train(1))
    monkeypatch.setattr(training, "bank_live_dir", lambda *a, **k: tmp_path)
    monkeypatch.setattr("ml.export.read_slots",
                        lambda path: {"slots": [{"slug": None}, {"slug": "one"}, {"slug": "two"}]})
    one = BankStyleFactory(slug="one", model_name="bank", bank_index=1, bank_slots=3)
    two = BankStyleFactory(slug="two", model_name="bank", bank_index=2, bank_slots=3)
    with pytest.raises(TrainingDiverged):
        training.style_train(style=one, overrides={"data_dir": str(tmp_path), "steps": 5})
    one.refresh_from_db()
    two.refresh_from_db()
    assert one.training_progress["state"] == "failed" and one.training_progress["step"] == 1
    assert two.training_progress == {}


# --------------------------------------------------------------------------- the admin


def running_style(**extra):
    style = StyleFactory(name="Starry Night", status="training")
    sample = default_storage.save("styles/training/starry-step40-abc.png",
                                  ContentFile(png_bytes(size=(40, 20), color=(1, 2, 3))))
    Style.objects.filter(pk=style.pk).update(
        training_sample=sample,
        training_progress={
            "state": "running", "step": 40, "steps": 100, "seconds": 125.0,
            "seconds_left": 190.0, "losses": {"content": 12345.6, "style": 0.5, "tv": 3.0,
                                               "total": 12349.1},
            "started_at": timezone.now().isoformat(), "updated_at": timezone.now().isoformat(),
            "sample_step": 40, "history": history(40), **extra,
        })
    style.refresh_from_db()
    return style


@pytest.mark.django_db
def test_the_change_page_shows_a_running_run(staff_client):
    style = running_style()
    page = staff_client.get(reverse("admin:stylize_style_change", args=[style.pk]))
    assert_nothing_inline(page)
    html = page.content.decode()
    section = html[html.index('class="module aligned training"'):]
    section = section[:section.index("</fieldset>")]
    assert "Running" in section
    assert re.search(r'<progress class="training-progress" max="100" value="40">', section)
    assert "40 of 100 steps (40 %)" in section
    for term, value in [("content", "12.3k"), ("style", "0.5"), ("tv", "3"), ("total", "12.3k")]:
        assert re.search(rf'<th scope="row">{term}</th><td class="number">{value}</td>', section)
    assert "Trained for 2 min 05 s; about 3 min 10 s left" in section
    assert 'data-training-refresh="10"' in section
    assert "stylize/admin-training.js" in html and "stylize/admin-training.css" in html
    [url] = re.findall(r'<img src="([^"]+)" alt="Sample photos[^"]*step 40', section)
    assert url == style.training_sample.url
    served = fetch_media(url)
    assert served.status_code == 200
    assert b"".join(served.streaming_content) == stored(style.training_sample)
    assert section.count("<figure") == 1  # the contact sheet waits for the end of the run


@pytest.mark.django_db
def test_the_change_page_flags_a_run_that_stopped_reporting(staff_client):
    style = running_style(updated_at=(timezone.now() - timezone.timedelta(hours=2)).isoformat())
    page = staff_client.get(reverse("admin:stylize_style_change", args=[style.pk]))
    assert "its worker may have stopped" in page.content.decode()


@pytest.mark.django_db
def test_after_the_run_the_page_shows_the_loss_curves_and_the_contact_sheet(staff_client):
    style = running_style()
    sheet = default_storage.save("styles/training/sheet.png", ContentFile(png_bytes()))
    record = {**style.training_progress, "state": "succeeded", "step": 100,
              "seconds_left": 0.0, "history": history(100), "sheet_step": 100,
              "finished_at": timezone.now().isoformat()}
    Style.objects.filter(pk=style.pk).update(training_progress=record, training_sheet=sheet,
                                             status="ready")
    style.refresh_from_db()
    page = staff_client.get(reverse("admin:stylize_style_change", args=[style.pk]))
    assert_nothing_inline(page)
    html = page.content.decode()
    assert "data-training-refresh" not in html  # nothing to follow any more
    assert "Finished" in html and "Trained for 2 min 05 s" in html
    lines = curves(html).findall(f"{SVG}polyline")
    assert sorted(line.get("data-term") for line in lines) == sorted(TERMS)
    assert re.search(rf'<img src="{re.escape(style.training_sheet.url)}" alt="The last '
                     r'finished run&#x27;s sample photos \(top\) at step 100', html)
    assert fetch_media(style.training_sheet.url).status_code == 200


@pytest.mark.django_db
def test_a_failed_run_says_why_on_the_page(staff_client):
    style = running_style()
    Style.objects.filter(pk=style.pk).update(training_progress={
        **style.training_progress, "state": "failed",
        "reason": 'TrainingDiverged: <b>x</b> onload="y" style=z'})
    html = staff_client.get(reverse("admin:stylize_style_change", args=[style.pk]))
    assert_nothing_inline(html)
    assert "Failed" in html.content.decode()
    assert "TrainingDiverged: &lt;b&gt;x&lt;/b&gt;" in html.content.decode()


@pytest.mark.django_db
def test_a_style_never_trained_and_a_new_style_have_no_training_to_show(staff_client):
    style = StyleFactory()
    html = staff_client.get(reverse("admin:stylize_style_change", args=[style.pk])).content
    assert b"No run recorded yet." in html and b"loss-curves" not in html
    assert b"<progress" not in html
    add = staff_client.get(reverse("admin:stylize_style_add"))
    assert add.status_code == 200 and b'class="module aligned training"' not in add.content


@pytest.mark.django_db
def test_saving_the_form_keeps_what_a_run_wrote_meanwhile(staff_client):
    from django.db.models.signals import pre_save

    style = StyleFactory(name="Wave", slug="wave", model_name="wave", status="training")
    url = reverse("admin:stylize_style_change", args=[style.pk])
    form = staff_client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields
            if form[name].value() is not None and not isinstance(form[name].value(), FieldFile)}
    data["description"] = "new words"
    written = {"state": "succeeded", "step": 9}

    def run_reports(sender, instance, **kwargs):
        # The run's recorder writes between the admin loading the row and saving it.
        Style.objects.filter(pk=instance.pk).update(training_progress=written)

    pre_save.connect(run_reports, sender=Style)
    try:
        response = staff_client.post(url, data)
    finally:
        pre_save.disconnect(run_reports, sender=Style)
    assert response.status_code == 302
    style.refresh_from_db()
    assert style.description == "new words"
    assert style.training_progress == written


@pytest.mark.django_db
def test_the_style_list_shows_held_out_numbers(staff_client):
    heldout = {"version": 3, "photos": 8, "losses": {"content": 123456.7, "style": 0.01234,
                                                     "tv": 5.0, "total": 1.0},
               "quality": {"style_distance_ratio": 0.6234}}
    StyleFactory(name="Evaluated", live_version=3, metrics={"heldout": heldout})
    StyleFactory(name="Older", live_version=4, metrics={"heldout": heldout})
    StyleFactory(name="Never evaluated", metrics={"train": {"final": {"total": 1.0}}})
    page = staff_client.get(reverse("admin:stylize_style_changelist"))
    assert_nothing_inline(page)
    html = page.content.decode()
    for header in ("Held-out content", "Held-out style", "Style ratio", "Held-out of"):
        assert header in html

    def row(name):
        start = html.index(f">{name}</a>")
        return html[start:html.index("</tr>", start)]

    cells = row("Evaluated")
    assert '<td class="field-heldout_content">123k</td>' in cells
    assert '<td class="field-heldout_style">0.0123</td>' in cells
    assert '<td class="field-heldout_style_ratio">0.623</td>' in cells
    assert '<td class="field-heldout_of">v3, 8 photos</td>' in cells
    assert "(not the live version)" in row("Older")
    empty = row("Never evaluated")
    assert '<td class="field-heldout_content">-</td>' in empty
    assert '<td class="field-heldout_of">-</td>' in empty


# --------------------------------------------------------------------------- a real run


@pytest.mark.slow
@pytest.mark.django_db
def test_a_real_tiny_run_reports_as_it_goes_and_the_admin_shows_it(
    serving_dir, photos, vgg16_random_weights, staff_client, monkeypatch, tmp_path
):
    monkeypatch.setattr(training_progress, "PROGRESS_SAVE_SECONDS", 3600.0)  # only what must be
    style = StyleFactory(slug="starry", model_name="starry", status="draft", live_version=None)
    seen = []

    def watch(progress):  # the caller's hook runs after the recorder's write
        record = Style.objects.get(pk=style.pk)
        seen.append((progress.step, dict(record.training_progress), record.training_sample.name))

    training.style_train(style=style, on_progress=watch, overrides={
        "data_dir": str(photos), "steps": 4, "size": 32, "batch": 2, "sample_every": 2,
        "loss_network": "vgg16", "loss_weights": str(vgg16_random_weights), "width": 0.25})

    by_step = {step: (record, sample) for step, record, sample in seen}
    assert sorted(by_step) == [1, 2, 3, 4]
    first, _ = by_step[1]
    assert first["state"] == "running" and first["step"] == 1 and first["steps"] == 4
    terms = set(first["losses"])  # the four, and the style term of each VGG layer
    assert terms >= set(TERMS) and all(np.isfinite(list(first["losses"].values())))
    record, sample = by_step[2]  # the run wrote a sample: written at once
    assert record["step"] == 2 and record["sample_step"] == 2 and sample
    assert record["seconds_left"] is not None and record["seconds_left"] > 0
    assert by_step[3][0]["step"] == 2  # throttled: nothing new to write
    record, last_sample = by_step[4]
    assert record["step"] == 4 and record["seconds_left"] == 0 and record["sample_step"] == 4
    assert last_sample != sample and not default_storage.exists(sample)

    style.refresh_from_db()
    assert style.status == Style.Status.READY and style.live_version == 1
    done = style.training_progress
    assert done["state"] == "succeeded" and [s for s, _ in done["history"]] == [1, 2, 3, 4]
    assert style.training_sheet.name == style.training_sample.name == last_sample
    run_sample = django_settings.VAR_DIR / "training" / "starry" / "samples" / "step-00000004.png"
    assert stored(style.training_sample) == run_sample.read_bytes()

    page = staff_client.get(reverse("admin:stylize_style_change", args=[style.pk]))
    assert_nothing_inline(page)
    html = page.content.decode()
    lines = curves(html).findall(f"{SVG}polyline")
    assert {line.get("data-term") for line in lines} == terms and len(lines) == len(terms)
    assert f'<img src="{style.training_sheet.url}"' in html
    served = fetch_media(style.training_sheet.url)
    image = Image.open(io.BytesIO(b"".join(served.streaming_content)))
    assert image.size == Image.open(run_sample).size

    # Evaluating the live version on held-out photos: its contact sheet replaces the
    # run's, and the list shows the numbers.
    call_command("evaluate_style", "starry", "--images", str(photos),
                 "--sheet", str(tmp_path / "sheet.png"), stdout=io.StringIO())
    style.refresh_from_db()
    assert style.training_sheet.name == style.metrics["heldout"]["sheet"]
    assert stored(style.training_sheet) == (tmp_path / "sheet.png").read_bytes()
    assert default_storage.exists(style.training_sample.name)  # still the latest sample
    html = staff_client.get(reverse("admin:stylize_style_change", args=[style.pk])).content
    assert b"6 held-out photos (top) in version 1" in html
    listing = staff_client.get(reverse("admin:stylize_style_changelist")).content.decode()
    content = f'{style.metrics["heldout"]["losses"]["content"]:.3g}'
    assert 'class="field-heldout_of">v1, 6 photos<' in listing
    assert re.search(r'class="field-heldout_content">[0-9.e+k-]+<', listing), content


# --------------------------------------------------------------------------- in a browser


@pytest.mark.slow
@needs_chromium
def test_the_training_section_follows_the_run_in_a_browser_and_keeps_the_form(
    live_server, transactional_db, monkeypatch, tmp_path
):
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    monkeypatch.setattr("stylize.admin.TRAINING_REFRESH_SECONDS", 1)
    style = running_style()
    UserFactory(username="root", is_staff=True, is_superuser=True)

    def report(**changes):
        Style.objects.filter(pk=style.pk).update(
            training_progress={**style.training_progress, **changes})

    with sync_playwright() as playwright:
        browser, page, errors = open_browser(playwright)
        try:
            admin_log_in(page, live_server.url, "root")
            page.goto(f"{live_server.url}/admin/stylize/style/{style.pk}/change/")
            bar = page.locator("fieldset.training progress")
            expect(bar).to_have_attribute("value", "40")

            report(step=60, losses={**style.training_progress["losses"], "tv": 2.5})
            expect(bar).to_have_attribute("value", "60")  # swapped in, no reload
            expect(page.locator("fieldset.training")).to_contain_text("2.5")

            page.locator("#id_description").fill("typed while it trains")
            report(state="succeeded", step=100, seconds_left=0.0, history=history(100))
            expect(page.locator("fieldset.training")).to_contain_text("Finished")
            expect(page.locator("fieldset.training svg.loss-curves")).to_be_visible()
            # Edited: the form is left as it is (no reload).
            expect(page.locator("#id_description")).to_have_value("typed while it trains")

            report(state="running", step=10)  # a new run; unedited page this time
            page.reload()
            expect(bar).to_have_attribute("value", "10")
            report(state="succeeded", step=100)
            page.wait_for_event("load")  # the run ended: the whole page reloads
            expect(page.locator("fieldset.training")).to_contain_text("Finished")
            assert page.evaluate("window.__cspViolations") == []
            assert errors == []
        finally:
            browser.close()
