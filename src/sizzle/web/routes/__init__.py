"""Page routes, one module per area."""

from sizzle.web.routes import account, admin, public, sessions

PAGE_MODULES = (public, sessions, account, admin)
