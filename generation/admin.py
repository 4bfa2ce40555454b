from django.contrib import admin

from .models import Creative, Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "title", "category", "width", "height", "created_at"]
    list_filter = ["category"]
    search_fields = ["sku", "title", "sha256"]
    show_full_result_count = False


@admin.register(Creative)
class CreativeAdmin(admin.ModelAdmin):
    list_display = ["id", "product", "generator", "width", "height", "created_at"]
    list_filter = ["generator"]
    search_fields = ["=id", "sha256", "external_id", "product__sku", "prompt"]
    list_select_related = ["product"]
    raw_id_fields = ["product"]
    readonly_fields = ["sha256", "width", "height", "created_at"]
    show_full_result_count = False
