import factory
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.utils import timezone

from stylize.models import Style, StyleJob
from tests.helpers import PASSWORD, png_bytes


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password(PASSWORD)


class StyleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Style

    name = factory.Sequence(lambda n: f"Style {n}")
    slug = factory.Sequence(lambda n: f"style-{n}")
    model_name = factory.LazyAttribute(lambda s: s.slug.replace("-", "_"))
    painting = factory.LazyFunction(lambda: ContentFile(png_bytes(), name="painting.png"))
    status = Style.Status.READY
    live_version = 1
    # Published once it has a live version (as staff would have, after reviewing it);
    # give published_at=None for a draft.
    published_at = factory.LazyAttribute(
        lambda s: timezone.now() if s.live_version is not None else None)


class StyleJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StyleJob

    owner = factory.SubFactory(UserFactory)
    style = factory.SubFactory(StyleFactory)
    input_image = factory.LazyFunction(lambda: ContentFile(png_bytes(), name="photo.png"))


class BankStyleFactory(StyleFactory):
    """One slot of a bank: a conditional network shared by several styles (slot 0 is
    the photo itself). Give each style of one bank its own ``bank_index``."""

    model_name = "bank"
    bank_index = 1
    bank_slots = 3
