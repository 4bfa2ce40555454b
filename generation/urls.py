from django.urls import path

from . import views

urlpatterns = [
    path("runs/<int:job_id>/", views.run_page, name="generation-run"),
    path("products/<str:sku>/", views.product_page, name="generation-product"),
    path("creatives/<int:pk>/", views.creative_page, name="generation-creative"),
    path("images/<int:pk>/", views.creative_image, name="generation-image"),
]
