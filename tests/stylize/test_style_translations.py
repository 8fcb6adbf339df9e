"""Chinese readers get the styles' Chinese names and descriptions (``Style.name_zh``,
``description_zh``; the shipped ones from their style.json), and "Painting" under a
painting is the noun 画作, not the job stage 正在绘制 (a message context)."""

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from stylize.models import Style, StyleJob
from stylize.services import styles
from tests.factories import StyleFactory

pytestmark = pytest.mark.django_db

ZH = "zh-hans"
SERVING_DIR = Path(settings.BASE_DIR) / "serving"


def test_every_shipped_style_json_has_a_chinese_name_and_description():
    for meta_file in sorted((SERVING_DIR / "styles").glob("*/style.json")):
        meta = json.loads(meta_file.read_text())
        assert meta.get("name_zh") and meta.get("description_zh"), meta_file
        assert not any(c.isascii() and c.isalpha() for c in meta["name_zh"]), meta_file


def test_registering_the_shipped_styles_gives_them_their_chinese_words():
    styles.styles_register_shipped(serving_dir=SERVING_DIR)
    starry = Style.objects.get(slug="starry-night")
    assert (starry.name_zh, starry.name) == ("星月夜", "The Starry Night")
    assert "梵高" in starry.description_zh

    with translation.override(ZH):
        assert starry.local_name == "星月夜" and starry.local_description == starry.description_zh
    with translation.override("en"):
        assert starry.local_name == "The Starry Night"
    assert StyleFactory(name="Sketch", name_zh="").local_name == "Sketch"  # none given


def test_registering_again_fills_what_an_older_database_lacks_and_keeps_staffs_words():
    """A database registered before these fields: the next `make run` fills the empty
    ones, and records which version the shipped held-out numbers belong to."""
    styles.styles_register_shipped(serving_dir=SERVING_DIR)
    Style.objects.update(name_zh="", description_zh="")
    for style in Style.objects.all():
        style.metrics["heldout"].pop("version")
        style.save()
    Style.objects.filter(slug="great-wave").update(name_zh="大浪")  # staff's own

    styles.styles_register_shipped(serving_dir=SERVING_DIR)

    assert Style.objects.get(slug="starry-night").name_zh == "星月夜"
    assert Style.objects.get(slug="great-wave").name_zh == "大浪"
    assert all(s.metrics["heldout"]["version"] == s.live_version for s in Style.objects.all())


def test_the_chinese_pages_show_the_chinese_names_and_the_noun_for_painting(client):
    styles.styles_register_shipped(serving_dir=SERVING_DIR)
    home = client.get(reverse("stylize:home"), HTTP_ACCEPT_LANGUAGE=ZH).content.decode()
    assert "<h3>星月夜</h3>" in home and "旋转的蓝色与黄色笔触" in home
    assert "<figcaption>画作</figcaption>" in home and "正在绘制" not in home
    english = client.get(reverse("stylize:home")).content.decode()
    assert "<h3>The Starry Night</h3>" in english and "<figcaption>Painting</figcaption>" in english

    with translation.override(ZH):  # the job's stage keeps its own word
        assert str(StyleJob.Stage.PAINTING.label) == "正在绘制"
