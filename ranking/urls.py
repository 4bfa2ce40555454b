from django.urls import path

from . import views

app_name = "ranking"

urlpatterns = [path("preview/", views.preview, name="preview")]
