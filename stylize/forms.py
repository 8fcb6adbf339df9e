"""Forms of the web pages: sign-up, log-in, profile and the photo upload."""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm

from .models import DEFAULT_MAX_SIDE, Profile
from .selectors import style_list_offered
from .validators import ALLOWED_FORMATS, upload_max_bytes, validate_photo_upload

ALLOWED_CONTENT_TYPES = tuple(dict.fromkeys(t for t, _ in ALLOWED_FORMATS.values()))
MAX_SIDE_CHOICES = [
    (512, "Small (512 px)"),
    (1024, "Medium (1024 px)"),
    (2048, "Large (2048 px)"),
    (4096, "Huge (4096 px, slow)"),
]


class SignupForm(UserCreationForm):
    """Sign up with an email address and a password; the address is the username."""

    email = forms.EmailField(
        label="Email",
        max_length=150,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
        help_text="We send your results and password resets here, and nowhere else.",
    )

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ["email"]

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        users = get_user_model().objects
        if users.filter(email__iexact=email).exists() or users.filter(
            username__iexact=email
        ).exists():
            raise forms.ValidationError("An account with this email address already exists.")
        return email

    def save(self, commit=True):
        user = super().save(commit=False)
        user.email = user.username = self.cleaned_data["email"]
        if commit:
            user.save()
        return user


class LoginForm(AuthenticationForm):
    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields["username"].label = "Email or username"


class ProfileForm(forms.ModelForm):
    class Meta:
        model = Profile
        fields = ["email_results"]


class StyleChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return obj.name


class UploadForm(forms.Form):
    image = forms.FileField(
        label="Your photo",
        validators=[validate_photo_upload],  # shared with the API
        help_text="JPEG, PNG or WebP.",
        widget=forms.FileInput(
            attrs={"accept": ",".join(ALLOWED_CONTENT_TYPES), "class": "file-input"}
        ),
    )
    style = StyleChoiceField(
        label="Style",
        queryset=style_list_offered(),
        to_field_name="slug",
        empty_label=None,
        widget=forms.RadioSelect,
        error_messages={"invalid_choice": "That style is not available. Please pick another."},
    )
    strength = forms.FloatField(
        label="Strength",
        min_value=0.0,
        max_value=1.0,
        initial=1.0,
        help_text="0 keeps your photo, 1 paints it fully.",
        widget=forms.NumberInput(attrs={"type": "range", "step": "0.05", "min": "0", "max": "1"}),
    )
    preserve_colors = forms.BooleanField(
        label="Preserve my photo's colours", required=False, initial=False
    )
    max_side = forms.TypedChoiceField(
        label="Size of the result",
        choices=MAX_SIDE_CHOICES,
        coerce=int,
        initial=DEFAULT_MAX_SIDE,
        help_text="The longer side, in pixels. Larger photos take longer.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A fresh queryset per form, so a style made ready a moment ago is offered.
        self.fields["style"].queryset = style_list_offered()
        self.fields["image"].widget.attrs["data-max-bytes"] = upload_max_bytes()
