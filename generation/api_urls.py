from django.urls import path

from .api import DiffusionModelList, GenerationJobs, StyleReferences

urlpatterns = [
    path("models/", DiffusionModelList.as_view(), name="generation-api-models"),
    path("jobs/", GenerationJobs.as_view(), name="generation-api-jobs"),
    path("style-references/", StyleReferences.as_view(), name="generation-api-style-references"),
]
