"""`GET /api/ranking/preview/?segment=…&sku=…[&model=…]`: one product's creatives ranked live for a
segment (QA and ML engineers)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from core.policy import Policy
from generation.models import Creative, Product

from .models import RankingModel, Segment
from .rfnet import rfnet_p_available
from .selectors import ModelNotFound, resolve_model


class PreviewView(APIView):
    permission_classes = [Policy]
    policy_rule = "reviewer"  # QA and ML engineers; annotators label blind

    @extend_schema(
        parameters=[
            OpenApiParameter("segment", str, required=True),
            OpenApiParameter("sku", str, required=True),
            OpenApiParameter("model", str, description="latest (default) or a ranker name"),
        ],
        responses={200: dict},
    )
    def get(self, request):
        from .scoring import rank_products

        missing = [k for k in ("segment", "sku") if not request.query_params.get(k)]
        if missing:
            return Response({"detail": f"Missing parameter(s): {', '.join(missing)}."}, 400)
        segment = Segment.objects.filter(slug=request.query_params["segment"]).first()
        if segment is None:
            return Response({"detail": "Unknown segment."}, 404)
        product = Product.objects.filter(sku=request.query_params["sku"]).first()
        if product is None:
            return Response({"detail": "Unknown sku."}, 404)
        try:
            model = resolve_model(
                request.query_params.get("model") or "latest", kind=RankingModel.Kind.RANKER
            )
        except ModelNotFound as exc:
            return Response({"detail": str(exc)}, 404)
        ranked = rank_products(model, segment=segment, products=[product])
        if not ranked:
            return Response({"detail": "The product has no creatives."}, 404)
        ranked = ranked[0]
        ids = [c["creative_id"] for c in ranked["creatives"]]
        ext = dict(Creative.objects.filter(id__in=ids).values_list("id", "external_id"))
        verdicts = rfnet_p_available(creative_ids=ids)
        return Response(
            {
                "segment": segment.slug,
                "sku": product.sku,
                "model": model.name,
                "p_ctr": ranked["p_ctr"],
                "creatives": [
                    {
                        "id": c["creative_id"],
                        "external_id": ext.get(c["creative_id"], ""),
                        "rank": c["rank"],
                        "score": c["score"],
                        "contributions": c["contributions"],
                        "rfnet": verdicts.get(c["creative_id"]),
                    }
                    for c in ranked["creatives"]
                ],
            }
        )
