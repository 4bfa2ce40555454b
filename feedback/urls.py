from django.urls import path

from . import views

app_name = "feedback"

urlpatterns = [
    path("", views.model_list, name="home"),
    path("models/", views.model_list, name="model-list"),
    path("models/<slug:name>/", views.model_detail, name="model-detail"),
    path("models/<slug:name>/<str:action>/", views.model_action, name="model-action"),
    path("compare/", views.compare, name="compare"),
    path("disagreements/", views.disagreements, name="disagreements"),
]
