from django.urls import include, path
from rest_framework.routers import DefaultRouter

from . import views

app_name = "api"

router = DefaultRouter()
router.register("styles", views.StyleViewSet, basename="style")
router.register("jobs", views.JobViewSet, basename="job")
router.register("previews", views.PreviewViewSet, basename="preview")

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="token"),
    path("account/", views.AccountView.as_view(), name="account"),
    path("", include(router.urls)),
]
