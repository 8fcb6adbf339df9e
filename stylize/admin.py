import math
from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format, number_format
from django.utils.html import conditional_escape, format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from .loss_curves import loss_curves_svg
from .models import Style, StyleJob
from .services.styles import (
    RetrainRefused,
    StylePublishRefused,
    style_publish,
    style_publish_refusal,
    styles_retrain,
)
from .services.training import training_config
from .services.training_progress import PROGRESS_SAVE_SECONDS

#: While a run goes on, the Training section of a style's page updates this often (s).
TRAINING_REFRESH_SECONDS = 10
#: A running record not updated for this long is flagged: its worker may be gone.
TRAINING_STALE_AFTER = timedelta(minutes=15)

REVIEW_FIELDS = ["publication", "heldout_review"]
TRAINING_FIELDS = ["training_state", "training_step", "training_losses", "training_time",
                   "training_sample_image", "training_curves", "training_sheet_image"]

STATES = {
    "running": _("Running"),
    "succeeded": _("Finished"),
    "failed": _("Failed"),
}


def _thumbnail(image_field):
    if not image_field:
        return "—"
    return format_html('<img src="{}" alt="" class="style-thumbnail">', image_field.url)


def _text(value):
    """``value`` escaped, ``=`` too: text a run wrote (an error, a term name) can never
    read like an attribute (``onload=``) to anything scanning the page."""
    return mark_safe(conditional_escape(str(value)).replace("=", "&#61;"))


def _progress(obj) -> dict:
    return obj.training_progress if isinstance(obj.training_progress, dict) else {}


#: Units of ``_number``, largest first.
_NUMBER_UNITS = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def _number(value) -> str | None:
    """A loss or score in three significant digits with a unit for thousands, millions,
    billions (12.3k for 12 345, 2.83M for 2 830 000, 976k, 0.0123), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    rounded = float(f"{value:.3g}")  # first: 999 950 is 1M, never "1e+03k"
    for factor, unit in _NUMBER_UNITS:
        if abs(rounded) >= factor:
            return f"{rounded / factor:.3g}{unit}"
    return f"{rounded:.3g}"


def _duration(seconds) -> str | None:
    """``seconds`` as '2 h 05 min', '4 min 10 s' or '12 s'."""
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        return None
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return gettext("%(hours)d h %(minutes)02d min") % {"hours": hours, "minutes": minutes}
    if minutes:
        return gettext("%(minutes)d min %(seconds)02d s") % {"minutes": minutes, "seconds": secs}
    return gettext("%(seconds)d s") % {"seconds": secs}


def _when(value) -> str | None:
    moment = parse_datetime(value) if isinstance(value, str) else None
    if moment is None:
        return None
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def _heldout(obj) -> dict:
    heldout = (obj.metrics or {}).get("heldout") if isinstance(obj.metrics, dict) else None
    return heldout if isinstance(heldout, dict) else {}


class PublicationFilter(admin.SimpleListFilter):
    """Drafts (what staff still have to review) apart from published styles."""

    title = _("publication")
    parameter_name = "publication"

    def lookups(self, request, model_admin):
        return [("draft", _("Draft (awaiting review)")), ("published", _("Published"))]

    def queryset(self, request, queryset):
        if self.value() == "draft":
            return queryset.filter(published_at__isnull=True)
        if self.value() == "published":
            return queryset.filter(published_at__isnull=False)
        return queryset


@admin.register(Style)
class StyleAdmin(admin.ModelAdmin):
    # Few and narrow enough for a 1280 px screen: the list takes the page's width (no
    # navigation sidebar, changelist_view), admin-training.css wraps the headings, and
    # the times are on each style's page.
    list_display = ["name", "painting_thumbnail", "status", "published", "network",
                    "heldout_content", "heldout_style", "heldout_style_ratio", "heldout_of",
                    "is_public"]
    list_filter = ["status", PublicationFilter, "is_public", "model_name"]
    search_fields = ["name", "slug", "model_name", "description"]
    prepopulated_fields = {"slug": ["name"], "model_name": ["name"]}
    # Bank slots change only by training (manage.py train_bank / train_style, Retrain).
    readonly_fields = ["bank_index", "bank_slots", "created_at", "updated_at", *REVIEW_FIELDS,
                       *TRAINING_FIELDS]

    def get_queryset(self, request):
        # Users' own styles are theirs alone (docs/design/own-styles.md): not staff's to
        # list, edit, retrain or publish.
        return super().get_queryset(request).filter(owner__isnull=True)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if "painting" in form.base_fields:  # blank only for own styles, never staff's
            form.base_fields["painting"].required = True
        return form

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.bank_index is not None:
            fields.append("model_name")  # the bank's: moving one slot out would break it
        else:
            # Never trained: no slot, so no version to pick, and a draft until training
            # (every network is a bank: only a slot can go live).
            fields += ["live_version", "status"]
        return fields

    def get_prepopulated_fields(self, request, obj=None):
        # A read-only field is not in the form: prefilling it would fail the page.
        readonly = set(self.get_readonly_fields(request, obj))
        return {field: sources for field, sources in
                super().get_prepopulated_fields(request, obj).items() if field not in readonly}
    actions = ["retrain", "publish"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "description", "name_zh", "description_zh",
                           "painting", "is_public"]}),
        # Whether users see it, and what staff look at before publishing it.
        (_("Review"), {"fields": REVIEW_FIELDS, "classes": ["review"]}),
        (_("Model"), {"fields": ["model_name", "bank_index", "bank_slots", "live_version", "status",
                              "status_reason"]}),
        (_("Live version"), {"fields": ["training_settings", "metrics", "sample"]}),
        # fieldset.training: stylize/static/stylize/admin-training.js updates it in place.
        (_("Training"), {"fields": TRAINING_FIELDS, "classes": ["training"]}),
        (_("Times"), {"fields": ["created_at", "updated_at"]}),
    ]

    class Media:
        css = {"all": ["stylize/admin-training.css"]}
        js = ["stylize/admin-training.js"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:  # a style being added has never trained nor been reviewed
            fieldsets = [fs for fs in fieldsets
                         if fs[1].get("classes") not in (["training"], ["review"])]
        return fieldsets

    def changelist_view(self, request, extra_context=None):
        # The style list is wide (numbers per style): it gets the whole page.
        return super().changelist_view(
            request, {"is_nav_sidebar_enabled": False, **(extra_context or {})})

    def get_urls(self):
        publish = path("<path:object_id>/publish/", self.admin_site.admin_view(self.publish_view),
                       name="stylize_style_publish")
        return [publish, *super().get_urls()]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.save()  # published_at is not in the form: a style added here is a draft
            return
        # Only the form's fields that differ from the row: a running training writes
        # training_progress/_sample/_sheet (not in the form) at any moment.
        concrete = {field.name for field in obj._meta.concrete_fields}
        fields = [*(n for n in form.changed_data if n in concrete), "updated_at"]
        if "live_version" in fields and obj.published_at is not None:
            # Another version than the one staff published: a draft again.
            obj.published_at = None
            fields.append("published_at")
        obj.save(update_fields=fields)

    @admin.action(description=_("Retrain the selected styles (training queue; a bank style "
                                "retrains only its own slot)"))
    def retrain(self, request, queryset):
        # The task builds the config from the settings in force where it runs.
        config = training_config()
        try:
            queued = styles_retrain(styles=queryset, config=config)
        except RetrainRefused as refusal:  # it would fail at once: say what to run
            self.message_user(request, str(refusal), messages.ERROR)
            return
        self.message_user(
            request,
            gettext("Queued training for %(count)d style(s) (%(preset)s preset, %(steps)d steps "
                    "on %(data)s).") % {"count": queued, "preset": config.preset,
                                        "steps": config.steps, "data": config.data_dir},
            messages.SUCCESS,
        )

    @admin.action(description=_("Publish the selected styles (each needs a held-out "
                                "evaluation of its live version)"), permissions=["change"])
    def publish(self, request, queryset):
        published = self._publish(request, list(queryset))
        if published:
            self.message_user(
                request, gettext("Published %(count)d style(s): users see those that are "
                                 "public.") % {"count": len(published)}, messages.SUCCESS)

    def publish_view(self, request, object_id):
        """The Publish button of a style's page (POST only): back to the page, which says
        whether it was published or why not."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        style = self.get_object(request, unquote(object_id))
        if style is None:
            raise Http404
        if not self.has_change_permission(request, style):
            raise PermissionDenied
        if self._publish(request, [style]):
            text = (gettext("%(style)s is published: users see it now.") if style.is_public
                    else gettext("%(style)s is published, but users do not see it until "
                                 "“Is public” is ticked."))
            self.message_user(request, text % {"style": style.name}, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:stylize_style_change", args=[style.pk]))

    def _publish(self, request, styles) -> list[Style]:
        """Publish each of ``styles`` (``style_publish``); a refusal is shown as an error.
        Returns the styles published (or published already)."""
        published = []
        for style in styles:
            try:
                fresh = style_publish(style=style)
            except StylePublishRefused as refusal:
                self.message_user(request, str(refusal), messages.ERROR)
                continue
            if style.published_at is None:
                self.log_change(request, fresh, gettext("Published version %(version)s.")
                                % {"version": fresh.live_version})
            published.append(fresh)
        return published

    # Not named "painting": the list would take the model field (a file link) instead.
    @admin.display(description=pgettext_lazy("artwork", "Painting"))
    def painting_thumbnail(self, obj):
        return _thumbnail(obj.painting)

    @admin.display(description=_("Published"), boolean=True, ordering="published_at")
    def published(self, obj):
        return obj.is_published

    @admin.display(description=_("Network"), ordering="model_name")
    def network(self, obj):
        """The model's name with its slot and live version (``Style.paint_slot``), or
        "untrained"."""
        slot = obj.paint_slot
        if slot is None:
            return gettext("%(model)s, %(version)s") % {"model": obj.model_name,
                                                       "version": gettext("untrained")}
        return gettext("%(model)s, slot %(slot)s, %(version)s") % {
            "model": slot.model, "slot": slot.index,
            "version": gettext("v%(version)s") % {"version": slot.version}}

    # --- Review: publication, and the held-out numbers and sheet staff judge by -----------

    @admin.display(description=_("Publication"))
    def publication(self, obj):
        if obj.published_at is not None:
            when = date_format(timezone.localtime(obj.published_at), "DATETIME_FORMAT")
            text = (gettext("Published %(time)s: users see version %(version)s.")
                    if obj.is_public else
                    gettext("Published %(time)s, but hidden from users (“Is public” is off)."))
            return text % {"time": when, "version": obj.live_version}
        draft = format_html("<strong>{}</strong>", gettext(
            "Draft: users do not see this style until it is published."))
        if refusal := style_publish_refusal(style=obj):
            return format_html("{}<br>{}", draft, refusal)
        # Inside the change form (forms cannot nest): the button posts it to the publish URL.
        return format_html(
            '{}<br><button type="submit" class="button" formaction="{}" formmethod="post" '
            "formnovalidate>{}</button>", draft,
            reverse("admin:stylize_style_publish", args=[obj.pk]),
            gettext("Publish version %(version)s") % {"version": obj.live_version})

    @admin.display(description=_("Held-out evaluation"))
    def heldout_review(self, obj):
        heldout = _heldout(obj)
        if not heldout:
            return gettext("Not evaluated on held-out photos yet.")
        empty = self.get_empty_value_display()
        rows = [(self.heldout_of.short_description, _text(self.heldout_of(obj) or empty)),
                (self.heldout_content.short_description, self.heldout_content(obj) or empty),
                (self.heldout_style.short_description, self.heldout_style(obj) or empty),
                (self.heldout_style_ratio.short_description,
                 self.heldout_style_ratio(obj) or empty)]
        table = format_html(
            '<table class="heldout-numbers"><tbody>{}</tbody></table>',
            format_html_join("", '<tr><th scope="row">{}</th><td class="number">{}</td></tr>',
                             rows))
        if not obj.training_sheet or heldout.get("sheet") != obj.training_sheet.name:
            return table
        return format_html("{}{}", table, _figure(obj.training_sheet.url, gettext(
            "%(photos)s held-out photos (top) in version %(version)s (below).") % {
            "photos": heldout.get("photos", "?"), "version": heldout.get("version", "?")}))

    # --- Held-out numbers (manage.py evaluate_style) in the list ---------------------------

    @admin.display(description=_("Held-out content"))
    def heldout_content(self, obj):
        return _number(_heldout(obj).get("losses", {}).get("content"))

    @admin.display(description=_("Held-out style"))
    def heldout_style(self, obj):
        return _number(_heldout(obj).get("losses", {}).get("style"))

    @admin.display(description=_("Style ratio"))
    def heldout_style_ratio(self, obj):
        """ml.quality's style distance ratio: below 1, the results moved towards the painting."""
        return _number(_heldout(obj).get("quality", {}).get("style_distance_ratio"))

    @admin.display(description=_("Held-out of"))
    def heldout_of(self, obj):
        heldout = _heldout(obj)
        if not heldout:
            return None
        photos = heldout.get("photos", "?")
        if heldout.get("version") is None:  # measured before versions were recorded
            return gettext("%(photos)s photos (version not recorded)") % {"photos": photos}
        text = gettext("v%(version)s, %(photos)s photos") % {
            "version": heldout["version"], "photos": photos}
        if heldout["version"] != obj.live_version:
            text += " " + gettext("(not the live version)")
        return text

    # --- The Training section of a style's page ------------------------------------------

    @admin.display(description=_("State"))
    def training_state(self, obj):
        progress = _progress(obj)
        state = progress.get("state")
        if state not in STATES:
            return gettext("No run recorded yet.")
        parts = [format_html("<strong>{}</strong>", STATES[state])]
        if started := _when(progress.get("started_at")):
            parts.append(_text(gettext("started %(time)s") % {"time": started}))
        if finished := _when(progress.get("finished_at")):
            parts.append(_text(gettext("ended %(time)s") % {"time": finished}))
        html = format_html_join(" · ", "{}", ((part,) for part in parts))
        if state == "failed" and progress.get("reason"):
            html = format_html("{}<br>{}", html, _text(progress["reason"]))
        if state == "running":
            html = format_html(
                '{}<br><span class="training-live" data-training-refresh="{}">{}</span>',
                html, TRAINING_REFRESH_SECONDS,
                gettext("This section updates itself every %(seconds)d s (the run reports at "
                        "most every %(every)d s).") % {"seconds": TRAINING_REFRESH_SECONDS,
                                                       "every": PROGRESS_SAVE_SECONDS})
            updated = parse_datetime(progress.get("updated_at") or "")
            if updated is not None and timezone.now() - updated > TRAINING_STALE_AFTER:
                html = format_html(
                    '{}<br><strong class="training-stale">{}</strong>', html,
                    gettext("No news from the run since %(time)s: its worker may have stopped.")
                    % {"time": _when(progress["updated_at"])})
        return html

    @admin.display(description=_("Step"))
    def training_step(self, obj):
        progress = _progress(obj)
        step, steps = progress.get("step"), progress.get("steps")
        if not isinstance(step, int) or not isinstance(steps, int) or steps <= 0:
            return self.get_empty_value_display()
        share = min(1.0, max(0.0, step / steps))
        return format_html(
            '<progress class="training-progress" max="{}" value="{}">{} %</progress> {}',
            steps, step, round(100 * share),
            gettext("%(step)s of %(steps)s steps (%(percent)s %%)") % {
                "step": number_format(step, force_grouping=True),
                "steps": number_format(steps, force_grouping=True),
                "percent": round(100 * share)})

    @admin.display(description=_("Loss terms"))
    def training_losses(self, obj):
        progress = _progress(obj)
        losses = progress.get("losses")
        if not isinstance(losses, dict) or not losses:
            return self.get_empty_value_display()
        rows = format_html_join("", '<tr><th scope="row">{}</th><td class="number">{}</td></tr>',
                                ((_text(name), _number(value) or "—")
                                 for name, value in losses.items()))
        return format_html(
            '<table class="training-losses"><caption>{}</caption><thead><tr>'
            '<th scope="col">{}</th><th scope="col">{}</th></tr></thead><tbody>{}</tbody></table>',
            gettext("At step %(step)s") % {"step": progress.get("step", "?")},
            gettext("Term"), gettext("Value"), rows)

    @admin.display(description=_("Time"))
    def training_time(self, obj):
        progress = _progress(obj)
        spent = _duration(progress.get("seconds"))
        if spent is None:
            return self.get_empty_value_display()
        if progress.get("state") != "running":
            return gettext("Trained for %(spent)s") % {"spent": spent}
        left = _duration(progress.get("seconds_left"))
        if left is None:
            return gettext("Trained for %(spent)s; time left: estimated after a few steps") % {
                "spent": spent}
        return gettext("Trained for %(spent)s; about %(left)s left") % {
            "spent": spent, "left": left}

    @admin.display(description=_("Latest sample"))
    def training_sample_image(self, obj):
        if not obj.training_sample:
            return self.get_empty_value_display()
        step = _progress(obj).get("sample_step")
        caption = (gettext("Sample photos (top) painted at step %(step)s (below).")
                   % {"step": step} if step is not None else gettext("The latest sample."))
        return _figure(obj.training_sample.url, caption)

    @admin.display(description=_("Loss curves"))
    def training_curves(self, obj):
        history = _progress(obj).get("history")
        svg = loss_curves_svg(history if isinstance(history, list) else [],
                              title=gettext("Loss per step"), id_prefix="training-curves")
        # Numbers and escaped labels only (stylize.loss_curves).
        return mark_safe(svg) if svg else self.get_empty_value_display()

    @admin.display(description=_("Contact sheet"))
    def training_sheet_image(self, obj):
        progress = _progress(obj)
        if not obj.training_sheet or progress.get("state") == "running":
            return self.get_empty_value_display()  # shown once the run ended
        heldout = _heldout(obj)
        if heldout.get("sheet") == obj.training_sheet.name:
            caption = gettext("%(photos)s held-out photos (top) in version %(version)s "
                              "(below).") % {"photos": heldout.get("photos", "?"),
                                             "version": heldout.get("version", "?")}
        elif progress.get("sheet_step") is not None:
            caption = gettext("The last finished run's sample photos (top) at step %(step)s "
                              "(below).") % {"step": progress["sheet_step"]}
        else:
            caption = gettext("The last finished run's contact sheet.")
        return _figure(obj.training_sheet.url, caption)


def _figure(url: str, caption: str):
    return format_html('<figure class="training-figure"><a href="{0}"><img src="{0}" alt="{1}" '
                       'class="training-image"></a><figcaption>{1}</figcaption></figure>',
                       url, caption)


@admin.register(StyleJob)
class StyleJobAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "style", "blend_with", "stroke", "status", "attempts",
                    "created_at", "finished_at"]
    list_filter = ["status", "style", "stroke", "preserve_colors"]
    search_fields = ["id", "owner__username", "owner__email", "style__name", "error"]
    list_select_related = ["owner", "style"]
    # Users' photos and results are private (stylize.storage): staff see that they
    # exist, not what they show, and cannot replace them.
    exclude = ["input_image", "result_image"]
    readonly_fields = [
        "id", "photo", "input_filename", "result", "created_at", "enqueued_at", "started_at",
        "finished_at", "emailed_at", "attempts",
    ]
    date_hierarchy = "created_at"
    raw_id_fields = ["owner"]

    def has_add_permission(self, request):
        return False  # a job starts from a user's upload

    @admin.display(description=_("Photo"))
    def photo(self, obj):
        return gettext("stored (private)") if obj.input_image else "—"

    @admin.display(description=_("Result"))
    def result(self, obj):
        return gettext("stored (private)") if obj.result_image else "—"
