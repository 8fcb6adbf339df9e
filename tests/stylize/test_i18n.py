"""English and Simplified Chinese: every page, form, message, email and API error comes
in both, chosen from the browser's ``Accept-Language`` or the header's switcher (kept
on the profile for the user's emails); the catalogues are complete and compiled."""

import html
import io
import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone, translation
from PIL import Image
from rest_framework.test import APIClient

from stylize.models import Profile, Style, StyleJob
from stylize.services import accounts, sharing
from stylize.services.job_emails import job_email_send
from stylize.services.stylizing import job_run
from tests.factories import StyleFactory, StyleJobFactory, UserFactory
from tests.helpers import PASSWORD

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("queue", "empty_cache")]

ZH = "zh-hans"
CJK = re.compile(r"[\u4e00-\u9fff]")
# Four English words in a row is a sentence somebody forgot to mark for translation.
ENGLISH_RUN = re.compile(r"[A-Za-z][a-z']+(?:[ ,;:—-]+[A-Za-z][a-z']+){3,}")
# What users put in (names, addresses, the style's own name) and what is the same in any
# language (the product's name, formats, header names, code).
NOT_TRANSLATED = ["Starry Night", "ada@example.com", "Prisma", "Authorization: Token",
                  "X-Prisma-Signature"]
CATALOGUES = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES"


def jpeg(size=(40, 30)):
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 60, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def readable(page: str) -> str:
    """The words a person reads or hears on ``page``: its text and the attributes a
    screen reader speaks, without scripts, styles and markup."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    # The switcher names each language in itself (English, 简体中文) on every page.
    page = re.sub(r'<form class="inline language-switcher".*?</form>', " ", page, flags=re.S)
    spoken = re.findall(r'\s(?:alt|title|aria-label|aria-valuetext|placeholder)="([^"]*)"', page)
    text = re.sub(r"<[^>]+>", " ", page)
    text = html.unescape(" ".join([text, *spoken]))
    for kept in NOT_TRANSLATED:
        text = text.replace(kept, " ")
    return re.sub(r"\s+", " ", text)


@pytest.fixture
def world(client):
    """A user with a job in every state a page can show, and a shared result."""
    user = UserFactory(username="ada", email="ada@example.com")
    style = StyleFactory(name="Starry Night", slug="starry-night", description="")
    queued = StyleJobFactory(owner=user, style=style)
    failed = StyleJobFactory(owner=user, style=style, status=StyleJob.Status.FAILED,
                             error="HTTP 503", finished_at=timezone.now())  # the owner's text
    done = StyleJobFactory(owner=user, style=style, status=StyleJob.Status.RUNNING)
    done.result_image.save("result.jpg", ContentFile(jpeg()), save=False)
    done.status = StyleJob.Status.SUCCEEDED
    done.finished_at = timezone.now()
    done.save()
    shared = StyleJobFactory(owner=user, style=style, status=StyleJob.Status.RUNNING)
    shared.result_image.save("result.jpg", ContentFile(jpeg()), save=False)
    shared.status = StyleJob.Status.SUCCEEDED
    shared.finished_at = timezone.now()
    shared.save()
    token = sharing.job_share(job=shared).share_token
    return {"user": user, "queued": queued, "failed": failed, "done": done, "shared": shared,
            "token": token}


LOGGED_OUT = [
    ("home", []), ("signup", []), ("login", []), ("password_reset", []),
    ("password_reset_done", []), ("password_reset_confirm", ["MQ", "set-password"]),
    ("email_confirm", ["MQ", "not-a-token"]),
]
LOGGED_IN = [
    ("upload", []), ("job_list", []), ("profile", []), ("password_change", []),
    ("password_change_done", []), ("account_delete", []),
]


REFUSED = {"email_confirm": 400, "upload with errors": 400}  # and say why, readably


def all_pages(client, world, language):
    """Every page of the site, as ``language`` asks for it: name → HTML."""
    headers = {"HTTP_ACCEPT_LANGUAGE": language}
    pages = {}
    client.logout()
    for name, args in LOGGED_OUT:
        pages[name] = client.get(reverse(f"stylize:{name}", args=args), **headers)
    pages["shared"] = client.get(reverse("stylize:shared", args=[world["token"]]), **headers)
    pages["login with errors"] = client.post(
        reverse("stylize:login"), {"username": "ada", "password": "wrong"}, **headers)
    pages["signup with errors"] = client.post(
        reverse("stylize:signup"), {"email": "not an address"}, **headers)
    client.force_login(world["user"])
    for name, args in LOGGED_IN:
        pages[name] = client.get(reverse(f"stylize:{name}", args=args), **headers)
    for which in ("queued", "failed", "done", "shared"):
        pages[f"job {which}"] = client.get(
            reverse("stylize:job", args=[world[which].pk]), **headers)
    pages["upload with errors"] = client.post(reverse("stylize:upload"), {}, **headers)
    for name, response in pages.items():
        assert response.status_code == REFUSED.get(name, 200), name
        assert response.headers["Content-Language"] == language, name
    return {name: response.content.decode() for name, response in pages.items()}


def test_every_page_comes_in_english_by_default(client, world):
    for name, page in all_pages(client, world, "en").items():
        assert '<html lang="en">' in page, name
        assert not CJK.search(readable(page)), (name, CJK.findall(readable(page))[:10])


def test_every_page_comes_in_chinese_when_the_browser_asks(client, world):
    for name, page in all_pages(client, world, ZH).items():
        text = readable(page)
        assert '<html lang="zh-Hans">' in page, name
        assert CJK.search(text), name
        assert ENGLISH_RUN.findall(text) == [], name


def test_the_job_pages_say_what_matters_in_chinese(client, world):
    pages = all_pages(client, world, ZH)
    assert "排队中" in pages["job queued"]  # the status and the bar's stage
    assert "正在排队" in pages["job queued"]
    assert "我们未能重绘这张照片。" in pages["job failed"]
    assert "下载为 JPEG" in pages["job done"] and "生成分享链接" in pages["job done"]
    assert "停止分享" in pages["job shared"]
    assert "Y年" not in pages["job shared"] and "年" in pages["job shared"]  # dates, too
    assert "JPEG、PNG、WebP" in pages["upload"]  # the form's own help texts
    assert "以 Starry Night 风格绘制的照片" in pages["shared"]


def po_strings(entry: str, field: str) -> list[str]:
    """Each ``field`` ("msgid", "msgstr" — msgstr[n] too) of a .po entry, its quoted
    lines joined."""
    found, current = [], False
    for line in entry.splitlines():
        keyword, _, rest = line.partition(" ")
        if keyword == field or keyword.startswith(field + "["):
            found.append(json.loads(rest))
            current = True
        elif line.startswith('"') and current:
            found[-1] += json.loads(line)
        else:
            current = False
    return found


def po_entries(domain: str) -> list[str]:
    return (CATALOGUES / f"{domain}.po").read_text().split("\n\n")[1:]


def test_the_catalogues_are_complete_and_compiled():
    for domain in ("django", "djangojs"):
        entries = po_entries(domain)
        assert len(entries) > (150 if domain == "django" else 8)
        for entry in entries:
            assert "#, fuzzy" not in entry, entry
            assert all(po_strings(entry, "msgstr")), entry  # none left empty
        # make run / make test compile them: the .mo files are not in git.
        assert (CATALOGUES / f"{domain}.mo").stat().st_mtime >= (
            CATALOGUES / f"{domain}.po").stat().st_mtime
    with translation.override(ZH):
        assert translation.gettext("Repaint my photo") == "重绘我的照片"


def test_every_string_in_the_code_is_in_the_catalogue():
    known = {msgid for domain in ("django", "djangojs") for entry in po_entries(domain)
             for msgid in po_strings(entry, "msgid")}
    code = Path(settings.BASE_DIR) / "stylize"
    marked = set()
    for path in [*code.rglob("*.html"), *code.rglob("*.js")]:
        text = path.read_text()
        marked |= {json.loads(f'"{m}"') for m in re.findall(
            r'{% translate "((?:[^"\\]|\\.)*)" %}', text)}
        marked |= {m for m in re.findall(r'\bgettext\("((?:[^"\\]|\\.)*)"\)', text)}
    for path in code.rglob("*.py"):
        marked |= {json.loads(f'"{m}"') for m in re.findall(
            r'\b(?:_|gettext|gettext_lazy)\(\s*"((?:[^"\\]|\\.)*)"\s*\)', path.read_text())}
    assert marked and marked <= known, sorted(marked - known)


def test_the_switcher_changes_the_language_and_remembers_it_for_emails(client, world):
    client.force_login(world["user"])
    home = client.get(reverse("stylize:home")).content.decode()
    assert 'name="language" value="zh-hans"' in home and 'lang="zh-Hans">简体中文</button>' in home

    response = client.post(reverse("set_language"), {"language": ZH, "next": "/jobs/"})
    assert response.status_code == 302 and response["Location"] == "/jobs/"
    page = client.get("/jobs/").content.decode()
    assert "<h1>我的任务</h1>" in page
    assert '>English</button>' in page  # and back again
    assert Profile.for_user(world["user"]).language == ZH

    # The worker has no request: the result email follows the language on the profile.
    world["done"].refresh_from_db()
    assert job_email_send(job_id=world["done"].pk)
    [message] = mail.outbox
    assert "你的照片" in message.subject and "你好" in message.body

    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    assert "<h1>My jobs</h1>" in client.get("/jobs/").content.decode()
    assert Profile.for_user(world["user"]).language == "en"


def test_a_browsers_language_is_kept_for_emails_until_the_user_chooses(client, world):
    client.force_login(world["user"])
    client.get(reverse("stylize:job_list"), HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9,en;q=0.5")
    assert Profile.for_user(world["user"]).language == ZH


def test_sign_up_mails_the_confirmation_in_the_visitors_language(client):
    response = client.post(reverse("stylize:signup"), {
        "email": "li@example.com", "password1": PASSWORD, "password2": PASSWORD,
    }, HTTP_ACCEPT_LANGUAGE=ZH)
    assert response.status_code in (200, 302)
    [message] = mail.outbox
    assert message.subject == "确认你在 Prisma 的电子邮箱" and "请打开下面的链接" in message.body


def test_the_apis_errors_follow_accept_language(world):
    api = APIClient()
    anonymous = api.get("/api/v1/jobs/", HTTP_ACCEPT_LANGUAGE=ZH)
    assert anonymous.status_code == 401 and CJK.search(anonymous.json()["detail"])

    api.force_authenticate(world["user"])
    broken = api.post("/api/v1/jobs/", {
        "image": io.BytesIO(b"GIF89a" + b"\0" * 64), "style": "starry-night",
    }, format="multipart", HTTP_ACCEPT_LANGUAGE=ZH)
    assert broken.status_code == 400
    assert "GIF 图片不是受支持的照片" in json.dumps(broken.json(), ensure_ascii=False)

    no_result = api.get(f"/api/v1/jobs/{world['queued'].pk}/result/", HTTP_ACCEPT_LANGUAGE=ZH)
    assert no_result.status_code == 404
    assert no_result.json()["detail"] == "此任务还没有结果。"
    english = api.get(f"/api/v1/jobs/{world['queued'].pk}/result/")
    assert english.json()["detail"] == "This job has no result yet."


def test_the_javascript_catalogue_carries_the_scripts_strings(client):
    catalogue = client.get(reverse("javascript-catalog"), HTTP_ACCEPT_LANGUAGE=ZH)
    assert catalogue.status_code == 200
    body = catalogue.content.decode()
    for chinese in ("正在上传…", "请选择一张照片。", "队列中你前面还有 %(ahead)s 个任务。"):
        assert json.dumps(chinese)[1:-1] in body or chinese in body, chinese


def test_the_worker_writes_a_failed_jobs_reason_in_its_owners_language(world):
    accounts.profile_language_set(user=world["user"], language=ZH)
    style = StyleFactory(name="Sketch", slug="sketch", status=Style.Status.DRAFT,
                         live_version=None)
    job = StyleJobFactory(owner=world["user"], style=style)
    assert job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == StyleJob.Status.FAILED
    assert job.error == "风格 Sketch 还没有训练好的模型。"
    assert translation.get_language() == "en"  # the worker's own language is untouched
