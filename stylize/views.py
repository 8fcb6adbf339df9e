from django.shortcuts import render

from .selectors import style_list_offered


def home(request):
    return render(request, "stylize/home.html", {"styles": style_list_offered()})
