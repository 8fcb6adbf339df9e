from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

urlpatterns = [
    path("admin/", admin.site.urls),
    # The header's language switcher posts here (Django's set_language: a cookie).
    path("i18n/", include("django.conf.urls.i18n")),
    # gettext() for the pages' scripts, in the page's language (djangojs catalogue).
    path("jsi18n/", JavaScriptCatalog.as_view(packages=["stylize"]), name="javascript-catalog"),
    path("api/v1/", include("stylize.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view loads its start-up script from ?script: no inline <script>, so it
    # works under the Content-Security-Policy (settings.CONTENT_SECURITY_POLICY).
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-schema", template_name="stylize/swagger_ui.html"
        ),
        name="api-docs",
    ),
    path("", include("stylize.urls")),
]

if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
