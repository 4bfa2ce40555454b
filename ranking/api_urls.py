from django.urls import path

from . import api

urlpatterns = [path("ranking/preview/", api.PreviewView.as_view(), name="api-ranking-preview")]
