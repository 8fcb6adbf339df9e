from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.urls import reverse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from ..downloads import UnknownDownloadFormat, result_file_response
from ..models import StyleJob
from ..selectors import job_list_for_owner, style_list_offered
from ..services import accounts, jobs, sharing
from .serializers import JobCreateSerializer, JobSerializer, JobShareSerializer, StyleSerializer
from .throttles import AuthTokenThrottle, JobCreateThrottle

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


class JobPagination(PageNumberPagination):
    page_size = 20


class TooManyJobsInFlight(exceptions.APIException):
    """429: the user already has JOB_MAX_IN_FLIGHT_PER_USER jobs queued or running."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "too_many_jobs_in_flight"


@extend_schema_view(
    list=extend_schema(summary="The styles you can use", auth=[]),
    retrieve=extend_schema(summary="One style", auth=[]),
)
class StyleViewSet(viewsets.ReadOnlyModelViewSet):
    """Public styles with a trained model; anyone may read them."""

    serializer_class = StyleSerializer
    permission_classes = [AllowAny]
    lookup_field = "slug"

    def get_queryset(self):
        return style_list_offered()


@extend_schema_view(
    list=extend_schema(summary="Your jobs, newest first"),
    retrieve=extend_schema(summary="One of your jobs (poll it until it has finished)"),
    create=extend_schema(
        summary="Upload a photo to repaint",
        description=WEBHOOK_DESCRIPTION,
        request={"multipart/form-data": JobCreateSerializer},
        responses={201: JobSerializer, 400: OpenApiResponse(description="Invalid input (a refused "
                                        "`callback_url` among it)"),
                   429: OpenApiResponse(description="Too many jobs created this hour, or "
                                        "too many still queued or running; try later")},
    ),
    destroy=extend_schema(summary="Delete one of your jobs and its images"),
)
class JobViewSet(
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
        try:
            job = jobs.job_create_from(owner=request.user, choices=form.validated_data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(
                exc.message_dict if hasattr(exc, "error_dict") else exc.messages
            ) from exc
        except jobs.JobLimitExceeded as exc:
            raise TooManyJobsInFlight(str(exc)) from exc
        data = JobSerializer(job, context=self.get_serializer_context()).data
        location = request.build_absolute_uri(reverse("api:job-detail", args=[job.pk]))
        return Response(data, status=status.HTTP_201_CREATED, headers={"Location": location})

    def perform_destroy(self, instance):
        jobs.job_delete(job=instance)

    @extend_schema(
        summary="Download the result of one of your jobs",
        parameters=[OpenApiParameter(
            "format", str, enum=["jpeg", "png", "webp"], required=False,
            description="The image format, at the result's full size (default jpeg, as "
            "stored).")],
        responses={
            (200, "image/jpeg"): OpenApiTypes.BINARY,
            (200, "image/png"): OpenApiTypes.BINARY,
            (200, "image/webp"): OpenApiTypes.BINARY,
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
