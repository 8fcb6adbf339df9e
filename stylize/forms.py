"""Forms of the web pages: sign-up, log-in, profile and the photo upload."""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.contrib.auth.forms import PasswordResetForm as DjangoPasswordResetForm
from django.core.exceptions import ValidationError
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .models import DEFAULT_MAX_SIDE, DEFAULT_STROKE, Preview, Profile, Stroke
from .selectors import style_list_mixable, style_list_offered, style_list_usable
from .services.accounts import confirmation_resend
from .services.jobs import DEFAULT_BLEND, job_mix_clean
from .strokes import STROKE_WORKING_SIDES
from .validators import (
    ALLOWED_EXTENSIONS,
    ALLOWED_FORMATS,
    upload_max_bytes,
    validate_photo_upload,
)

# What a browser may call an accepted photo (it decides nothing: the server reads the
# content). HEIC photos come as image/heic or image/heif, or with no type at all where
# the system does not know the name: the upload field's accept lists the extensions.
ALLOWED_CONTENT_TYPES = tuple(dict.fromkeys(
    [t for t, _ in ALLOWED_FORMATS.values()] + ["image/heif"]))
#: The "accept" of the upload field: the content types and the file name extensions.
UPLOAD_ACCEPT = ",".join(ALLOWED_CONTENT_TYPES + ALLOWED_EXTENSIONS)
#: The formats as the upload page names them.
ALLOWED_NAMES = (_("JPEG, PNG, WebP, HEIC or AVIF") if "AVIF" in ALLOWED_FORMATS
                 else _("JPEG, PNG, WebP or HEIC"))
MAX_SIDE_CHOICES = [
    (512, _("Small (512 px)")),
    (1024, _("Medium (1024 px)")),
    (2048, _("Large (2048 px)")),
    (4096, _("Huge (4096 px, slow)")),
]


class SignupForm(UserCreationForm):
    """Sign up with an email address and a password; the address is the username."""

    email = forms.EmailField(
        label=_("Email"),
        max_length=150,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
        help_text=_("We send your results and password resets here, and nowhere else."),
    )

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ["email"]

    def clean_email(self):
        # Whether the address is taken is not said here: stylize.services.accounts.signup mails
        # its owner instead, and the page is the same either way.
        return self.cleaned_data["email"].strip().lower()


class PasswordResetForm(DjangoPasswordResetForm):
    """Django's reset form, except that an address not yet confirmed gets its
    confirmation link again (at most once a minute) instead of a reset link: nothing
    but that link goes to an unconfirmed address."""

    def get_users(self, email):
        unconfirmed = set(
            Profile.objects.filter(email_confirmed=False).values_list("user_id", flat=True)
        )
        for user in super().get_users(email):
            if user.pk in unconfirmed:
                confirmation_resend(user=user)
            else:
                yield user


class LoginForm(AuthenticationForm):
    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields["username"].label = _("Email or username")


class AccountDeleteForm(forms.Form):
    """Deleting an account asks for its password once more."""

    password = forms.CharField(
        label=_("Your password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self):
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError(_("That is not your password."))
        return password


class ProfileForm(forms.ModelForm):
    class Meta:
        model = Profile
        fields = ["email_results"]


class StyleChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return obj.local_name


def offered_style_field() -> StyleChoiceField:
    """The style a user picks: one of ``style_list_offered``, by slug, as radio buttons."""
    return StyleChoiceField(
        label=_("Style"),
        queryset=style_list_offered(),
        to_field_name="slug",
        empty_label=None,
        widget=forms.RadioSelect,
        error_messages={"invalid_choice": _("That style is not available. Please pick another.")},
    )


STROKE_HINTS = {
    Stroke.FINE: _("small, detailed strokes"),
    Stroke.MEDIUM: _("balanced"),
    Stroke.BOLD: _("big, broad strokes"),
}
STROKE_CHOICES = [
    (value, format_lazy(_("{label} ({hint}; painted at {side} px)"), label=label,
                        hint=STROKE_HINTS[value], side=STROKE_WORKING_SIDES[value]))
    for value, label in Stroke.choices
]


class UploadForm(forms.Form):
    """A job: the photo (an upload, or a preview's: ``preview``), the style and options.

    ``previews``: the asker's previews (``selectors.preview_list_for``); a ``preview``
    outside them (someone else's, or expired) is refused with a readable error.
    ``user``: who asks; the styles offered are ``selectors.style_list_usable(user)`` (their
    own learnt styles among them).
    """

    image = forms.FileField(
        label=_("Your photo"),
        required=False,  # a preview's photo (``preview``) is used without uploading it again
        validators=[validate_photo_upload],  # shared with the API
        help_text=format_lazy(_("{formats} (an iPhone's photos as they are)."),
                              formats=ALLOWED_NAMES),
        widget=forms.FileInput(attrs={"accept": UPLOAD_ACCEPT, "class": "file-input"}),
    )
    style = offered_style_field()
    strength = forms.FloatField(
        label=_("Strength"),
        min_value=0.0,
        max_value=1.0,
        initial=1.0,
        help_text=_("0 keeps your photo, 1 paints it fully."),
        widget=forms.NumberInput(attrs={"type": "range", "step": "0.05", "min": "0", "max": "1"}),
    )
    preserve_colors = forms.BooleanField(
        label=_("Preserve my photo's colours"), required=False, initial=False
    )
    max_side = forms.TypedChoiceField(
        label=_("Size of the result"),
        choices=MAX_SIDE_CHOICES,
        coerce=int,
        initial=DEFAULT_MAX_SIDE,
        help_text=_("The longer side, in pixels. Larger photos take longer."),
    )
    # The mix and the strokes are checked by services.jobs.job_mix_clean, as in the API.
    blend_with = forms.CharField(
        label=_("Mix in a second style"),
        required=False,
        widget=forms.Select,
        help_text=_("Only styles that share a network with the first can be mixed."),
    )
    blend = forms.FloatField(
        label=_("Share of the second style"),
        required=False,
        initial=DEFAULT_BLEND,
        help_text=_("0 is only the first style, 1 only the second. Used when a second style "
                    "is chosen."),
        widget=forms.NumberInput(attrs={"type": "range", "step": "0.05", "min": "0", "max": "1"}),
    )
    stroke = forms.CharField(
        label=_("Brush strokes"),
        required=False,
        initial=DEFAULT_STROKE,
        widget=forms.RadioSelect(choices=STROKE_CHOICES),
    )
    # Set by previews.js once the photo's preview exists: the job uses its photo.
    preview = forms.UUIDField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, previews=None, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.previews = previews
        # A fresh queryset per form, so a style made ready a moment ago is offered.
        self.fields["style"].queryset = style_list_usable(user)
        self.fields["image"].widget.attrs["data-max-bytes"] = upload_max_bytes()
        self.mixable_styles = style_list_mixable(user)
        self.allowed_names = ALLOWED_NAMES  # what upload.js names in its messages

    def clean_preview(self):
        """The asker's ``Preview`` (None if none was named, or it is not theirs or gone)."""
        preview_id = self.cleaned_data.get("preview")
        if preview_id is None:
            return None
        previews = self.previews if self.previews is not None else Preview.objects.none()
        preview = previews.filter(pk=preview_id).first()
        self.preview_gone = preview is None
        return preview

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("preview") is None and not cleaned.get("image") \
                and "image" not in self.errors:
            self.add_error("image", _(
                "The preview of your photo has expired (previews are kept for an hour). "
                "Please choose the photo again.") if getattr(self, "preview_gone", False)
                else self.fields["image"].error_messages["required"])
        style = cleaned.get("style")
        if style is None:  # its own error is shown
            return cleaned
        blend_with = cleaned.get("blend_with") or None
        try:
            mix = job_mix_clean(
                style=style,
                blend_with=blend_with,
                # The slider always sends a value; without a second style it means nothing.
                blend=cleaned.get("blend") if blend_with else None,
                stroke=cleaned.get("stroke") or None,
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                self.add_error(field, messages)
            return cleaned
        cleaned.update(blend_with=mix.blend_with, blend=mix.blend, stroke=mix.stroke)
        return cleaned


class JobAgainForm(forms.Form):
    """A new job of an earlier job's photo (the job page's "Try another style" and
    strength): the style, its strength and mix; the photo's size, strokes and colours
    are the earlier job's (``previews.job_create_from_job``)."""

    style = offered_style_field()
    strength = forms.FloatField(
        label=_("Strength"), min_value=0.0, max_value=1.0, initial=1.0,
        help_text=_("0 keeps your photo, 1 paints it fully."),
        widget=forms.NumberInput(attrs={"type": "range", "step": "0.05", "min": "0", "max": "1"}),
    )
    blend_with = forms.CharField(label=_("Mix in a second style"), required=False,
                                 widget=forms.Select)
    blend = forms.FloatField(
        label=_("Share of the second style"), required=False, initial=DEFAULT_BLEND,
        widget=forms.NumberInput(attrs={"type": "range", "step": "0.05", "min": "0", "max": "1"}),
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["style"].queryset = style_list_usable(user)
        self.mixable_styles = style_list_mixable(user)

    def clean(self):
        cleaned = super().clean()
        style = cleaned.get("style")
        if style is None:
            return cleaned
        blend_with = cleaned.get("blend_with") or None
        try:
            mix = job_mix_clean(style=style, blend_with=blend_with,
                                blend=cleaned.get("blend") if blend_with else None)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
            return cleaned
        cleaned.update(blend_with=mix.blend_with, blend=mix.blend)
        return cleaned


class OwnStyleForm(forms.Form):
    """A painting of the person's own to learn as a style, and its name (checked by
    ``services.own_styles.own_style_create``, as in the API)."""

    name = forms.CharField(
        label=_("Name"), max_length=100,
        help_text=_("What you will see it called on the upload page."),
        widget=forms.TextInput(attrs={"autocomplete": "off"}))
    painting = forms.FileField(
        label=_("Your painting"),
        validators=[validate_photo_upload],  # the photos' own limits and formats
        help_text=format_lazy(_("{formats}. A painting, a drawing, a poster: its colours and "
                                "brush strokes become the style."), formats=ALLOWED_NAMES),
        widget=forms.FileInput(attrs={"accept": UPLOAD_ACCEPT, "class": "file-input"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["painting"].widget.attrs["data-max-bytes"] = upload_max_bytes()
