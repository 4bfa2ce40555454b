"""Token authentication that also loads the user's roles in the same query, so that a labeling
request spends one query on auth + roles (the queue's query budget). The query is compiled once
per connection (core.prepared): building it costs Django more than PostgreSQL spends on it."""

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from core.policy import throttle_anonymous
from core.prepared import PreparedQuery
from core.roles import ROLES


def _token_with_roles(key):
    through = get_user_model().groups.through
    flags = {
        f"role_{role}": Exists(
            through.objects.filter(user_id=OuterRef("user_id"), group__name=role)
        )
        for role in ROLES
    }
    return Token.objects.select_related("user").annotate(**flags).filter(key=key)[:1]


TOKEN_WITH_ROLES = PreparedQuery(_token_with_roles)


class RoleAwareTokenAuthentication(TokenAuthentication):
    def authenticate(self, request):
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            # A wrong token counts against the caller's anonymous rate (token guessing).
            throttle_anonymous(request)
            raise

    def authenticate_credentials(self, key):
        token = TOKEN_WITH_ROLES.first(key=key)
        if token is None:
            raise AuthenticationFailed("Invalid token.")  # counted per IP (see authenticate)
        if not token.user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        # core.roles.has_role reads this cache.
        token.user._rfstudio_roles = frozenset(r for r in ROLES if getattr(token, f"role_{r}"))
        return token.user, token
