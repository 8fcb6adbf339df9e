import factory
import numpy as np
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
    # A trained style of its own: slot 1 of its network (the identity and itself); a
    # draft never trained (live_version=None) has no slot.
    bank_index = factory.LazyAttribute(lambda s: 1 if s.live_version is not None else None)
    bank_slots = factory.LazyAttribute(lambda s: 2 if s.live_version is not None else None)
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


class OwnStyleFactory(factory.django.DjangoModelFactory):
    """A user's own style, learnt: a row of ``params_size`` numbers (``params``, default
    ``row``) for version ``live_version`` of bank ``model_name`` (``bank_slots`` slots),
    its painting in the private storage (docs/design/own-styles.md)."""

    class Meta:
        model = Style

    class Params:
        params_size = 144  # tests.model_fixtures' tiny bank
        row = factory.LazyAttribute(
            lambda o: np.random.default_rng(len(o.name)).normal(1.0, 0.5, o.params_size))

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"My painting {n}")
    slug = factory.Sequence(lambda n: f"my-painting-{n}-0a1b2c3d")
    model_name = "bank"
    private_painting = factory.LazyFunction(lambda: ContentFile(png_bytes(), name="painting.png"))
    is_public = False
    published_at = None
    status = Style.Status.READY
    live_version = 1
    bank_slots = 3
    style_params = factory.LazyAttribute(lambda o: np.asarray(o.row, "<f4").tobytes())
    training_progress = factory.LazyFunction(lambda: {"state": "succeeded"})
