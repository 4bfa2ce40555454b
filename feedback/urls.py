from django.urls import path

from . import rfft_views, views

app_name = "feedback"

urlpatterns = [
    path("", views.model_list, name="home"),
    path("models/", views.model_list, name="model-list"),
    path("models/<slug:name>/", views.model_detail, name="model-detail"),
    path("models/<slug:name>/<str:action>/", views.model_action, name="model-action"),
    path("compare/", views.compare, name="compare"),
    path("disagreements/", views.disagreements, name="disagreements"),
    # RFFT (issue 10): generator evaluations, side-by-side comparison, blind A/B for QA.
    path("generators/", rfft_views.evaluation_list, name="generator-evals"),
    path("generators/<id:pk>/", rfft_views.evaluation_detail, name="generator-eval"),
    path("generators/<id:pk>/ab/", rfft_views.ab_page, name="ab"),
]
