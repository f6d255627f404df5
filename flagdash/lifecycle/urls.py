from django.urls import path

from flagdash.lifecycle import views

app_prefix = "apps/<str:app_key>/"

urlpatterns = [
    path(app_prefix + "short-term/", views.short_term, name="short_term"),
    path(app_prefix + "short-term/archive/", views.short_term_archive, name="short_term_archive"),
    path(app_prefix + "short-term/restore/", views.short_term_restore, name="short_term_restore"),
    path(
        app_prefix + "short-term/<str:flag_key>/edit/",
        views.short_term_edit,
        name="short_term_edit",
    ),
    path(app_prefix + "flags/<str:flag_key>/archive/", views.flag_archive, name="flag_archive"),
]
