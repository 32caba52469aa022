"""Page routes, one module per area."""

from sizzle.web.routes import account, admin, admin_purchases, public, sessions

PAGE_MODULES = (public, sessions, account, admin, admin_purchases)
