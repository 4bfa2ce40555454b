from django.urls import path

from . import api

urlpatterns = [
    path(
        "creatives/<id:pk>/scores/",
        api.CreativeScoresView.as_view(),
        name="api-creative-scores",
    ),
    path("feedback/score/", api.ScoreUploadsView.as_view(), name="api-feedback-score"),
    path("feedback/models/", api.ModelListView.as_view(), name="api-feedback-models"),
    path(
        "feedback/models/<slug:name>/",
        api.ModelDetailView.as_view(),
        name="api-feedback-model",
    ),
    path(
        "feedback/models/<slug:name>/promote/",
        api.ModelActionView.as_view(action="promote"),
        name="api-feedback-model-promote",
    ),
    path(
        "feedback/models/<slug:name>/retire/",
        api.ModelActionView.as_view(action="retire"),
        name="api-feedback-model-retire",
    ),
]
