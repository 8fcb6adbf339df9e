from django.urls import path

from . import views

app_name = "stylize"

urlpatterns = [
    path("", views.home, name="home"),
]
