"""The profile page hides the API token and the webhook secret until asked (a closed
<details>, no script needed) and says what they are for to people who are not
programmers."""

import re

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token

from stylize.services import accounts
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_secrets_are_masked_until_shown_and_explained(client):
    user = UserFactory()
    client.force_login(user)
    token = Token.objects.create(user=user)
    page = client.get(reverse("stylize:profile")).content.decode()
    secret = accounts.profile_webhook_secret(user=user)

    for reveal, value in (("token-reveal", token.key), ("webhook-secret-reveal", secret)):
        details = re.search(rf'<details class="secret-reveal" id="{reveal}">(.*?)</details>',
                            page, re.S)
        assert details, reveal  # closed: no "open" attribute
        assert value in details.group(1) and page.count(value) == 1
        assert "••••" in re.search(r"<summary>(.*?)</summary>", details.group(1)).group(1)
    explained = re.search(r'id="for-programs-explained">(.*?)</p>', page, re.S).group(1)
    assert "You need none of this to use Prisma on this site" in explained
    assert "treat it like a password" in explained

    chinese = client.get(reverse("stylize:profile"), HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "在本网站上使用 Prisma 不需要这些" in chinese.content.decode()
