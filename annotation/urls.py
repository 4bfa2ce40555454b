"""Pages: home, labeling (/label/...), QA (/qa/...), login-protected image files (/images/...)."""

from django.urls import path

from . import views, views_dashboard

# No app namespace: "home" is the global LOGIN_REDIRECT_URL; the other names are prefixed.

urlpatterns = [
    path("", views.home, name="home"),
    # Labeling: the page and the JSON endpoints its script (static/rfstudio/label.js) calls.
    path("label/", views.label_projects, name="label-projects"),
    path("label/<slug:slug>/", views.label_page, name="label"),
    path("label/<slug:slug>/progress/", views.label_progress, name="label-progress"),
    path("label/<slug:slug>/claim/", views.label_claim, name="label-claim"),
    path("label/<slug:slug>/heartbeat/", views.label_heartbeat, name="label-heartbeat"),
    path("label/<slug:slug>/undo/", views.label_undo, name="label-undo"),
    path(
        "label/<slug:slug>/items/<id:item_id>/submit/",
        views.label_submit,
        name="label-submit",
    ),
    path("label/<slug:slug>/items/<id:item_id>/skip/", views.label_skip, name="label-skip"),
    # QA review (htmx).
    path("qa/", views.qa_projects, name="qa-projects"),
    path("qa/<slug:slug>/", views.qa_project, name="qa"),
    path("qa/<slug:slug>/items/<id:item_id>/", views.qa_item, name="qa-item"),
    path("qa/<slug:slug>/items/<id:item_id>/review/", views.qa_review, name="qa-review"),
    path(
        "projects/<slug:slug>/dashboard/",
        views_dashboard.project_dashboard,
        name="project-dashboard",
    ),
    # Images behind the login (work with any storage backend; no public /media/ needed).
    path("images/creatives/<id:pk>/", views.creative_image, name="annotation-creative-image"),
    path("images/products/<id:pk>/", views.product_image, name="annotation-product-image"),
]
