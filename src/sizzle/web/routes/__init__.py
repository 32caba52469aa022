"""Page routes, one module per area."""

from sizzle.web.routes import account, admin, admin_purchases, keys, launch, public, sessions

PAGE_MODULES = (public, launch, sessions, account, keys, admin, admin_purchases)
