from django.urls import path

from . import api, rfft_api

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
    # RFFT (issue 10)
    path("feedback/rfft/", rfft_api.FinetuneLaunchView.as_view(), name="api-rfft-launch"),
    path(
        "feedback/generator-evaluations/",
        rfft_api.EvaluationListView.as_view(),
        name="api-generator-evals",
    ),
    path(
        "feedback/generator-evaluations/<id:pk>/",
        rfft_api.EvaluationDetailView.as_view(),
        name="api-generator-eval",
    ),
]
