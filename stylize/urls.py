from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from . import views
from .forms import LoginForm

app_name = "stylize"

def _auth_page(route: str, view, name: str, template: str, *, success: str | None = None,
               **options):
    """``accounts/<route>``, named ``name``: the auth ``view`` rendering
    ``registration/<template>.html``, going on to ``stylize:<success>`` when given;
    ``options`` are the view's other ``as_view`` arguments."""
    if success is not None:
        options["success_url"] = reverse_lazy(f"stylize:{success}")
    return path(f"accounts/{route}",
                view.as_view(template_name=f"registration/{template}.html", **options),
                name=name)


urlpatterns = [
    path("", views.home, name="home"),
    path("upload/", views.upload, name="upload"),
    path("jobs/", views.job_list, name="job_list"),
    path("jobs/<uuid:pk>/", views.job_detail, name="job"),
    path("jobs/<uuid:pk>/status.json", views.job_status, name="job_status"),
    path("jobs/<uuid:pk>/delete/", views.job_delete, name="job_delete"),
    path("jobs/<uuid:pk>/again/", views.job_again, name="job_again"),
    path("jobs/<uuid:pk>/photo/", views.job_image, {"which": "photo"}, name="job_photo"),
    path("jobs/<uuid:pk>/result/", views.job_image, {"which": "result"}, name="job_result"),
    path("jobs/<uuid:pk>/share/", views.job_share, name="job_share"),
    path("jobs/<uuid:pk>/unshare/", views.job_unshare, name="job_unshare"),
    path("styles/own/", views.own_style_list, name="own_style_list"),
    path("styles/own/<slug:slug>/", views.own_style_detail, name="own_style"),
    path("styles/own/<slug:slug>/status.json", views.own_style_status, name="own_style_status"),
    path("styles/own/<slug:slug>/painting/", views.own_style_painting, name="own_style_painting"),
    path("styles/own/<slug:slug>/sample/", views.own_style_sample, name="own_style_sample"),
    path("styles/own/<slug:slug>/delete/", views.own_style_delete, name="own_style_delete"),
    path("s/<str:token>/", views.shared_result, name="shared"),
    path("s/<str:token>/image/", views.shared_result_image, name="shared_image"),
    path("s/<str:token>/preview.jpg", views.shared_result_preview, name="shared_preview"),
    # Accounts. Django's auth views, namespaced here with their redirects spelled out, so
    # nothing depends on LOGIN_URL / LOGIN_REDIRECT_URL / LOGOUT_REDIRECT_URL. Templates
    # are named explicitly: django.contrib.admin ships registration/password_*.html and is
    # listed first.
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/profile/", views.profile, name="profile"),
    path("accounts/token/", views.api_token_create, name="api_token"),
    path("accounts/webhook-secret/", views.webhook_secret_rotate, name="webhook_secret"),
    path("accounts/confirm/resend/", views.email_confirm_resend, name="email_confirm_resend"),
    path("accounts/confirm/<uidb64>/<token>/", views.email_confirm, name="email_confirm"),
    path("accounts/confirm/<uidb64>/password/<token>/", views.EmailConfirmPasswordView.as_view(),
         name="email_confirm_password"),
    path("accounts/delete/", views.account_delete, name="account_delete"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            authentication_form=LoginForm,
            next_page=reverse_lazy("stylize:upload"),
            redirect_authenticated_user=True,
        ),
        name="login",
    ),
    path(
        "accounts/logout/",
        auth_views.LogoutView.as_view(next_page=reverse_lazy("stylize:home")),
        name="logout",
    ),
    _auth_page("password_change/", auth_views.PasswordChangeView, "password_change",
               "prisma_password_change_form", success="password_change_done"),
    _auth_page("password_change/done/", auth_views.PasswordChangeDoneView,
               "password_change_done", "prisma_password_change_done"),
    _auth_page("password_reset/", views.PasswordResetView,  # throttled, links from SITE_URL
               "password_reset", "prisma_password_reset_form", success="password_reset_done",
               email_template_name="registration/password_reset_email.txt",
               subject_template_name="registration/password_reset_subject.txt"),
    _auth_page("password_reset/done/", auth_views.PasswordResetDoneView, "password_reset_done",
               "prisma_password_reset_done"),
    _auth_page("reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView,
               "password_reset_confirm", "prisma_password_reset_confirm",
               success="password_reset_complete"),
    _auth_page("reset/done/", auth_views.PasswordResetCompleteView, "password_reset_complete",
               "prisma_password_reset_complete"),
]
