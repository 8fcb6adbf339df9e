import math
from pathlib import Path

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpResponse
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import SAFE_METHODS, AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from ..downloads import UnknownDownloadFormat, result_file_response
from ..imaging import encoding, loading
from ..models import MAX_MAX_SIDE, Preview, PreviewImage, StyleJob
from ..preview_sessions import session_preview_ids, session_preview_remember
from ..selectors import (
    job_list_for_owner,
    own_style_list_for,
    preview_images,
    preview_list_for,
    style_list_offered,
    style_list_visible,
)
from ..services import accounts, jobs, own_styles, previews, sharing
from ..services.job_files import DOWNLOAD_CHOICES, DOWNLOAD_FORMATS
from ..storage import private_file_response
from .serializers import (
    JobCreateSerializer,
    JobSerializer,
    JobShareSerializer,
    OwnStyleCreateSerializer,
    PreviewCreateSerializer,
    PreviewImageSerializer,
    PreviewPaintSerializer,
    PreviewSerializer,
    StyleSerializer,
)
from .throttles import (
    AuthTokenThrottle,
    JobCreateThrottle,
    PreviewAnonymousThrottle,
    PreviewCreateThrottle,
    PreviewPaintThrottle,
)

WEBHOOK_DESCRIPTION = """Give `callback_url` to be called back instead of polling.

**When**: once the job has ended, succeeded or failed.

**What**: `POST <callback_url>` with `Content-Type: application/json` and the job as
`GET /api/v1/jobs/<id>/` shows it (the same fields, `result_url` absolute, less
`callback_delivered_at` and `callback_error`: the body is the same at every attempt), and
the headers

- `X-Prisma-Signature: sha256=<hex>`: the HMAC-SHA256 of the exact body under your
  webhook secret (shown on your profile page, where you can rotate it);
- `X-Prisma-Event`: `job.succeeded` or `job.failed`;
- `X-Prisma-Delivery`: a new id for each attempt.

**Verify** before trusting the body: compute `hmac_sha256(secret, raw_body)` in hex and
compare it with the header's value in constant time (Python:
`hmac.compare_digest(header, "sha256=" + hmac.new(secret.encode(), body,
hashlib.sha256).hexdigest())`).

**Delivery**: any 2xx answer within a few seconds (`WEBHOOK_TIMEOUT`, 5 by default) is a
delivery, and the job gets `callback_delivered_at`; anything else (a timeout, a 5xx, a
4xx, a redirect: redirects are not followed) is retried with exponential backoff, up to
`WEBHOOK_MAX_ATTEMPTS` attempts, the last failure in `callback_error`. Once delivered a
job's webhook is never sent again; in the rare case of a worker lost mid-send it may
come twice, so treat the job's `id` as the key of the event.

**Addresses**: `callback_url` must be `https://`, with no user name or password, and its
host must resolve only to public addresses: loopback, private, shared, link-local (the
cloud metadata address 169.254.169.254 among them), reserved and multicast addresses, in
IPv4 or IPv6, are refused with a 400 here, and checked again when the webhook is sent.
"""


JOB_SOURCE_DESCRIPTION = """**The photo** is one of: `image` (an upload); `preview`, the id
of one of your previews (`POST /api/v1/previews/`), whose photo is used without
uploading it again; or `source_job`, the id of one of your jobs, whose photo is painted
again (left out, `style`, `max_side`, `stroke` and `preserve_colors` are that job's).
The same limits apply whichever it is (`JOB_MAX_IN_FLIGHT_PER_USER`, the creation rate).

"""

PREVIEW_DESCRIPTION = """A preview is your photo painted small (about 320 px on the
longer side) in every offered style, before any job: upload it once as `image`, or name
one of your jobs as `source_job` to paint its photo. The answer has the preview's `id`;
poll `GET /api/v1/previews/<id>/` (every 0.25–1 s) until `done`: each style's `status`
is `queued`, `done` or `failed`, with an `image_url` (JPEG, or `?format=png`) that only
you can open. `POST /api/v1/previews/<id>/styles/<slug>/` paints one style again at
another `strength` or mix. Make the full-size job with `POST /api/v1/jobs/` and
`preview=<id>` instead of `image`. A preview, its photo and paintings are deleted an
hour after it was made.

**Without an account** (the site's pages, with their session cookie and CSRF token) a
client address may make one preview every few minutes (`PREVIEW_ANONYMOUS_RATE`), seen
only by that browser session; signing up or logging in there makes it the account's.
With an account: `PREVIEW_CREATE_RATE` previews and `PREVIEW_PAINT_RATE` re-paints.
Over a rate: 429 with `Retry-After` and a `detail` saying when to try again.
"""


def _throttled(throttle, message: str) -> exceptions.Throttled:
    """A 429 whose ``detail`` is ``message`` alone, with ``Retry-After`` from ``throttle``."""
    refusal = exceptions.Throttled(detail=message)
    refusal.wait = max(1, math.ceil(throttle.wait() or 1))  # DRF's handler sends it
    return refusal


def _minutes(throttle) -> int:
    return max(1, math.ceil((throttle.wait() or 60) / 60))


def preview_image_response(image: PreviewImage, *, format_name: str | None):
    """A painting of a preview for its owner: JPEG as stored, or PNG (``?format=png``)
    encoded from it; never cached, never sniffed."""
    format_name = (format_name or "jpeg").lower()
    filename = f"prisma-preview-{image.style.slug}"
    if format_name in ("jpeg", "jpg"):
        return private_file_response(image.image, filename=f"{filename}.jpg")
    if format_name != "png":
        raise exceptions.ValidationError({"format": [_("A preview comes as jpeg or png.")]})
    with image.image.open("rb") as stored:
        # Our own JPEG, never scaled down here.
        array = loading.load_photo(stored, max_side=MAX_MAX_SIDE,
                                   formats=(encoding.RESULT_FORMAT,))
    response = HttpResponse(encoding.encode_image(array, format="PNG"), content_type="image/png")
    response["Content-Disposition"] = f'inline; filename="{filename}.png"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


class CreatedResponseMixin:
    """For a viewset whose ``create`` makes its object through a service."""

    def created_response(self, instance) -> Response:
        """201: ``instance`` as ``retrieve`` shows it (``serializer_class``), with its
        ``Location`` (the router's ``api:<basename>-detail`` by ``lookup_field``)."""
        data = self.serializer_class(instance, context=self.get_serializer_context()).data
        url = reverse(f"api:{self.basename}-detail", args=[getattr(instance, self.lookup_field)])
        return Response(data, status=status.HTTP_201_CREATED,
                        headers={"Location": self.request.build_absolute_uri(url)})


class JobPagination(PageNumberPagination):
    page_size = 20


class TooManyJobsInFlight(exceptions.APIException):
    """429: the user already has JOB_MAX_IN_FLIGHT_PER_USER jobs queued or running."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "too_many_jobs_in_flight"


OWN_STYLE_DESCRIPTION = """Upload a painting of yours (a painting, a drawing, a poster) as
`painting` with a `name`: it is learnt as a style of your own on the training worker, in
minutes, then you use it like any style (`style=<slug>` in a job or a preview, with
`strength`, `stroke` and a mix with a style of the same bank: its `mixes_with`), and
nobody else sees it: to anyone else it is a 404. Poll `GET /api/v1/styles/<slug>/`: its
`status` goes `queued`, `learning` (with `progress`: step, steps, seconds_left), then
`ready` (or `failed`, with `error`). `DELETE` removes it (jobs made with it keep their
results).

The painting goes through the photos' checks (formats, `UPLOAD_MAX_BYTES`,
`UPLOAD_MAX_PIXELS`) and needs `OWN_STYLE_MIN_SIDE` px a side; one that is unreadable or
a single colour is refused before any training (`failed`, with the reason). One style of
yours is learnt at a time (`OWN_STYLE_MAX_IN_FLIGHT_PER_USER`) and at most
`OWN_STYLE_DAILY_LIMIT` are made a day: over either, 429 with a `detail` saying which.
Own styles need a live bank of styles on the server: without one, 503 saying so.
"""


class OwnStylesUnavailableError(exceptions.APIException):
    """503: own styles cannot be learnt on this server now (no live bank)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "own_styles_unavailable"


class TooManyOwnStyles(exceptions.APIException):
    """429: a style of the user's is still being learnt, or the daily limit is reached."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "too_many_own_styles"


@extend_schema_view(
    list=extend_schema(summary="The styles you can use (with your own, signed in)",
                       auth=[{"tokenAuth": []}, {"cookieAuth": []}, {}]),
    retrieve=extend_schema(summary="One style (one of your own: its status and progress)",
                           auth=[{"tokenAuth": []}, {"cookieAuth": []}, {}]),
    create=extend_schema(
        summary="Learn a painting of yours as your own style", description=OWN_STYLE_DESCRIPTION,
        request={"multipart/form-data": OwnStyleCreateSerializer},
        responses={201: StyleSerializer,
                   400: OpenApiResponse(description="Not a painting we take, too small, or a "
                                        "name you already use"),
                   429: OpenApiResponse(description="A style of yours is still being learnt, "
                                        "or you made the most for today"),
                   503: OpenApiResponse(description="Own styles need a live bank, which this "
                                        "server does not have now")}),
    destroy=extend_schema(summary="Delete one of your own styles (jobs keep their results)"),
)
class StyleViewSet(CreatedResponseMixin, mixins.CreateModelMixin, mixins.ListModelMixin,
                   mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Public styles with a trained model that staff published (no draft), which anyone may
    read, and the asker's own (``selectors.style_list_visible``); anyone else's own style
    is a 404."""

    serializer_class = StyleSerializer
    lookup_field = "slug"
    parser_classes = [MultiPartParser, FormParser]

    def get_permissions(self):
        if self.action in ("list", "retrieve"):
            return [AllowAny()]
        return [IsAuthenticated()]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return style_list_offered()
        if self.action in ("list", "retrieve"):
            return style_list_visible(self.request.user)
        return own_style_list_for(owner=self.request.user)  # delete, painting, sample

    def create(self, request, *args, **kwargs):
        form = OwnStyleCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            style = own_styles.own_style_create(owner=request.user, **form.validated_data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        except own_styles.OwnStylesUnavailable as exc:
            raise OwnStylesUnavailableError(str(exc)) from exc
        except own_styles.OwnStyleLimitExceeded as exc:
            raise TooManyOwnStyles(str(exc)) from exc
        return self.created_response(style)

    def perform_destroy(self, instance):
        own_styles.own_style_delete(style=instance)

    @extend_schema(summary="The painting of one of your own styles",
                   responses={(200, "image/*"): OpenApiTypes.BINARY,
                              404: OpenApiResponse(description="Not your own style")})
    @action(detail=True, methods=["get"], url_path="painting")
    def painting(self, request, slug=None):
        style = self.get_object()
        if not style.private_painting:
            raise Http404(_("No such image."))
        return private_file_response(style.private_painting, filename=f"painting-{style.slug}"
                                     f"{Path(style.private_painting.name).suffix}")

    @extend_schema(summary="The latest sample the learning of one of your own styles painted",
                   responses={(200, "image/png"): OpenApiTypes.BINARY,
                              404: OpenApiResponse(description="Not your own style, or no "
                                                   "sample yet")})
    @action(detail=True, methods=["get"], url_path="sample")
    def sample(self, request, slug=None):
        style = self.get_object()
        if not style.private_sample:
            raise Http404(_("No such image."))
        return private_file_response(style.private_sample, filename=f"sample-{style.slug}.png")

    def perform_content_negotiation(self, request, force=False):
        # A client asking for image/* gets the picture; errors still come back as JSON.
        return super().perform_content_negotiation(
            request, force=force or self.action in ("painting", "sample"))


@extend_schema_view(
    list=extend_schema(summary="Your jobs, newest first"),
    retrieve=extend_schema(summary="One of your jobs (poll it until it has finished)"),
    create=extend_schema(
        summary="Upload a photo to repaint (or use a preview's or an earlier job's)",
        description=JOB_SOURCE_DESCRIPTION + WEBHOOK_DESCRIPTION,
        request={"multipart/form-data": JobCreateSerializer},
        responses={201: JobSerializer, 400: OpenApiResponse(description="Invalid input (a refused "
                                        "`callback_url` among it)"),
                   429: OpenApiResponse(description="Too many jobs created this hour, or "
                                        "too many still queued or running; try later")},
    ),
    destroy=extend_schema(summary="Delete one of your jobs and its images"),
)
class JobViewSet(
    CreatedResponseMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The user's own jobs; anyone else's job is a 404."""

    serializer_class = JobSerializer
    permission_classes = [IsAuthenticated]
    pagination_class = JobPagination
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return StyleJob.objects.none()
        return job_list_for_owner(owner=self.request.user)

    def get_serializer_class(self):
        return JobCreateSerializer if self.action == "create" else JobSerializer

    def get_throttles(self):
        return [JobCreateThrottle()] if self.action == "create" else []

    def create(self, request, *args, **kwargs):
        form = JobCreateSerializer(data=request.data, context=self.get_serializer_context())
        form.is_valid(raise_exception=True)
        choices = form.validated_data
        try:
            if choices.get("preview") is not None:
                job = previews.job_create_from_preview(owner=request.user,
                                                       preview=choices["preview"],
                                                       choices=choices)
            elif choices.get("source_job") is not None:
                job = previews.job_create_from_job(owner=request.user,
                                                   source_job=choices["source_job"],
                                                   choices=choices)
            else:
                job = jobs.job_create_from(owner=request.user, choices=choices)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(
                exc.message_dict if hasattr(exc, "error_dict") else exc.messages
            ) from exc
        except jobs.JobLimitExceeded as exc:
            raise TooManyJobsInFlight(str(exc)) from exc
        return self.created_response(job)

    def perform_destroy(self, instance):
        jobs.job_delete(job=instance)

    @extend_schema(
        summary="Download the result of one of your jobs",
        parameters=[OpenApiParameter(
            "format", str, enum=list(DOWNLOAD_CHOICES), required=False,
            description="The image format, at the result's full size (default jpeg, as "
            "stored).")],
        responses={
            **{(200, encoding.FORMAT_CONTENT_TYPES[DOWNLOAD_FORMATS[name]]): OpenApiTypes.BINARY
               for name in DOWNLOAD_CHOICES},
            400: OpenApiResponse(description="An unknown format"),
            404: OpenApiResponse(description="Not your job, or no result yet"),
        },
    )
    @action(detail=True, methods=["get"], url_path="result")
    def result(self, request, pk=None):
        """The repainted image (``result_url`` points here), for its owner only."""
        job = self.get_object()
        if job.status != StyleJob.Status.SUCCEEDED or not job.result_image:
            raise Http404(_("This job has no result yet."))
        try:
            return result_file_response(job, format_name=request.query_params.get("format"),
                                        download="download" in request.query_params)
        except UnknownDownloadFormat as exc:
            raise exceptions.ValidationError({"format": [str(exc)]}) from exc

    @extend_schema(
        methods=["POST"], request=None,
        summary="Share the result: a link anyone can open, until revoked or expired",
        description="Makes an unguessable link (a random token, not the job's id) that "
        "shows only the result and the style's name, for SHARE_LINK_DAYS (30 by "
        "default). Asked again while live, the same link with its time renewed.",
        responses={200: JobShareSerializer,
                   409: OpenApiResponse(description="The job has no result to share")},
    )
    @extend_schema(
        methods=["DELETE"], request=None, summary="Stop sharing: the link gives 404 from now",
        responses={204: OpenApiResponse(description="Revoked (or was not shared)")},
    )
    @action(detail=True, methods=["post", "delete"], url_path="share")
    def share(self, request, pk=None):
        job = self.get_object()
        if request.method == "DELETE":
            sharing.job_unshare(job=job)
            return Response(status=status.HTTP_204_NO_CONTENT)
        try:
            job = sharing.job_share(job=job)
        except sharing.NothingToShare as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        data = {"share_url": sharing.job_share_url(job), "expires_at": job.share_expires_at}
        return Response(JobShareSerializer(data).data)

    def perform_content_negotiation(self, request, force=False):
        # A client asking for image/* gets the file; errors still come back as JSON.
        return super().perform_content_negotiation(request, force=force or self.action == "result")



@extend_schema_view(
    create=extend_schema(
        summary="Paint a photo small in every style, before any job (a preview)",
        description=PREVIEW_DESCRIPTION,
        request={"multipart/form-data": PreviewCreateSerializer},
        auth=[{"tokenAuth": []}, {"cookieAuth": []}, {}],
        responses={201: PreviewSerializer,
                   400: OpenApiResponse(description="Not a photo we take, or not your job"),
                   429: OpenApiResponse(description="Too many previews; `detail` says when "
                                        "to try again")},
    ),
    retrieve=extend_schema(summary="One of your previews: every style's painting",
                           auth=[{"tokenAuth": []}, {"cookieAuth": []}, {}],
                           responses={200: PreviewSerializer,
                                      404: OpenApiResponse(description="Not yours, or gone")}),
    destroy=extend_schema(summary="Delete one of your previews with its photo and paintings",
                          auth=[{"tokenAuth": []}, {"cookieAuth": []}, {}]),
)
class PreviewViewSet(CreatedResponseMixin, mixins.CreateModelMixin,
                     mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The asker's previews (``selectors.preview_list_for``): a user's own, or without an
    account those of this browser session; anyone else's is a 404."""

    serializer_class = PreviewSerializer
    permission_classes = [AllowAny]
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Preview.objects.none()
        return preview_list_for(user=self.request.user,
                                session_preview_ids=session_preview_ids(self.request.session))

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.method not in SAFE_METHODS and not request.user.is_authenticated:
            # Without an account the session cookie is the credential: a page's CSRF
            # token goes with it, as with any form (DRF checks it only for a logged-in
            # session).
            SessionAuthentication().enforce_csrf(request)

    def create(self, request, *args, **kwargs):
        form = PreviewCreateSerializer(data=request.data, context=self.get_serializer_context())
        form.is_valid(raise_exception=True)  # a refused photo counts against no rate
        user = request.user if request.user.is_authenticated else None
        self._check_create_rate(request, anonymous=user is None)
        preview = previews.preview_create(owner=user, photo=form.validated_data.get("image"),
                                          source_job=form.validated_data.get("source_job"),
                                          language=translation.get_language() or "")
        if user is None:
            session_preview_remember(request.session, preview.pk)
        return self.created_response(preview)

    def _check_create_rate(self, request, *, anonymous: bool) -> None:
        if anonymous:
            throttle = PreviewAnonymousThrottle()
            if not throttle.allow_request(request, self):
                minutes = _minutes(throttle)
                raise _throttled(throttle, ngettext(
                    "Without an account, your address can preview one photo every few "
                    "minutes. Please try again in %(minutes)d minute, or sign up or log in "
                    "to preview more.",
                    "Without an account, your address can preview one photo every few "
                    "minutes. Please try again in %(minutes)d minutes, or sign up or log in "
                    "to preview more.", minutes) % {"minutes": minutes})
            return
        throttle = PreviewCreateThrottle()
        if not throttle.allow_request(request, self):
            minutes = _minutes(throttle)
            raise _throttled(throttle, ngettext(
                "You have made too many previews. Please try again in %(minutes)d minute.",
                "You have made too many previews. Please try again in %(minutes)d minutes.",
                minutes) % {"minutes": minutes})

    def perform_destroy(self, instance):
        previews.preview_delete(preview=instance)

    def _image(self, preview, slug) -> PreviewImage:
        image = preview_images(preview).filter(style__slug=slug).first()
        if image is None:
            raise Http404(_("This preview has no style “%(slug)s”.") % {"slug": slug})
        return image

    @extend_schema(
        summary="Paint one style of a preview again, at another strength or mix",
        request=PreviewPaintSerializer,
        auth=[{"tokenAuth": []}, {"cookieAuth": []}, {}],
        responses={202: PreviewImageSerializer,
                   400: OpenApiResponse(description="A strength or mix that cannot be"),
                   404: OpenApiResponse(description="Not your preview, or no such style"),
                   429: OpenApiResponse(description="Too many re-paints; try again soon")},
    )
    @action(detail=True, methods=["post"], url_path=r"styles/(?P<slug>[-\w]+)",
            url_name="style", parser_classes=[JSONParser, MultiPartParser, FormParser])
    def repaint(self, request, pk=None, slug=None):
        """Queued at once (202); poll the preview until the style is ``done`` again."""
        preview = self.get_object()
        image = self._image(preview, slug)
        throttle = PreviewPaintThrottle()
        if not throttle.allow_request(request, self):
            seconds = max(1, math.ceil(throttle.wait() or 1))
            raise _throttled(throttle, ngettext(
                "Too many changes in a row. Please wait %(seconds)d second.",
                "Too many changes in a row. Please wait %(seconds)d seconds.",
                seconds) % {"seconds": seconds})
        form = PreviewPaintSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            image = previews.preview_image_repaint(image=image, **form.validated_data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        return Response(PreviewImageSerializer(image, context=self.get_serializer_context()).data,
                        status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="One style's painting of one of your previews",
        parameters=[OpenApiParameter("format", str, enum=["jpeg", "png"], required=False,
                                     description="jpeg (default, as stored) or png.")],
        auth=[{"tokenAuth": []}, {"cookieAuth": []}, {}],
        responses={(200, "image/jpeg"): OpenApiTypes.BINARY,
                   (200, "image/png"): OpenApiTypes.BINARY,
                   404: OpenApiResponse(description="Not your preview, or not painted yet")},
    )
    @action(detail=True, methods=["get"], url_path=r"styles/(?P<slug>[-\w]+)/image",
            url_name="style-image")
    def image(self, request, pk=None, slug=None):
        image = self._image(self.get_object(), slug)
        if not image.image:
            raise Http404(_("This style has not been painted yet."))
        return preview_image_response(image, format_name=request.query_params.get("format"))

    def perform_content_negotiation(self, request, force=False):
        # A client asking for image/* gets the picture; errors still come back as JSON.
        return super().perform_content_negotiation(request, force=force or self.action == "image")


class AccountView(APIView):
    """The account of whoever asks (token or session)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Delete your account with all your jobs, photos and results",
        request=None,
        responses={204: OpenApiResponse(description="Deleted; the token no longer works"),
                   401: OpenApiResponse(description="Not authenticated")},
    )
    def delete(self, request):
        accounts.account_delete(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenView(ObtainAuthToken):
    """Trade a username and password for an API token (the same token every time)."""

    authentication_classes = ()  # the username and password are the credentials
    throttle_classes = [AuthTokenThrottle]
