from django.urls import path

from . import api

urlpatterns = [
    path("projects/", api.ProjectListView.as_view(), name="api-projects"),
    path("projects/<slug:slug>/next/", api.NextItemView.as_view(), name="api-next"),
    path("projects/<slug:slug>/undo/", api.UndoView.as_view(), name="api-undo"),
    path(
        "projects/<slug:slug>/review-queue/",
        api.ReviewQueueView.as_view(),
        name="api-review-queue",
    ),
    path("items/<id:item_id>/", api.ItemDetailView.as_view(), name="api-item"),
    path("items/<id:item_id>/annotations/", api.SubmitView.as_view(), name="api-item-annotations"),
    path("items/<id:item_id>/heartbeat/", api.HeartbeatView.as_view(), name="api-heartbeat"),
    path("items/<id:item_id>/skip/", api.SkipView.as_view(), name="api-skip"),
    path("items/<id:item_id>/reviews/", api.ReviewCreateView.as_view(), name="api-item-reviews"),
]
