"""Routes of the catalog read API, mounted under ``/api/v1/`` (site pages: ``catalog.urls``)."""

from rest_framework.routers import DefaultRouter

from catalog.apis import BrandViewSet, ProductViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("brands", BrandViewSet, basename="brand")
router.register("products", ProductViewSet, basename="product")

urlpatterns = router.urls
