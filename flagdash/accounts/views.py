"""Login (throttled) and the settings pages (applications, environments, users and roles)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from flagdash.accounts.forms import LoginForm
from flagdash.accounts.permissions import require_view


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True


@require_GET
def settings_page(request: HttpRequest) -> HttpResponse:
    require_view(request.user)
    return render(request, "accounts/settings.html")
