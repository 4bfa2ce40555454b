"""Shared infrastructure every app may import (it imports no app): the authorization policy,
API error handling, input bounds."""
