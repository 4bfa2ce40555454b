from django.urls import path

from . import views

urlpatterns = [
    path("runs/<id:job_id>/", views.run_page, name="generation-run"),
    path("products/<str:sku>/", views.product_page, name="generation-product"),
    path("creatives/<id:pk>/", views.creative_page, name="generation-creative"),
    path("images/<id:pk>/", views.creative_image, name="generation-image"),
    path("images/<id:pk>/style/", views.style_reference_image, name="generation-style-image"),
]
