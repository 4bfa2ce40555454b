from django.urls import path

from annotation import api_datasets as views

urlpatterns = [
    path("projects/<slug:slug>/import/", views.ImportView.as_view(), name="api-project-import"),
    path(
        "projects/<slug:slug>/datasets/",
        views.DatasetCreateView.as_view(),
        name="api-dataset-create",
    ),
    path("datasets/", views.DatasetListView.as_view(), name="api-dataset-list"),
    path("datasets/<str:name>/", views.DatasetDetailView.as_view(), name="api-dataset-detail"),
    path(
        "datasets/<str:name>/export/",
        views.DatasetExportView.as_view(),
        name="api-dataset-export",
    ),
]
